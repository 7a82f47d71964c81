"""Retention (issue 12): pruned entries lose their text but stay known, so a poll of the
same feed stores nothing new and alerts nothing; hits and their entries are kept; sent
deliveries go after their cutoff; the search index follows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from conftest import write_config
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.runtime import Runtime
from watchdesk.store import open_db, retention
from watchdesk.store.entries import count_entries

WATCHLIST = "match = ['fentanyl']\n"


def rss(items: list[tuple[str, str]]) -> bytes:
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><description>{title} in the city</description>"
        f"<pubDate>{now}</pubDate></item>"
        for guid, title in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}</channel></rss>'.encode()


ITEMS = [("1", "Council meets on budget"), ("2", "Fentanyl seized at port"), ("3", "School opens library")]


def poll(config: Path) -> tuple[int, int]:
    rt = Runtime(load_config(config))
    try:
        summary = asyncio.run(rt.poll_feeds(rt.all_feeds()))
    finally:
        asyncio.run(rt.aclose())
    return summary.new_entries, summary.alerts_queued


def test_pruned_entries_never_come_back(tmp_path: Path, server: LocalServer) -> None:
    server.route("/f", rss(ITEMS), headers={"Content-Type": "application/rss+xml"})
    channel = '[channel.out]\ntype = "console"\n'
    config = write_config(
        tmp_path,
        [{"url": server.url("/f"), "name": "F", "fetch_article": "never"}],
        {"drugs": WATCHLIST + "notify = ['out']\n"},
        polling='backfill = "all"',
        extra=channel,
    )
    assert poll(config) == (3, 1)
    db = open_db(tmp_path / "watchdesk.db")
    assert count_entries(db, fts="council") == 1
    cutoffs = retention.Cutoffs(entries=time.time() + 1)  # everything older than now: `--entries 0s`
    assert retention.count(db, cutoffs).entries == 2  # the hit's entry is kept
    pruned = retention.prune_all(db, cutoffs)
    assert pruned.entries == 2
    assert retention.count(db, cutoffs).entries == 0
    assert count_entries(db, fts="council") == 0  # the index row went with the text
    assert count_entries(db, fts="fentanyl") == 1  # the hit's entry kept, still found
    (text,) = db.execute("SELECT text FROM entries WHERE title LIKE 'Fentanyl%'").fetchone()
    assert "Fentanyl" in text
    db.execute("UPDATE feeds SET etag = NULL, last_modified = NULL, body_hash = NULL, next_check_at = 0")
    db.conn.commit()
    db.close()
    server.route(
        "/f", rss([*ITEMS, ("4", "Fentanyl found again")]), headers={"Content-Type": "application/rss+xml"}
    )
    assert poll(config) == (1, 1)  # only the new item: the pruned ones are still known, nothing re-alerts


def test_hits_and_deliveries_after_their_cutoff(tmp_path: Path, server: LocalServer) -> None:
    server.route("/f", rss(ITEMS), headers={"Content-Type": "application/rss+xml"})
    config = write_config(
        tmp_path,
        [{"url": server.url("/f"), "name": "F", "fetch_article": "never"}],
        {"drugs": WATCHLIST + "notify = ['out']\n"},
        polling='backfill = "all"',
        extra='[channel.out]\ntype = "console"\n',
    )
    poll(config)
    db = open_db(tmp_path / "watchdesk.db")
    db.execute("UPDATE outbox SET status = 'sent', sent_at = 1")
    db.conn.commit()
    later = time.time() + 1
    assert retention.count(db, retention.Cutoffs(entries=later)).entries == 2  # hits kept: "forever"
    found = retention.count(db, retention.Cutoffs(entries=later, hits=later, outbox=later))
    assert (found.entries, found.hits, found.deliveries) == (3, 1, 1)
    pruned = retention.prune_all(db, retention.Cutoffs(entries=later, hits=later, outbox=later))
    assert (pruned.entries, pruned.hits, pruned.deliveries) == (3, 1, 1)
    assert db.execute("SELECT COUNT(*) FROM delivery_attempts").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 3  # tombstones stay


def test_incremental_vacuum_gives_space_back(tmp_path: Path) -> None:
    db = open_db(tmp_path / "watchdesk.db")
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # a new database is made so
    assert retention.convert_to_incremental(db) is False
    db.execute("CREATE TABLE filler (x BLOB)")
    with db.atomic():
        for _ in range(2000):
            db.execute("INSERT INTO filler VALUES (randomblob(4000))")
    big = retention.file_bytes(db)
    with db.atomic():
        db.execute("DELETE FROM filler")
    given = 0
    while (step := retention.give_back(db)) > 0:
        given += step
    assert given > 0.8 * 2000 * 4000
    assert retention.file_bytes(db) < big - given + 4096


def test_the_daemon_prunes_by_its_retention_config(tmp_path: Path, server: LocalServer) -> None:
    server.route("/f", rss(ITEMS), headers={"Content-Type": "application/rss+xml"})
    config = write_config(
        tmp_path,
        [{"url": server.url("/f"), "name": "F", "fetch_article": "never"}],
        {"drugs": WATCHLIST},
        extra='[retention]\nentries = "0s"\noutbox = "forever"\n',
    )
    now = [time.time() + 5]
    rt = Runtime(load_config(config), clock=lambda: now[0])
    try:
        asyncio.run(rt.poll_feeds(rt.all_feeds()))
        now[0] += 5
        pruned = asyncio.run(rt.prune())
        again = asyncio.run(rt.prune())
    finally:
        asyncio.run(rt.aclose())
    assert (pruned.entries, pruned.hits, pruned.deliveries) == (2, 0, 0)  # the hit's entry kept
    assert again.entries == 0


def test_prune_by_hand(tmp_path: Path, server: LocalServer) -> None:
    import subprocess
    import sys

    server.route("/f", rss(ITEMS), headers={"Content-Type": "application/rss+xml"})
    config = write_config(
        tmp_path, [{"url": server.url("/f"), "name": "F", "fetch_article": "never"}], {"drugs": WATCHLIST}
    )
    poll(config)

    def prune(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watchdesk", "--config", str(config), "prune", *options],
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = prune("--dry-run", "--entries", "0s")
    assert dry.returncode == 0, dry.stderr
    assert "would prune 2 entries" in dry.stdout
    kept = prune()  # [retention] entries = 90d: nothing that old
    assert "pruned 0 entries" in kept.stdout
    done = prune("--entries", "0s")
    assert done.returncode == 0 and "pruned 2 entries" in done.stdout and "freed" in done.stdout
    bad = prune("--entries", "soon")
    assert bad.returncode != 0 and "--entries" in bad.stderr and "Traceback" not in bad.stderr
