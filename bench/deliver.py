"""Delivery durability and latency of `watchdesk run`: SIGKILLs while delivering, then
hit-to-receiver latency without kills.

This process runs the receivers on 127.0.0.1: a real SMTP server (aiosmtpd, plain, the
channel's `tls = "none"`) and one HTTP server that serves the feed and records Slack
webhook posts (answering `ok`, TCP_NODELAY so the receiver adds no Nagle delay). The
daemon is the real `watchdesk run`, a subprocess in its own process group. The feed
holds --hits items, each a hit of a watchlist that notifies both channels
(`backfill = "all"`, `fetch_article = "never"`), so the first poll queues 2 x hits
deliveries in one transaction.

1. Crash run: while the outbox drains, the daemon is SIGKILLed --kills times and started
   again at once. Kill i comes a random 0-50 ms after the receivers' count (duplicates
   included) reaches a random threshold (seeded by --seed), and never before the
   incarnation being killed delivered a few alerts itself, so every kill lands mid-drain.
   SIGKILL goes to the daemon, then to whatever it left in its process group (its parse
   workers), as systemd does with a unit's cgroup. When the outbox has no pending row
   the daemon is stopped with SIGTERM, and per channel the script prints delivered
   (distinct stories that arrived), lost (stories that never did) and duplicates
   (arrivals beyond the first), with `PRAGMA integrity_check`.
2. Latency run (a fresh database, no kills): for every story and channel, the time from
   the poll that stored the hit (hits.created_at, the daemon's clock) to the first
   arrival at the receiver (this process's clock; same machine): p50, p95 and max.
   With --batch B the feed gains B new items per poll instead of all at once (polls
   every 5 s: the daemon's poll tick, `interval = "1s"`), the way a live feed grows.

Goals (the design's durability contract): lost 0, duplicates <= kills, p95 < 2 s.

    python bench/deliver.py                         # 1,000 hits, 25 kills, seed 1
    python bench/deliver.py --hits 200 --kills 5 --seed 7
    python bench/deliver.py --skip-crash --batch 50 # latency only, a feed growing 50 a poll

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

HOOK_PATH = "/services/T0BENCH/B0BENCH/benchWebhookToken"
SLACK_ENV = "WATCHDESK_BENCH_SLACK"
TITLE = "Fentanyl seizure report {:05d}"
TITLE_ID = re.compile(r"Fentanyl seizure report (\d{5})")
LINK_ID = re.compile(r"/story/(\d{5})$")
MIN_PROGRESS = 10  # deliveries an incarnation makes before it may be killed
CHANNELS = ("email", "slack")
LATENCY_GOAL = 2.0


# ---- receivers ---------------------------------------------------------------------------


@dataclass
class Arrivals:
    """What the receivers got: (arrival time, raw bytes) per channel, thread-safe."""

    email: list[tuple[float, bytes]] = field(default_factory=list)
    slack: list[tuple[float, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, channel: str, data: bytes) -> None:
        now = time.time()
        with self.lock:
            getattr(self, channel).append((now, data))

    def count(self) -> int:
        with self.lock:
            return len(self.email) + len(self.slack)

    def snapshot(self) -> dict[str, list[tuple[float, bytes]]]:
        with self.lock:
            return {"email": list(self.email), "slack": list(self.slack)}


class Feed:
    """The feed document the HTTP server serves; replaced as the feed grows."""

    def __init__(self) -> None:
        self.body = b""
        self.lock = threading.Lock()

    def publish(self, base: str, count: int) -> None:
        body = rss_feed(base, count)
        with self.lock:
            self.body = body

    def get(self) -> bytes:
        with self.lock:
            return self.body


class SmtpHandler:
    """aiosmtpd handler: records each accepted message."""

    def __init__(self, arrivals: Arrivals):
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrivals.add("email", envelope.content)
        return "250 2.0.0 accepted"


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 without logging, and one way to answer (bench/faults.py too)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each keep-alive answer waits ~40 ms (delayed ACK)

    def log_message(self, format: str, *args: object) -> None:
        return

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def http_server(arrivals: Arrivals, feed: Feed) -> ThreadingHTTPServer:
    """GET /feed.xml serves the feed; POST HOOK_PATH records a Slack post, answers `ok`."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path == "/feed.xml":
                self._reply(200, feed.get(), "application/rss+xml")
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if len(body) < length:  # the daemon was killed mid-request: nothing was posted
                self.close_connection = True
                return
            if self.path == HOOK_PATH:
                arrivals.add("slack", body)
                self._reply(200, b"ok", "text/plain")
            else:
                self._reply(404, b"no_service", "text/plain")

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed daemon resets
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receivers:
    arrivals: Arrivals
    feed: Feed
    base: str
    smtp_port: int


