"""The daemon's dispatcher (issue 15): no fixed cap per tick. It refills in-flight slots
as polls finish and wakes when the next feed falls due. POLL_TICK is set to an hour
here, so a poll can only start through those two wake-ups, never through a timed tick."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from conftest import write_config
from server import LocalServer, Reply, Request

from watchdesk import daemon as daemon_module
from watchdesk.config import load_config
from watchdesk.daemon import Daemon
from watchdesk.runtime import Runtime
from watchdesk.sdnotify import Notifier

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'


@pytest.fixture
def hour_long_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_module, "POLL_TICK", 3600.0)


def serve_feeds(server: LocalServer, count: int, daemon: list[Daemon]) -> list[int]:
    """`count` feeds; each request notes how many polls were in flight then."""
    seen: list[int] = []
    lock = threading.Lock()

    def handler(req: Request) -> Reply:
        with lock:
            seen.append(len(daemon[0].in_flight) if daemon else 0)
        return Reply(200, RSS, {"Content-Type": "application/rss+xml"})

    for i in range(count):
        server.route(f"/feed/{i}", handler=handler)
    return seen


async def run_until(d: Daemon, condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(d.dispatch())
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True
    finally:
        d.stopping.set()
        d._slot_freed.set()
        await task
        await asyncio.gather(*d.in_flight.values())


def test_more_due_feeds_than_slots_are_polled_in_one_pass(
    tmp_path: Path, server: LocalServer, hour_long_tick: None
) -> None:
    holder: list[Daemon] = []
    seen = serve_feeds(server, 120, holder)
    feeds = [{"url": server.url(f"/feed/{i}"), "name": f"F{i}"} for i in range(120)]
    rt = Runtime(load_config(write_config(tmp_path, feeds, {})))
    d = Daemon(rt, Notifier({}))
    d.slots = 16
    holder.append(d)
    try:
        done = asyncio.run(run_until(d, lambda: len(seen) >= 120))
        polled = {row.name for row in rt.all_feeds() if row.last_polled_at}
    finally:
        asyncio.run(rt.aclose())
    assert done, f"{len(seen)} of 120 feeds polled"  # slots refilled as polls finished
    assert max(seen) <= 16  # never more in flight than the slots
    assert len(polled) == 120


def test_a_feed_falling_due_wakes_the_dispatcher(
    tmp_path: Path, server: LocalServer, hour_long_tick: None
) -> None:
    holder: list[Daemon] = []
    seen = serve_feeds(server, 1, holder)
    rt = Runtime(load_config(write_config(tmp_path, [{"url": server.url("/feed/0"), "name": "F0"}], {})))
    rt.db.execute("UPDATE feeds SET next_check_at = ?", [time.time() + 0.5])
    rt.db.conn.commit()
    d = Daemon(rt, Notifier({}))
    holder.append(d)
    try:
        done = asyncio.run(run_until(d, lambda: len(seen) >= 1))
    finally:
        asyncio.run(rt.aclose())
    assert done  # polled when it fell due, not at the next (hour-long) tick


def test_a_tick_that_fails_does_not_count_as_the_schedule_running(
    tmp_path: Path, server: LocalServer
) -> None:
    """The watchdog and /healthz go by the last tick that got through: a store that cannot
    be read makes every tick fail, and that is a stalled schedule (systemd restarts it)."""
    serve_feeds(server, 1, [])
    rt = Runtime(load_config(write_config(tmp_path, [{"url": server.url("/feed/0"), "name": "F0"}], {})))
    d = Daemon(rt, Notifier({}))

    async def go() -> tuple[bool, bool]:
        d.last_poll_tick = time.monotonic() - 3600  # the last good tick, an hour ago
        rt.db.execute("ALTER TABLE feeds RENAME TO feeds_away")  # every read of feeds fails
        rt.db.conn.commit()
        await d.poll_tick()
        failing = d.alive()
        rt.db.execute("ALTER TABLE feeds_away RENAME TO feeds")
        rt.db.conn.commit()
        await d.poll_tick()
        await asyncio.gather(*d.in_flight.values())
        return failing, d.alive()

    try:
        failing, recovered = asyncio.run(go())
    finally:
        asyncio.run(rt.aclose())
    assert failing is False and recovered is True
