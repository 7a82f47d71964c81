"""Delivery and polling while the store misbehaves (issue 16): a clean stop (SIGTERM)
during a burst of deliveries, a full disk, and a database locked by another process,
printed as delivered / lost / duplicates and the longest event-loop stall.

Every scenario talks to one HTTP server this process runs on 127.0.0.1: POST /hook is a
webhook receiver that counts deliveries by the JSON body's "key" (the outbox's
idempotency key), answering 200 after --receiver-delay ms (10) and counting just before
it answers; GET /feed/<run>/<i> serves feed i of a run as RSS and logs the request.

1. sigterm: a temporary config with one webhook channel to the receiver and no feeds;
   the outbox pre-filled with --alerts rows (watchdesk.store.outbox.enqueue, as
   tests/test_store_faults.py's fill_outbox). The real `python -m watchdesk run` drains
   it; --stops times it gets SIGTERM once the receiver has counted a random threshold of
   deliveries (seeded by --seed, at least MIN_PROGRESS more than at the last stop), and is
   started again at once. The last incarnation delivers the rest and is stopped too.
   Prints delivered (distinct keys that arrived), lost (keys that never did), duplicates
   (arrivals beyond the first), the stops that found rows still pending (they fell in
   the burst), each stop's exit status, and the longest stop: SIGTERM to process exit.
2. disk: the database on a small tmpfs (`mount -t tmpfs -o size=--disk-size`, needs
   root; when the mount fails, or with --disk pagecap, SQLite's own SQLITE_FULL through
   `PRAGMA max_page_count` on the writer connection, the database packed full of
   delivery attempts, as the test's pack_attempts). --alerts outbox rows; then
   watchdesk.store.engine.Store and a watchdesk.outbox.Drainer with a WebhookChannel to
   the receiver. tmpfs: `PRAGMA wal_checkpoint(TRUNCATE)` (the next commit must grow the
   WAL), then a filler file written until ENOSPC. --full-rounds drain rounds run while
   the disk is full; then the filler is deleted (the page cap raised) and the drainer
   runs until nothing is pending. Prints the sends while full, the outcomes the drainer
   held, delivered / lost / duplicates and the outbox's final counts. The tmpfs is
   unmounted (umount -l) at the end, also after an error.
3. lock: no daemon subprocess; watchdesk.runtime.Runtime over a config of --feeds feeds
   (`fetch_article = "never"`, per_host = concurrency since every feed is on 127.0.0.1,
   a watchlist matching the items), each feed two new items. A second sqlite3 connection
   holds `BEGIN EXCLUSIVE` (and an UPDATE) for --lock-seconds from the start of
   `Runtime.poll_feeds(rt.all_feeds())`, which runs in one event loop beside a probe task
   (sleep 10 ms, record the overshoot). Prints the longest event-loop stall, the feeds
   fetched while the lock was held (the server's request log at the release), the new
   entries the polls reported and the entries in the database afterwards (all polls
   committed after the release), and when the polls finished; then the same run on a
   fresh database without the lock, for comparison. A one-feed warm-up run comes first
   (not printed) so that neither measured run pays the first-poll imports. Writes wait
   up to the store's busy_timeout (30 s): past it the write then waiting fails (that poll
   is counted failed) and the ones queued behind it commit after the release.

Goals: sigterm 0 duplicates and 0 lost; disk at most one send per channel while full
(the send whose record the store refused; never the same alert again and again), then
0 lost and 0 duplicates; lock: the longest stall far below the lock time, every feed
fetched while locked, every poll committed after the release.

    python bench/faults.py                          # all three, about a minute each
    python bench/faults.py --only sigterm --stops 20 --seed 3
    python bench/faults.py --only disk --disk pagecap
    python bench/faults.py --only lock --feeds 200 --lock-seconds 5

Not a test: it prints figures and asserts no timing. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deliver import QuietHandler  # noqa: E402  (bench/deliver.py)

from watchdesk.config import load_config
from watchdesk.models import Alert
from watchdesk.notify.webhook import WebhookChannel
from watchdesk.outbox import Drainer
from watchdesk.runtime import Runtime
from watchdesk.store import open_db
from watchdesk.store import outbox as outbox_store
from watchdesk.store.engine import Store

CHANNEL = "hook"
HOOK_PATH = "/hook"
MIN_PROGRESS = 5  # deliveries an incarnation makes before it is stopped
PROBE_SLEEP = 0.01  # the loop-lag probe's sleep
FEED_PATH = re.compile(r"^/feed/([\w-]+)/(\d+)$")
WATCHLIST = "description = \"Faults bench\"\nmatch = ['fentanyl']\n"


# ---- the local HTTP server: webhook receiver and feeds ----------------------------------------


class Local:
    """POST /hook counts deliveries by key; GET /feed/<run>/<i> serves RSS, logged."""

    def __init__(self, delay: float, items: int = 2):
        self.delay = delay
        self.items = items
        self.received: Counter[str] = Counter()
        self.feed_gets: Counter[str] = Counter()  # per run
        self.bad_posts = 0
        self.lock = threading.Lock()
        self.httpd = self._server()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def arrivals(self) -> int:
        with self.lock:
            return sum(self.received.values())

    def distinct(self) -> int:
        with self.lock:
            return len(self.received)

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.received)

    def fetched(self, run: str) -> int:
        with self.lock:
            return self.feed_gets[run]

    def rss(self, run: str, i: int) -> bytes:
        now = datetime.now(UTC)
        items = "".join(
            f"<item><title>Fentanyl seizure {run} {i}.{j}</title>"
            f"<link>{self.base}/story/{run}/{i}/{j}</link><guid>{run}-{i}-{j}</guid>"
            f"<pubDate>{format_datetime(now)}</pubDate>"
            f"<description>Police seized fentanyl pills, case {i}.{j}.</description></item>"
            for j in range(self.items)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Feed {run} {i}</title><link>{self.base}/</link><description>bench</description>"
            f"{items}</channel></rss>"
        ).encode()

    def _server(self) -> ThreadingHTTPServer:
        local = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                found = FEED_PATH.match(self.path)
                if not found:
                    self._reply(404, b"not found", "text/plain")
                    return
                with local.lock:
                    local.feed_gets[found.group(1)] += 1
                self._reply(200, local.rss(found.group(1), int(found.group(2))), "application/rss+xml")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path != HOOK_PATH:
                    self._reply(404, b"not found", "text/plain")
                    return
                try:
                    key = str(json.loads(body)["key"])
                except (ValueError, KeyError, TypeError):
                    with local.lock:
                        local.bad_posts += 1
                    self._reply(400, b"bad body", "text/plain")
                    return
                if local.delay:
                    time.sleep(local.delay)  # a channel that takes a moment to accept
                with local.lock:
                    local.received[key] += 1
                self._reply(200, b"ok", "text/plain")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        return Server(("127.0.0.1", 0), Handler)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.bad_posts = 0


@contextmanager
def local_server(delay: float) -> Iterator[Local]:
    local = Local(delay)
    thread = threading.Thread(target=local.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield local
    finally:
        local.httpd.shutdown()
        local.httpd.server_close()


# ---- shared pieces -------------------------------------------------------------------------


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


def key_of(i: int) -> str:
    return f"key-{i}"


def fill_outbox(db_path: Path, count: int) -> None:
    """`count` pending deliveries on the webhook channel, keys key-0 ... key-(count-1)."""
    db = open_db(db_path)
    try:
        with db.atomic():
            for i in range(count):
                outbox_store.enqueue(db, key_of(i), CHANNEL, alert(i), hit_id=None, now=0.0)
    finally:
        db.close()


def tally(received: Counter[str], total: int) -> tuple[int, int, int]:
    """delivered (distinct expected keys that arrived), lost, duplicates."""
    delivered = len(set(received) & {key_of(i) for i in range(total)})
    return delivered, total - delivered, sum(n - 1 for n in received.values())


def outbox_counts(db_path: Path) -> dict[str, int]:
    """Outbox rows by status, read-only ({} before the table exists)."""
    if not db_path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        except sqlite3.OperationalError:
            return {}


def write_config(folder: Path, body: str) -> Path:
    """watchdesk.toml in `folder`; `body` follows the [network] table (its first lines may
    add keys to it)."""
    (folder / "watchlists").mkdir(parents=True, exist_ok=True)
    path = folder / "watchdesk.toml"
    path.write_text(
        textwrap.dedent(
            """\
            [watchdesk]
            database = "watchdesk.db"

            [network]
            allow = ["127.0.0.1/32"]
            robots = false
            """
        )
        + body
    )
    return path


def goal(ok: bool) -> str:
    return "met" if ok else "MISSED"


class LogCounter(logging.Handler):
    """Counts this process's watchdesk log records (WARNING and up) by their first word;
    printed once per scenario instead of the records themselves."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname.lower()} {record.getMessage().split(' ', 1)[0]}"] += 1

    def take(self) -> str:
        text = ", ".join(f"{name} x{n}" for name, n in sorted(self.counts.items())) or "none"
        self.counts.clear()
        return text


