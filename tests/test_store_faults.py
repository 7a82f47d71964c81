"""Delivery and polling while the store misbehaves (issue 16, items 4, 5, 6, 12).

- a clean stop (SIGTERM) during a burst of deliveries sends no alert twice;
- a store that refuses writes (the database full: SQLite's own SQLITE_FULL through
  `PRAGMA max_page_count`) costs at most one unrecorded send per channel, never the same
  alert again and again, and every alert goes out once space returns;
- another process holding `BEGIN EXCLUSIVE` stalls only the writes: feeds keep being
  fetched and the event loop keeps running;
- a poll whose outcome cannot be recorded is not re-fetched on every tick.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_daemon, write_config
from server import LocalServer, Reply, Request

from watchdesk.config import load_config
from watchdesk.models import Alert
from watchdesk.notify.webhook import WebhookChannel
from watchdesk.outbox import Drainer
from watchdesk.runtime import Runtime
from watchdesk.store import open_db
from watchdesk.store import outbox as outbox_store
from watchdesk.store.engine import Store

WATCHLIST = "match = ['fentanyl']\n"


def alert(i: int) -> Alert:
    return Alert(
        watchlist="drugs",
        title=f"alert {i}",
        link=f"https://example.org/{i}",
        outlet="Metro",
        published=None,
        terms=("fentanyl",),
        snippet="fentanyl seized",
    )


def fill_outbox(db_path: Path, count: int, channel: str = "hook") -> None:
    db = open_db(db_path)
    with db.atomic():
        for i in range(count):
            outbox_store.enqueue(db, f"key-{i}", channel, alert(i), hit_id=None, now=0.0)
    db.close()


def receiver(server: LocalServer, delay: float = 0.0) -> Counter[str]:
    """A webhook endpoint counting deliveries by their idempotency key."""
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(req: Request) -> Reply:
        if delay:
            time.sleep(delay)  # a channel that takes a moment to accept (the window a stop falls into)
        with lock:
            received[json.loads(req.body)["key"]] += 1
        return Reply(200, b"ok")

    server.route("/hook", handler=handle)
    return received


def wait_for(condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_a_burst_sends_no_alert_twice(tmp_path: Path, server: LocalServer) -> None:
    """500 alerts, 6 clean stops in the middle of delivering them: each sent once."""
    received = receiver(server, delay=0.01)
    hook = f'[channel.hook]\ntype = "webhook"\nurl = "{server.url("/hook")}"\n'
    config = write_config(tmp_path, [], {}, extra=hook)
    fill_outbox(tmp_path / "watchdesk.db", 500)
    stops = 0
    for _ in range(6):
        before = sum(received.values())
        daemon = start_daemon(config)
        try:
            # Stop while deliveries are going out: some sent, most still pending.
            if not wait_for(lambda before=before: sum(received.values()) >= before + 20):
                break  # everything went out before a stop could land
            daemon.send_signal(signal.SIGTERM)
            _out, err = daemon.communicate(timeout=60)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert daemon.returncode == 0, err
        assert "daemon_stopped" in err
        stops += 1
    daemon = start_daemon(config)
    try:
        assert wait_for(lambda: len(received) == 500), f"{len(received)} of 500 delivered"
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert stops >= 3  # the stops did fall during the burst
    duplicates = {key: n for key, n in received.items() if n > 1}
    assert duplicates == {}
    db = open_db(tmp_path / "watchdesk.db")
    assert outbox_store.counts(db) == {"sent": 500}


def pack_attempts(db: sqlite3.Connection | object) -> None:
    """Fill the database to its page cap with the smallest delivery-attempt rows, so that
    the next write needing room fails with SQLITE_FULL ("database or disk is full")."""
    conn = db.conn if hasattr(db, "conn") else db  # type: ignore[attr-defined]
    try:
        while True:
            with conn:
                conn.executemany(
                    "INSERT INTO delivery_attempts (outbox_id, at, ok, message, duration_ms) VALUES (1, 0, 0, '', 0)",
                    [()] * 50,
                )
    except sqlite3.OperationalError as e:
        assert "full" in str(e)
    try:
        while True:
            with conn:
                conn.execute(
                    "INSERT INTO delivery_attempts (outbox_id, at, ok, message, duration_ms) VALUES (1, 0, 0, '', 0)"
                )
    except sqlite3.OperationalError as e:
        assert "full" in str(e)


def drain_while_full(store: Store, server: LocalServer, make_room) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Five drain rounds while the store refuses writes, then room, then three more."""
    received = receiver(server)

    async def scenario() -> tuple[int, int, int]:
        channel = WebhookChannel("hook", server.url("/hook"))
        drainer = Drainer(store, {"hook": channel}, time.time, lambda: 0.0)
        try:
            for _ in range(5):
                await drainer.drain()
            while_full = sum(received.values())
            held = len(drainer.unrecorded)
            make_room()
            for _ in range(3):
                await drainer.drain()
            return while_full, held, len(drainer.unrecorded)
        finally:
            await channel.aclose()

    while_full, held, left = asyncio.run(scenario())
    assert while_full == 1  # the first send went out, its record failed: nothing more was sent
    assert held == 1  # that one channel is held back
    assert left == 0
    assert sorted(received) == sorted(f"key-{i}" for i in range(20))
    assert set(received.values()) == {1}  # every alert once, none twice
    return while_full, held, left