@contextmanager
def receivers() -> Iterator[Receivers]:
    arrivals, feed = Arrivals(), Feed()
    httpd = http_server(arrivals, feed)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    controller = Controller(SmtpHandler(arrivals), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Receivers(arrivals, feed, f"http://127.0.0.1:{httpd.server_address[1]}", controller.port)
    finally:
        controller.stop()
        httpd.shutdown()
        httpd.server_close()


# ---- feed, config, daemon ------------------------------------------------------------------


def rss_feed(base: str, count: int) -> bytes:
    """An RSS feed of `count` items (newest first), each a unique story and a hit."""
    now = datetime.now(UTC)
    items = []
    for i in reversed(range(count)):
        link = f"{base}/story/{i:05d}"
        items.append(
            f"<item><title>{TITLE.format(i)}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>{format_datetime(now - timedelta(seconds=count - i))}</pubDate>"
            f"<description>Police seized fentanyl pills in case {i}.</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Metro</title>'
        f"<link>{base}/</link><description>Metro news</description>{''.join(items)}</channel></rss>"
    ).encode()


def write_config(folder: Path, rx: Receivers, max_entries: int, interval: str) -> Path:
    (folder / "watchlists").mkdir(parents=True)
    (folder / "watchlists" / "bench.toml").write_text(
        'description = "Delivery bench"\nmatch = [\'fentanyl\']\nnotify = ["desk", "newsroom"]\n'
    )
    config = folder / "watchdesk.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [watchdesk]
            database = "watchdesk.db"

            [polling]
            backfill = "all"
            interval = "{interval}"
            max_entries = {max_entries}
            fetch_article = "never"

            [network]
            allow = ["127.0.0.1/32"]
            robots = false

            [[feed]]
            url = "{rx.base}/feed.xml"
            name = "Metro"

            [channel.desk]
            type = "email"
            smtp = "smtp://127.0.0.1:{rx.smtp_port}"
            tls = "none"
            from = "watchdesk@example.org"
            to = ["desk@example.org"]

            [channel.newsroom]
            type = "slack"
            webhook = "env:{SLACK_ENV}"
            """
        )
    )
    return config


class Daemon:
    """`watchdesk run` in its own process group; its logs appended to files."""

    def __init__(self, config: Path, env: dict[str, str]):
        self.config = config
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        folder = self.config.parent
        with open(folder / "daemon.out", "ab") as out, open(folder / "daemon.err", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchdesk", "--config", str(self.config), "run"],
                stdout=out,
                stderr=err,
                env=self.env,
                start_new_session=True,
            )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        kill_group(self.proc.pid)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        finally:
            kill_group(self.proc.pid)

    def cleanup(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            kill_group(self.proc.pid)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.config.parent / "daemon.err").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the daemon exited ({self.proc.returncode}):\n{tail}")


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group this script started."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(
    condition: Callable[[], bool], daemon: Daemon, timeout: float, what: str, every: float = 0.005
) -> None:
    """Check `condition` every `every` s (reading SQLite: use 0.1, not to compete with the
    daemon for the CPU) until it holds; exit past `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        daemon.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def at_least(count: Callable[[], int], target: int) -> Callable[[], bool]:
    """A condition: `count()` has reached `target`."""
    return lambda: count() >= target


def outbox_state(db_path: Path) -> dict[str, int]:
    """Outbox rows by status ({} before the database and its tables exist)."""
    if not db_path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        except sqlite3.OperationalError:
            return {}


def drained(db_path: Path, total: int) -> bool:
    state = outbox_state(db_path)
    return sum(state.values()) == total and not state.get("pending")


# ---- reading what arrived -------------------------------------------------------------------


def story_of(channel: str, data: bytes) -> int:
    """The story number of one arrival (the title in the Slack payload / email subject)."""
    if channel == "slack":
        text = json.loads(data)["text"]
    else:
        text = str(email.message_from_bytes(data, policy=email.policy.default)["Subject"])
    found = TITLE_ID.search(text)
    if not found:
        raise ValueError(f"no story in {channel} arrival: {text[:100]!r}")
    return int(found.group(1))


def first_arrivals(arrivals: Arrivals) -> dict[str, tuple[Counter[int], dict[int, float]]]:
    """Per channel: arrivals per story, and each story's first arrival time."""
    result = {}
    for channel, items in arrivals.snapshot().items():
        counts: Counter[int] = Counter()
        first: dict[int, float] = {}
        for at, data in items:
            story = story_of(channel, data)
            counts[story] += 1
            first[story] = min(at, first.get(story, at))
        result[channel] = (counts, first)
    return result


def hit_times(db_path: Path) -> dict[int, float]:
    """Story number -> hits.created_at (when the poll stored the hit); {} before the
    database and its tables exist."""
    if not db_path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            rows = db.execute(
                "SELECT e.link, h.created_at FROM hits h JOIN entries e ON e.id = h.entry_id"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
        found = {}
        for link, created in rows:
            m = LINK_ID.search(link or "")
            if m:
                found[int(m.group(1))] = float(created)
    return found


def integrity(db_path: Path) -> str:
    with closing(sqlite3.connect(db_path)) as db:
        return ", ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(p) - 1]


# ---- the runs -------------------------------------------------------------------------------


def crash_run(args: argparse.Namespace, folder: Path) -> None:
    rng = random.Random(args.seed)
    total = args.hits * 2
    upper = total - 2 * (args.kills + 1) * MIN_PROGRESS
    if upper <= MIN_PROGRESS or args.kills > upper - MIN_PROGRESS:
        raise SystemExit(f"--hits {args.hits} is too few for --kills {args.kills}")
    thresholds = sorted(rng.sample(range(MIN_PROGRESS, upper), args.kills))
    delays = [rng.uniform(0.0, 0.05) for _ in range(args.kills)]
    print(f"crash run: {args.kills} SIGKILLs while draining, each restarted at once (seed {args.seed})")
    with receivers() as rx:
        rx.feed.publish(rx.base, args.hits)
        config = write_config(folder, rx, args.hits, "1h")
        daemon = Daemon(config, {**os.environ, SLACK_ENV: rx.base + HOOK_PATH})
        db_path = folder / "watchdesk.db"
        pending_at_kill: list[int] = []
        started = time.monotonic()
        try:
            daemon.start()
            for threshold, delay in zip(thresholds, delays, strict=True):
                target = max(threshold, rx.arrivals.count() + MIN_PROGRESS)
                wait_for(at_least(rx.arrivals.count, target), daemon, args.timeout, f"{target} arrivals")
                time.sleep(delay)
                daemon.kill()
                pending_at_kill.append(outbox_state(db_path).get("pending", 0))
                daemon.start()
            wait_for(lambda: drained(db_path, total), daemon, args.timeout, "an empty outbox", 0.1)
            stopped = daemon.stop()
        finally:
            daemon.cleanup()
        wall = time.monotonic() - started
        arrived = first_arrivals(rx.arrivals)

    state = outbox_state(db_path)
    print(f"  {'channel':8} {'delivered':>11} {'lost':>5} {'duplicates':>11}")
    all_dups = 0
    for channel in CHANNELS:
        counts, _ = arrived[channel]
        delivered = len(set(counts) & set(range(args.hits)))
        dups = sum(n - 1 for n in counts.values())
        all_dups += dups
        print(f"  {channel:8} {delivered:>5}/{args.hits:<5} {args.hits - delivered:>5} {dups:>11}")
    mid = sum(p > 0 for p in pending_at_kill)
    print(
        f"  duplicates {all_dups} in all (goal <= kills = {args.kills}: "
        f"{'met' if all_dups <= args.kills else 'MISSED'}); kills that found rows pending: "
        f"{mid}/{args.kills}; daemon starts {daemon.starts}; last stop exit {stopped}"
    )
    print(
        f"  outbox: sent {state.get('sent', 0)}, pending {state.get('pending', 0)}, "
        f"dead {state.get('dead', 0)}; integrity_check: {integrity(db_path)}; wall {wall:.1f} s"
    )


def latency_run(args: argparse.Namespace, folder: Path) -> None:
    batch = args.batch or args.hits
    how = "all in one poll" if batch >= args.hits else f"{batch} new items per poll (a poll every 5 s)"
    print(f"latency run: no kills, {args.hits} hits, {how}")
    with receivers() as rx:
        published = min(batch, args.hits)
        rx.feed.publish(rx.base, published)
        config = write_config(folder, rx, max(batch, 1), "1s" if batch < args.hits else "1h")
        daemon = Daemon(config, {**os.environ, SLACK_ENV: rx.base + HOOK_PATH})
        db_path = folder / "watchdesk.db"
        started = time.monotonic()
        try:
            daemon.start()
            while published < args.hits:  # grow the feed once the last batch was stored
                wait_for(
                    at_least(lambda: len(hit_times(db_path)), published),
                    daemon,
                    args.timeout,
                    f"{published} hits stored",
                    0.1,
                )
                published = min(published + batch, args.hits)
                rx.feed.publish(rx.base, published)
            wait_for(lambda: drained(db_path, args.hits * 2), daemon, args.timeout, "an empty outbox", 0.1)
            daemon.stop()
        finally:
            daemon.cleanup()
        wall = time.monotonic() - started
        arrived = first_arrivals(rx.arrivals)

    stored = hit_times(db_path)
    polls = len(set(stored.values()))
    print(f"  {'channel':8} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    every: list[float] = []
    for channel in CHANNELS:
        _, first = arrived[channel]
        latencies = [first[s] - stored[s] for s in first if s in stored]
        every += latencies
        print(
            f"  {channel:8} {percentile(latencies, 50):7.3f} {percentile(latencies, 95):7.3f} "
            f"{max(latencies):7.3f}"
        )
    p95 = percentile(every, 95)
    span = max(f for _, first in arrived.values() for f in first.values()) - min(stored.values())
    print(
        f"  {'both':8} {percentile(every, 50):7.3f} {p95:7.3f} {max(every):7.3f}   "
        f"(goal p95 < {LATENCY_GOAL:g} s: {'met' if p95 < LATENCY_GOAL else 'MISSED'})"
    )
    rate = f"= {len(every) / span:.0f} deliveries/s" if polls == 1 else "(paced by the polls)"
    print(
        f"  {len(every)} deliveries from {polls} poll(s); first hit stored to last arrival "
        f"{span:.1f} s {rate}; wall {wall:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog="See the module docstring (or bench/deliver.py) for what is measured and how.",
    )
    parser.add_argument(
        "--hits", type=int, default=1000, help="stories in the feed, each one hit (default 1000)"
    )
    parser.add_argument(
        "--kills", type=int, default=25, help="SIGKILLs of the daemon in the crash run (default 25)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments (default 1)")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="latency run: new items per poll (default 0: every hit in the first poll)",
    )
    parser.add_argument("--skip-crash", action="store_true", help="only the latency run")
    parser.add_argument("--skip-latency", action="store_true", help="only the crash run")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up waiting on the daemon after this many s (600)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (databases, logs)")
    args = parser.parse_args(argv)
    if args.hits < 1 or args.kills < 0 or args.batch < 0:
        parser.error("--hits must be positive, --kills and --batch not negative")

    print(
        f"watchdesk delivery bench: {args.hits} hits x 2 channels (email to aiosmtpd, Slack to a "
        f"local receiver), `watchdesk run` as a subprocess, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    root = Path(tempfile.mkdtemp(prefix="watchdesk-bench-deliver-"))
    try:
        if not args.skip_crash:
            (root / "crash").mkdir()
            crash_run(args, root / "crash")
        if not args.skip_latency:
            (root / "latency").mkdir()
            latency_run(args, root / "latency")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