LOGS = LogCounter()


# ---- 1. SIGTERM during a burst ---------------------------------------------------------------


class Daemon:
    """`watchdesk run` in its own process group; each incarnation's stderr in its own file."""

    def __init__(self, config: Path):
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def err_path(self) -> Path:
        return self.config.parent / f"daemon-{self.starts}.err"

    def start(self) -> None:
        self.starts += 1
        with open(self.config.parent / "daemon.out", "ab") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchdesk", "--config", str(self.config), "run"],
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stop(self, timeout: float) -> tuple[int, float, bool]:
        """SIGTERM; the exit status, seconds from the signal to the exit, and whether the
        daemon logged daemon_stopped."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            kill_group(self.proc.pid)
        took = time.monotonic() - started
        return code, took, "daemon_stopped" in self.err_path.read_text(errors="replace")

    def cleanup(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            kill_group(self.proc.pid)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.err_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited ({self.proc.returncode}):\n{tail}")


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group this script started (parse workers)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(
    condition: Callable[[], bool], daemon: Daemon, timeout: float, what: str, every: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        daemon.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def sigterm_scenario(args: argparse.Namespace, folder: Path, local: Local) -> None:
    total = args.alerts
    upper = total - MIN_PROGRESS * (args.stops + 1)
    if upper - MIN_PROGRESS < args.stops:
        raise SystemExit(f"--alerts {total} is too few for --stops {args.stops}")
    rng = random.Random(args.seed)
    thresholds = sorted(rng.sample(range(MIN_PROGRESS, upper), args.stops))
    print(
        f"sigterm: {total} alerts pre-queued on a webhook channel, `watchdesk run` stopped with "
        f"SIGTERM {args.stops} times mid-burst and restarted (seed {args.seed}, receiver "
        f"{args.receiver_delay:g} ms per delivery)",
        flush=True,
    )
    local.reset()
    config = write_config(
        folder, f'\n[channel.{CHANNEL}]\ntype = "webhook"\nurl = "{local.url(HOOK_PATH)}"\n'
    )
    db_path = folder / "watchdesk.db"
    fill_outbox(db_path, total)
    daemon = Daemon(config)
    stops: list[tuple[int, float, bool, int, int]] = []  # exit, seconds, logged, arrivals, pending after
    skipped = 0
    started = time.monotonic()
    try:
        for threshold in thresholds:
            target = min(max(threshold, local.arrivals() + MIN_PROGRESS), total - 1)
            daemon.start()
            wait_for(
                lambda target=target: local.arrivals() >= target or local.distinct() >= total,
                daemon,
                args.timeout,
                f"{target} deliveries",
            )
            if local.distinct() >= total:
                skipped += 1  # everything went out before this stop could land
            code, took, logged = daemon.stop(args.timeout)
            stops.append((code, took, logged, local.arrivals(), outbox_counts(db_path).get("pending", 0)))
        daemon.start()
        wait_for(lambda: local.distinct() >= total, daemon, args.timeout, "every delivery")
        wait_for(
            lambda: not outbox_counts(db_path).get("pending"), daemon, args.timeout, "an empty outbox", 0.1
        )
        last_code, last_took, last_logged = daemon.stop(args.timeout)
    finally:
        daemon.cleanup()
    wall = time.monotonic() - started

    delivered, lost, dups = tally(local.snapshot(), total)
    state = outbox_counts(db_path)
    mid = sum(1 for s in stops if s[4] > 0)
    codes = Counter(s[0] for s in stops)
    longest = max((s[1] for s in stops), default=0.0)
    print(f"  delivered   {delivered}/{total}")
    print(f"  lost        {lost}   (goal 0: {goal(lost == 0)})")
    print(f"  duplicates  {dups}   (goal 0: {goal(dups == 0)})")
    print(
        f"  stops       {len(stops)}; found rows pending (in the burst) {mid}/{len(stops)}; after the "
        f"burst {skipped}; exit status {dict(codes)}; daemon_stopped logged {sum(s[2] for s in stops)}"
        f"/{len(stops)}"
    )
    if stops:
        times = sorted(s[1] for s in stops)
        print(
            f"  stop time   longest {longest:.2f} s, median {times[len(times) // 2]:.2f} s "
            f"(SIGTERM to exit; the final stop, outbox empty: {last_took:.2f} s, exit {last_code}"
            f"{'' if last_logged else ', daemon_stopped NOT logged'})"
        )
    print(f"  arrivals at each stop: {', '.join(str(s[3]) for s in stops)}; daemon starts {daemon.starts}")
    print(
        f"  outbox: {state}; malformed posts {local.bad_posts}; wall {wall:.1f} s",
        flush=True,
    )


# ---- 2. a full disk ----------------------------------------------------------------------------


@dataclass
class FullDisk:
    method: str  # "tmpfs" or "pagecap"
    folder: Path
    mounted: bool = False
    filler: Path | None = None


@contextmanager
def full_disk_place(args: argparse.Namespace, folder: Path) -> Iterator[FullDisk]:
    """A folder on a small tmpfs (unmounted at the end, also after an error), or a plain
    folder when the page cap is used instead."""
    place = FullDisk("pagecap", folder / "pagecap")
    mountpoint = folder / "disk"
    why = "--disk pagecap"
    if args.disk in ("auto", "tmpfs"):
        mountpoint.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={args.disk_size}", "tmpfs", str(mountpoint)],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            place = FullDisk("tmpfs", mountpoint, mounted=True)
        else:
            why = f"mount failed: {(done.stderr or done.stdout).strip() or done.returncode}"
            if args.disk == "tmpfs":
                raise SystemExit(f"disk: cannot mount a tmpfs ({why})")
    if place.method == "pagecap":
        place.folder.mkdir()
        print(f"  (no tmpfs: {why}; SQLite's page cap, PRAGMA max_page_count, stands in)")
    try:
        yield place
    finally:
        if place.mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill_up(folder: Path) -> Path:
    """Write a filler file until the file system answers ENOSPC (1 MiB, then 64 KiB,
    then 4 KiB pieces, so that it is full to the page)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (2**20, 2**16, 2**12):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def pack_attempts(conn: sqlite3.Connection) -> None:
    """Fill the database to its page cap with the smallest delivery-attempt rows, so that
    the next write needing room fails with SQLITE_FULL (as the test's pack_attempts)."""
    sql = "INSERT INTO delivery_attempts (outbox_id, at, ok, message, duration_ms) VALUES (1, 0, 0, '', 0)"
    for batch in (50, 1):
        try:
            while True:
                with conn:
                    conn.executemany(sql, [()] * batch)
        except sqlite3.OperationalError as e:
            if "full" not in str(e):
                raise


