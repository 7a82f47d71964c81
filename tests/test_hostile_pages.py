"""Hostile article pages end within their deadlines, leave the entry stored with its
summary and the reason, and never hold up the polling of other feeds."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from conftest import write_config
from server import LocalServer, Reply, Request

from watchdesk.config import load_config
from watchdesk.runtime import Runtime


def big_table() -> bytes:
    row = "<tr>" + "<td>cell</td>" * 50 + "</tr>"
    return ("<html><body><h1>fentanyl table</h1><table>" + row * 20_000 + "</table></body></html>").encode()


def many_paragraphs() -> bytes:
    return ("<html><body>" + "<p>Some words in a paragraph here.</p>" * 100_000 + "</body></html>").encode()


def hundred_megabytes() -> Iterator[bytes]:
    block = b"<p>" + b"x" * (2**20 - 7) + b"</p>"
    for _ in range(100):
        yield block


def test_hostile_pages_are_contained(tmp_path: Path, server: LocalServer) -> None:
    release = threading.Event()

    def never_answers(req: Request) -> Reply:
        release.wait(30)
        return Reply(200, b"too late")

    bomb = gzip.compress(b"\0" * (200 * 2**20))
    server.route("/table", big_table(), headers={"Content-Type": "text/html"})
    server.route("/paragraphs", many_paragraphs(), headers={"Content-Type": "text/html"})
    server.route(
        "/huge",
        handler=lambda req: Reply(200, headers={"Content-Type": "text/html"}, chunks=hundred_megabytes()),
    )
    server.route("/bomb", bomb, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    server.route("/never", handler=never_answers)
    names = ["table", "paragraphs", "huge", "bomb", "never"]
    items = "".join(
        f"<item><title>{n}</title><guid>{n}</guid><link>{server.url('/' + n)}</link>"
        f"<description>summary of {n}: fentanyl</description></item>"
        for n in names
    )
    server.route(
        "/hostile",
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>H</title>{items}</channel></rss>'.encode(),
    )
    server.route(
        "/calm",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>C</title>'
        b"<item><title>calm</title><guid>c</guid></item></channel></rss>",
    )
    config = write_config(
        tmp_path,
        [{"url": server.url("/hostile"), "name": "Hostile"}, {"url": server.url("/calm"), "name": "Calm"}],
        {"w": "match = ['fentanyl']\n"},
        polling='backfill = "all"\nextract_timeout = "2s"\ninterval = "1s"',
        network='timeout = "3s"\nmax_page_bytes = "20MiB"\nper_host = 10\nper_host_delay = "0s"',
    )
    rt = Runtime(load_config(config))
    hostile, calm = sorted(rt.all_feeds(), key=lambda f: f.name != "Hostile")

    async def scenario() -> int:
        task = asyncio.create_task(rt.poll_one(hostile))
        calm_polls = 0
        for _ in range(3):  # the other feed is polled, again and again, meanwhile
            summary = await rt.poll_one(calm)
            assert summary.failed == 0
            calm_polls += 1
        assert not task.done(), "the hostile feed should still be busy with its pages"
        result = await task
        assert result.new_entries == len(names)
        return calm_polls

    try:
        assert asyncio.run(scenario()) == 3
    finally:
        release.set()
        asyncio.run(rt.aclose())

    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        rows = {
            t: (src, note) for t, src, note in db.execute("SELECT title, text_source, text_note FROM entries")
        }
        hit_titles = {
            r[0] for r in db.execute("SELECT e.title FROM hits h JOIN entries e ON e.id = h.entry_id")
        }
    assert rows["table"] == ("summary", "extraction failed: took longer than 2s")
    assert rows["huge"][0] == "summary" and rows["huge"][1].startswith("too_large:")
    assert rows["bomb"][0] == "summary" and rows["bomb"][1].startswith("too_large:")
    assert rows["never"] == ("summary", "timeout: no complete answer within 3s")
    assert rows["paragraphs"][0] in ("page", "summary")  # cut at 2 MiB: extracted in time, or not
    assert hit_titles >= {"table", "huge", "bomb", "never"}  # matched on the summary they kept
