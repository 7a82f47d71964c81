"""Article fetching is polite: robots.txt is honoured and one host never sees more than
`per_host` requests at once, spaced by `per_host_delay`."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from conftest import poll_once, write_config
from server import LocalServer, Reply, Request

PAGE = b"<html><body><article><p>Agents seized fentanyl pills in a raid on Monday morning.</p></article></body></html>"


def feed(server: LocalServer, paths: list[str]) -> bytes:
    items = "".join(
        f"<item><title>t{i}</title><guid>g{i}</guid><link>{server.url(p)}</link><description>s</description></item>"
        for i, p in enumerate(paths)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{items}</channel></rss>'.encode()
    )


def poll(tmp_path: Path, server: LocalServer, network: str) -> None:
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "F"}],
        {"w": "match = ['fentanyl']\n"},
        polling='backfill = "all"\nmax_entries = 100',
        network=network,
    )
    poll_once(config)


def test_robots_disallow_is_honoured(tmp_path: Path, server: LocalServer) -> None:
    server.route(
        "/robots.txt", b"User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"}
    )
    server.route("/private/story", PAGE, headers={"Content-Type": "text/html"})
    server.route("/public/story", PAGE, headers={"Content-Type": "text/html"})
    server.route("/feed", feed(server, ["/private/story", "/public/story"]))
    poll(tmp_path, server, "robots = true")
    assert server.hits("/private/story") == []
    assert len(server.hits("/public/story")) == 1
    assert len(server.hits("/robots.txt")) == 1  # cached per host
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        notes = dict(db.execute("SELECT link, text_note FROM entries").fetchall())
    assert notes[server.url("/private/story")] == "disallowed by robots.txt"
    assert notes[server.url("/public/story")] is None


def test_robots_for_watchdesk_only(tmp_path: Path, server: LocalServer) -> None:
    server.route("/robots.txt", b"User-agent: watchdesk\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    server.route("/story", PAGE, headers={"Content-Type": "text/html"})
    server.route("/feed", feed(server, ["/story"]))
    poll(tmp_path, server, "robots = true")
    assert server.hits("/story") == []


def test_per_host_limits_hold_under_fifty_entries(tmp_path: Path, server: LocalServer) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    starts: list[float] = []
    release = threading.Event()

    def page(req: Request) -> Reply:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            starts.append(time.monotonic())
        release.wait(0.02)  # hold the request a moment so overlapping ones would show
        with lock:
            state["now"] -= 1
        return Reply(200, PAGE, {"Content-Type": "text/html"})

    paths = [f"/story/{i}" for i in range(50)]
    for p in paths:
        server.route(p, handler=page)
    server.route("/feed", feed(server, paths))
    poll(tmp_path, server, 'per_host = 2\nper_host_delay = "0s"')
    assert len(starts) == 50
    assert state["max"] <= 2


def test_per_host_delay_spaces_requests(tmp_path: Path, server: LocalServer) -> None:
    starts: list[float] = []

    def page(req: Request) -> Reply:
        starts.append(time.monotonic())
        return Reply(200, PAGE, {"Content-Type": "text/html"})

    paths = [f"/story/{i}" for i in range(6)]
    for p in paths:
        server.route(p, handler=page)
    server.route("/feed", feed(server, paths))
    poll(tmp_path, server, 'per_host = 4\nper_host_delay = "1s"')
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert len(starts) == 6
    assert min(gaps) >= 0.9  # never closer than the configured delay (a lower bound, not a timing target)