def disk_scenario(args: argparse.Namespace, folder: Path, local: Local) -> None:
    total = args.alerts
    print(
        f"disk: {total} alerts pre-queued, a Drainer over watchdesk.store.engine.Store, "
        f"{args.full_rounds} drain rounds while the disk is full, then room again",
        flush=True,
    )
    local.reset()
    with full_disk_place(args, folder) as place:
        db_path = place.folder / "watchdesk.db"
        fill_outbox(db_path, total)
        store = Store.open(db_path)
        try:
            if place.method == "tmpfs":
                store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit must grow the WAL
                place.filler = fill_up(place.folder)
                vfs = os.statvfs(place.folder)
                how = (
                    f"tmpfs size={args.disk_size}: database {db_path.stat().st_size // 1024} KiB, filler "
                    f"{place.filler.stat().st_size // 1024} KiB, {vfs.f_bavail * vfs.f_frsize} bytes free"
                )
                filler = place.filler

                def make_room() -> None:
                    filler.unlink()
            else:
                (pages,) = store.db.execute("PRAGMA page_count").fetchone()
                store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
                pack_attempts(store.db.conn)
                (packed,) = store.db.execute("PRAGMA page_count").fetchone()
                how = f"page cap: {pages} pages, packed to {packed} with delivery attempts"

                def make_room() -> None:
                    store.db.execute("PRAGMA max_page_count = 1073741823")

            print(f"  full disk by {place.method} ({how})", flush=True)
            LOGS.take()
            result = asyncio.run(drain_through(args, store, local, make_room))
            final = outbox_store.counts(store.db)
        finally:
            with suppress(Exception):
                store.close()
            if place.filler is not None:
                with suppress(FileNotFoundError):
                    place.filler.unlink()

    while_full, rounds_full, held, refused, after_rounds, held_left, drained_s = result
    delivered, lost, dups = tally(local.snapshot(), total)
    print(
        f"  sends while full  {while_full} in {rounds_full} rounds (goal at most 1 per channel: "
        f"{goal(while_full <= 1)}); outcomes held in memory {held}; store writes refused {refused}"
    )
    print(f"  delivered         {delivered}/{total}")
    print(f"  lost              {lost}   (goal 0: {goal(lost == 0)})")
    print(f"  duplicates        {dups}   (goal 0: {goal(dups == 0)})")
    print(
        f"  after room: {after_rounds} drain rounds, {drained_s:.1f} s, outcomes still held {held_left}; "
        f"outbox {final}; malformed posts {local.bad_posts}"
    )
    print(f"  log (warning and up): {LOGS.take()}", flush=True)