def test_a_full_database_sends_each_alert_at_most_once(tmp_path: Path, server: LocalServer) -> None:
    db_path = tmp_path / "watchdesk.db"
    fill_outbox(db_path, 20)
    store = Store.open(db_path)
    (pages,) = store.db.execute("PRAGMA page_count").fetchone()
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the writer's connection: full soon
    pack_attempts(store.db)
    try:
        drain_while_full(store, server, lambda: store.db.execute("PRAGMA max_page_count = 1000000"))
        assert outbox_store.counts(store.db) == {"sent": 20}
    finally:
        store.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a real file system that fills up (needs root and mount(2))."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): the page-cap test covers it"
        )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_disk_sends_each_alert_at_most_once(small_disk: Path, server: LocalServer) -> None:
    db_path = small_disk / "watchdesk.db"
    fill_outbox(db_path, 20)
    store = Store.open(db_path)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit must grow the WAL file
    filler = small_disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass  # ENOSPC: the disk is full
    try:
        drain_while_full(store, server, filler.unlink)
        assert outbox_store.counts(store.db) == {"sent": 20}
    finally:
        store.close()


def test_an_exclusive_lock_stalls_only_the_writes(tmp_path: Path, server: LocalServer) -> None:
    """Another connection holds BEGIN EXCLUSIVE for 3 s: the loop keeps running (its
    longest stall stays far below the lock), the feeds are fetched meanwhile, and both
    polls commit once the lock is gone."""
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><guid>1</guid><title>fentanyl seized</title><description>fentanyl</description></item>"
        b"</channel></rss>"
    )
    server.route("/a", rss, headers={"Content-Type": "application/rss+xml"})
    server.route("/b", rss, headers={"Content-Type": "application/rss+xml"})
    feeds = [
        {"url": server.url("/a"), "name": "A", "fetch_article": "never"},
        {"url": server.url("/b"), "name": "B", "fetch_article": "never"},
    ]
    rt = Runtime(load_config(write_config(tmp_path, feeds, {"drugs": WATCHLIST})))
    rows = rt.all_feeds()
    locker = sqlite3.connect(tmp_path / "watchdesk.db", isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE feeds SET title = title")
    released = threading.Event()

    def release() -> None:
        locker.execute("COMMIT")
        released.set()

    timer = threading.Timer(3.0, release)

    async def scenario() -> tuple[float, int, bool]:
        stall = 0.0
        polls = asyncio.create_task(rt.poll_feeds(rows))
        timer.start()
        fetched_during_lock = 0
        while not polls.done():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            stall = max(stall, time.monotonic() - before - 0.01)
            if not released.is_set():
                fetched_during_lock = len(server.hits("/a")) + len(server.hits("/b"))
        summary = await polls
        return stall, fetched_during_lock, summary.new_entries == 2

    try:
        stall, fetched, stored = asyncio.run(scenario())
    finally:
        timer.cancel()
        if not released.is_set():
            locker.execute("COMMIT")
        locker.close()
        asyncio.run(rt.aclose())
    assert fetched == 2  # both feeds were fetched while the lock was held
    assert stall < 0.5, f"the event loop stalled {stall:.2f}s"
    assert stored


def test_a_poll_that_cannot_be_recorded_is_held_back(tmp_path: Path, server: LocalServer) -> None:
    """The store refuses every write: the poll is not recorded, so it is held in memory
    (not due again on the next tick), and polled again once the hold runs out."""
    server.route("/a", b"<rss version='2.0'><channel><title>T</title></channel></rss>")
    now = [1_000_000.0]
    config = load_config(write_config(tmp_path, [{"url": server.url("/a"), "name": "A"}], {}))
    rt = Runtime(config, clock=lambda: now[0])
    locker = sqlite3.connect(tmp_path / "watchdesk.db", isolation_level=None, check_same_thread=False)
    rt.db.execute("PRAGMA busy_timeout = 50")  # the writer gives up at once instead of in 30 s
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE feeds SET title = title")
    try:

        async def scenario() -> tuple[int, int, int]:
            (row,) = await rt.due()
            summary = await rt.poll_one(row)
            held_now = len(await rt.due())
            now[0] += 61
            return summary.failed, held_now, len(await rt.due())

        failed, due_right_after, due_later = asyncio.run(scenario())
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        asyncio.run(rt.aclose())
    assert failed == 1
    assert due_right_after == 0  # not fetched again on the next tick
    assert due_later == 1