async def drain_through(
    args: argparse.Namespace, store: Store, local: Local, make_room: Callable[[], None]
) -> tuple[int, int, int, int, int, int, float]:
    channel = WebhookChannel(CHANNEL, local.url(HOOK_PATH))
    drainer = Drainer(store, {CHANNEL: channel}, time.time, random.random)
    try:
        for _ in range(args.full_rounds):
            await drainer.drain()
        while_full = local.arrivals()
        held = sum(len(o) for o in drainer.unrecorded.values())
        refused = LOGS.counts.get("error delivery_not_recorded", 0)
        make_room()
        started = time.monotonic()
        rounds = 0
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            await drainer.drain()
            rounds += 1
            pending = (await store.read(outbox_store.counts)).get("pending", 0)
            if not pending and not drainer.unrecorded:
                break
        return (
            while_full,
            args.full_rounds,
            held,
            refused,
            rounds,
            len(drainer.unrecorded),
            time.monotonic() - started,
        )
    finally:
        await channel.aclose()


# ---- 3. a locked database ------------------------------------------------------------------


@dataclass
class LockRun:
    feeds: int
    stall: float  # the longest overshoot of the probe's 10 ms sleep
    probes: int
    fetched_locked: int | None  # feed requests served before the release
    released_at: float | None  # seconds from the start of the polls
    polls_s: float  # seconds from the start to the last poll done
    new_entries: int
    failed: int
    stored: int  # entries in the database afterwards
    expected: int


def lock_config(folder: Path, local: Local, run: str, feeds: int, concurrency: int) -> Path:
    (folder / "watchlists").mkdir(parents=True, exist_ok=True)
    (folder / "watchlists" / "drugs.toml").write_text(WATCHLIST)
    body = "".join(
        f'\n[[feed]]\nurl = "{local.url(f"/feed/{run}/{i}")}"\nname = "{run}-{i}"\nfetch_article = "never"\n'
        for i in range(feeds)
    )
    network = f"concurrency = {concurrency}\nper_host = {concurrency}\n"
    polling = '\n[polling]\ninterval = "1h"\nfetch_article = "never"\n'
    return write_config(folder, network + polling + body)


def lock_run(
    folder: Path, local: Local, run: str, feeds: int, concurrency: int, lock_seconds: float | None
) -> LockRun:
    folder.mkdir()
    rt = Runtime(load_config(lock_config(folder, local, run, feeds, concurrency)))
    rows = rt.all_feeds()
    db_path = folder / "watchdesk.db"
    locker: sqlite3.Connection | None = None
    released = threading.Event()
    fetched_locked: list[int] = []
    release_time: list[float] = []

    def release() -> None:
        fetched_locked.append(local.fetched(run))
        assert locker is not None
        locker.execute("COMMIT")
        release_time.append(time.monotonic())
        released.set()

    if lock_seconds is not None:
        locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("UPDATE feeds SET title = title")
    timer = threading.Timer(lock_seconds or 0.0, release)

    async def scenario() -> tuple[float, int, float, Any]:
        stall = 0.0
        probes = 0
        started = time.monotonic()
        polls = asyncio.create_task(rt.poll_feeds(rows))
        if locker is not None:
            timer.start()
        try:
            while not polls.done():
                before = time.monotonic()
                await asyncio.sleep(PROBE_SLEEP)
                stall = max(stall, time.monotonic() - before - PROBE_SLEEP)
                probes += 1
            summary = await polls
            return stall, probes, started, summary
        finally:
            await rt.aclose()

    try:
        stall, probes, started, summary = asyncio.run(scenario())
        done = time.monotonic()
    finally:
        timer.cancel()
        if locker is not None:
            if not released.is_set():
                with suppress(sqlite3.Error):
                    locker.execute("COMMIT")
            locker.close()
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        (stored,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
    return LockRun(
        feeds=len(rows),
        stall=stall,
        probes=probes,
        fetched_locked=fetched_locked[0] if fetched_locked else None,
        released_at=release_time[0] - started if release_time else None,
        polls_s=done - started,
        new_entries=summary.new_entries,
        failed=summary.failed,
        stored=stored,
        expected=len(rows) * local.items,
    )


def lock_scenario(args: argparse.Namespace, folder: Path, local: Local) -> None:
    print(
        f"lock: Runtime.poll_feeds over {args.feeds} feeds ({local.items} new items each, concurrency "
        f"{args.concurrency}) with another connection holding BEGIN EXCLUSIVE for "
        f"{args.lock_seconds:g} s, a loop-lag probe beside it (sleep {PROBE_SLEEP * 1000:g} ms)",
        flush=True,
    )
    lock_run(folder / "warmup", local, "warmup", 1, args.concurrency, None)
    LOGS.take()
    locked = lock_run(folder / "locked", local, "locked", args.feeds, args.concurrency, args.lock_seconds)
    locked_logs = LOGS.take()
    free = lock_run(folder / "free", local, "free", args.feeds, args.concurrency, None)
    free_logs = LOGS.take()
    print(
        f"  {'run':14} {'longest stall':>13} {'probes':>7} {'fetched locked':>15} {'released':>9} "
        f"{'polls done':>10} {'new entries':>12} {'failed':>6} {'stored':>11}"
    )
    for name, r in (("locked", locked), ("without lock", free)):
        fetched = "-" if r.fetched_locked is None else f"{r.fetched_locked}/{r.feeds}"
        rel = "-" if r.released_at is None else f"{r.released_at:.2f} s"
        print(
            f"  {name:14} {r.stall * 1000:10.1f} ms {r.probes:>7} {fetched:>15} {rel:>9} "
            f"{r.polls_s:8.2f} s {r.new_entries:>12} {r.failed:>6} {f'{r.stored}/{r.expected}':>11}"
        )
    committed = locked.stored == locked.expected and locked.failed == 0
    after = locked.released_at is not None and locked.polls_s >= locked.released_at
    print(
        f"  longest stall {locked.stall * 1000:.1f} ms while the lock was held {args.lock_seconds:g} s "
        f"(goal: far below it; without the lock {free.stall * 1000:.1f} ms)"
    )
    print(
        f"  fetched while locked {locked.fetched_locked}/{locked.feeds} "
        f"(goal all: {goal(locked.fetched_locked == locked.feeds)}); all polls committed after the "
        f"release: {goal(committed and after)} ({locked.stored} entries stored, the last poll done "
        f"{locked.polls_s - (locked.released_at or 0.0):.2f} s after the release)"
    )
    print(f"  log (warning and up): locked: {locked_logs}; without lock: {free_logs}", flush=True)


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog="See the module docstring (or bench/README.md) for what is measured and how.",
    )
    parser.add_argument(
        "--only",
        choices=("sigterm", "disk", "lock"),
        action="append",
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--alerts", type=int, default=500, help="sigterm, disk: outbox rows pre-queued (default 500)"
    )
    parser.add_argument(
        "--receiver-delay",
        type=float,
        default=10.0,
        help="ms the webhook receiver takes before answering 200 (default 10)",
    )
    parser.add_argument("--stops", type=int, default=10, help="sigterm: SIGTERMs mid-burst (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="sigterm: seed of the stop moments (default 1)")
    parser.add_argument(
        "--disk",
        choices=("auto", "tmpfs", "pagecap"),
        default="auto",
        help="disk: a full tmpfs, SQLite's page cap, or tmpfs falling back to the cap (default auto)",
    )
    parser.add_argument("--disk-size", default="8m", help="disk: the tmpfs size (default 8m)")
    parser.add_argument(
        "--full-rounds", type=int, default=5, help="disk: drain rounds while the disk is full (default 5)"
    )
    parser.add_argument("--feeds", type=int, default=50, help="lock: feeds polled (default 50)")
    parser.add_argument(
        "--lock-seconds", type=float, default=10.0, help="lock: how long BEGIN EXCLUSIVE is held (default 10)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=20, help="lock: [network] concurrency and per_host (default 20)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="give up waiting on the daemon after this many s (300)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (databases, logs)")
    args = parser.parse_args(argv)
    if min(args.alerts, args.feeds, args.concurrency) < 1 or min(args.stops, args.full_rounds) < 0:
        parser.error(
            "--alerts, --feeds and --concurrency must be positive, --stops and --full-rounds not negative"
        )
    if args.lock_seconds <= 0 or args.receiver_delay < 0:
        parser.error("--lock-seconds must be positive, --receiver-delay not negative")
    chosen = args.only or ["sigterm", "disk", "lock"]

    logging.getLogger("watchdesk").addHandler(LOGS)
    logging.getLogger("watchdesk").propagate = False  # counted, not printed
    print(
        f"watchdesk faults bench: {', '.join(chosen)}; python {sys.version.split()[0]}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="watchdesk-bench-faults-"))
    scenarios = {"sigterm": sigterm_scenario, "disk": disk_scenario, "lock": lock_scenario}
    try:
        with local_server(args.receiver_delay / 1000) as local:
            for name in ("sigterm", "disk", "lock"):
                if name in chosen:
                    (root / name).mkdir()
                    started = time.monotonic()
                    scenarios[name](args, root / name, local)
                    print(f"  ({name}: {time.monotonic() - started:.1f} s)\n", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
