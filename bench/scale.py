"""Scale (issue #15): the daemon at steady state with many feeds, a watchlist reload, and
watchdesk's polls/s against bare httpx.

Feeds are served by one server process on 127.0.0.1 (--ports origins, 20 by default, feed
i at /feed/i on port i mod ports; its CPU is not counted). Every feed has an ETag that
depends on its version; a request whose If-None-Match matches is answered 304, except
for a share (--changed) that gets the next version: a new 20-item RSS body, parsed and
stored. A black-hole port accepts connections and never answers.

  steady   --feeds N (300,000) at a 15-minute interval. The database is brought to steady
           state directly in SQLite (validators the server answers 304 to, next_check_at
           spread uniformly over the next interval), then the real daemon loop
           (watchdesk.daemon.Daemon.run) runs in-process for --minutes M (3). Runtime.poll_one
           is wrapped to record each poll's due time, start and end. Prints polls due /
           started / done per minute, lag (start - due) p50/p95/max (goal p95 <= 10 s), CPU
           ms per poll of this process and of its worker processes, peak RSS (goal <= 400
           MB), new TCP connections per poll, start-up (load_config, Runtime(), to the first
           poll), and the longest stall of an event-loop probe (a task sleeping 10 ms). With
           --steady-touch (default) a watchlist file is touched mid-run and the stall around
           the reload is printed as well.
  reload   --reload-feeds (100,000) feeds, the daemon for --reload-seconds (40); a watchlist
           file is touched --reload-touches times (3); the daemon looks every 2 s and
           reloads the watchlists in a thread. Prints the longest probe stall around each
           reload (goal <= 50 ms) and outside them.
  compare  --compare-feeds (20,000) conditional requests answered 304, --compare-concurrency
           (200) in flight over the --ports origins: Runtime.poll_feeds (the whole pipeline:
           fetch, state saved) against bare httpx with the same client layout (one
           AsyncClient per origin, the same httpx.Limits, a global semaphore of 200). Prints
           both rates and the ratio (goal >= 0.9x); then the same with --blackholed (50)
           feeds on the black-hole port among them: the time for the others, and its ratio
           to the clean run (goal <= 1.5x).

    python bench/scale.py                                   # everything, full size
    python bench/scale.py --feeds 20000 --minutes 1 --reload-feeds 20000 --compare-feeds 5000
    python bench/scale.py --parts compare --compare-rounds 1
    python bench/scale.py --help

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import random
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import poll as bench_poll  # noqa: E402  (bench/poll.py: FeedSite, CPU and RSS readings)

import watchdesk  # noqa: E402
from watchdesk.config import load_config  # noqa: E402
from watchdesk.daemon import WATCH_EVERY, Daemon  # noqa: E402
from watchdesk.ingest import net  # noqa: E402
from watchdesk.runtime import Runtime  # noqa: E402
from watchdesk.store.feeds import FeedRow  # noqa: E402

PARTS = ("steady", "reload", "compare", "cluster")  # cluster: bench/cluster.py
INTERVAL = 900.0  # [polling] interval = "15m"
GOAL_LAG_P95 = 10.0  # s
GOAL_RSS_MB = 400.0
GOAL_STALL_MS = 50.0
GOAL_RATIO = 0.9  # watchdesk polls/s over bare httpx
GOAL_BLACKHOLE = 1.5  # time for the others with black-holed feeds among them, over clean
# feed index ranges of the parts, so that no part meets a feed another part has changed
RELOAD_FIRST = 10_000_000
COMPARE_FIRST = 20_000_000
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"

WATCHLISTS = {
    "opioids.toml": """\
description = "Fentanyl and opioid trafficking"
match = ['fentanyl', 'carfentanil OR "nitazene*"', '"dark web" NEAR/15 (opioid* OR fentanyl)']
exclude = ['"fentanyl patch" recall']
notify = ["console"]
""",
    "darknet.toml": """\
description = "Darknet markets"
match = ['JCODE', 'J-CODE', 'darknet', '"darknet market"', '"Operation SpecTor"']
notify = ["console"]
""",
    "overdose.toml": """\
description = "Overdose clusters"
match = ['overdose* NEAR/10 cluster', 'naloxone OR narcan', 'xylazine']
notify = ["console"]
""",
    "pills.toml": """\
description = "Counterfeit pills"
match = ['"counterfeit pills"', 'M30 NEAR/5 (blue OR pressed)', 'pill press*']
notify = ["console"]
""",
}


def etag_of(feed: int, version: int) -> str:
    return f'"w-{feed}-{version}"'


# ---- the server (its own process) ---------------------------------------------------------


class _Stats:
    """Shared with the parent: connections and requests, by kind, and the changed share."""

    def __init__(self, ctx: Any, changed: float):
        self.changed = ctx.RawValue("d", changed)
        self.connections = ctx.RawValue("q", 0)
        self.requests = ctx.RawValue("q", 0)
        self.not_modified = ctx.RawValue("q", 0)
        self.bodies = ctx.RawValue("q", 0)
        self.blackholed = ctx.RawValue("q", 0)  # connections accepted by the black hole


class _Answers:
    def __init__(self, site: bench_poll.FeedSite, stats: _Stats):
        self.site = site
        self.stats = stats
        self.versions: dict[int, int] = {}
        self.rng = random.Random(15)
        self._date = b""
        self._date_at = 0.0

    def answer(self, head: bytes) -> bytes:
        stats = self.stats
        stats.requests.value += 1
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = bench_poll.email.utils.formatdate(now, usegmt=True).encode()
        line_end = head.find(b"\r\n")
        parts = head[: line_end if line_end >= 0 else len(head)].split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        common = b"HTTP/1.1 %s\r\nDate: " + self._date + b"\r\nServer: bench-scale\r\n"
        pieces = path.split(b"/")
        if not (len(pieces) == 3 and pieces[1] == b"feed" and pieces[2].isdigit()):
            return (common % b"404 Not Found") + b"Content-Length: 9\r\n\r\nnot found"
        feed = int(pieces[2])
        version = self.versions.get(feed, 0)
        etag = etag_of(feed, version).encode()
        inm = bench_poll._header(head, b"\r\nif-none-match:")
        if inm == etag:
            share = stats.changed.value
            if not (share > 0 and self.rng.random() < share):
                stats.not_modified.value += 1
                return (common % b"304 Not Modified") + b"ETag: " + etag + b"\r\n\r\n"
            version += 1
            self.versions[feed] = version
            etag = etag_of(feed, version).encode()
        stats.bodies.value += 1
        body = self.site.document(feed, version)  # not cached: 300,000 feeds
        return (
            (common % b"200 OK")
            + b"Content-Type: application/rss+xml; charset=UTF-8\r\nETag: "
            + etag
            + b"\r\nLast-Modified: "
            + LAST_MODIFIED.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )


class _BlackHole(asyncio.Protocol):
    """Accepts, reads and never answers."""

    def __init__(self, stats: _Stats):
        self.stats = stats

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stats.blackholed.value += 1

    def data_received(self, data: bytes) -> None:
        pass


def _serve(
    sockets: list[socket.socket], hole: socket.socket, site: bench_poll.FeedSite, stats: _Stats, ready: Any
) -> None:
    async def main() -> None:
        answers = _Answers(site, stats)
        loop = asyncio.get_running_loop()
        connection = bench_poll._Connection  # its server: anything with .stats and .answer(head)
        for sock in sockets:
            await loop.create_server(lambda: connection(answers), sock=sock, backlog=4096)  # type: ignore[arg-type]
        await loop.create_server(lambda: _BlackHole(stats), sock=hole, backlog=4096)
        ready.set()
        await asyncio.Event().wait()

    gc.freeze()
    asyncio.run(main())


class ScaleServer:
    """--ports feed origins and one black-hole origin on 127.0.0.1, in their own process."""

    def __init__(self, ports: int, changed: float):
        ctx = multiprocessing.get_context("fork")
        socks = []
        for _ in range(ports + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(4096)
            socks.append(sock)
        *feed_socks, hole = socks
        self.base_urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in feed_socks]
        self.hole_url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        # hit_rate 0: no entry matches a watchlist, so no alert is printed
        self.site = bench_poll.FeedSite(self.base_urls, hit_rate=0.0)
        self.stats = _Stats(ctx, changed)
        ready = ctx.Event()
        self.process = ctx.Process(
            target=_serve, args=(feed_socks, hole, self.site, self.stats, ready), name="bench-scale-server"
        )
        self.process.daemon = True
        self.process.start()
        for sock in socks:
            sock.close()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("the feed server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid or -1

    def url(self, feed: int) -> str:
        return f"{self.base_urls[feed % len(self.base_urls)]}/feed/{feed}"

    def hole(self, feed: int) -> str:
        return f"{self.hole_url}/feed/{feed}"

    def counters(self) -> dict[str, int]:
        s = self.stats
        return {
            "connections": s.connections.value,
            "requests": s.requests.value,
            "not_modified": s.not_modified.value,
            "bodies": s.bodies.value,
            "blackholed": s.blackholed.value,
        }

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# ---- config and steady state ----------------------------------------------------------------


def write_config(
    folder: Path, urls: Sequence[str], *, concurrency: int, per_host: int, timeout: float | None = None
) -> Path:
    watch = folder / "watchlists"
    watch.mkdir(parents=True, exist_ok=True)
    for name, text in WATCHLISTS.items():
        (watch / name).write_text(text)
    lines = [
        "[watchdesk]",
        'database = "watchdesk.db"',
        'watchlists = "watchlists/"',
        "",
        "[polling]",
        'interval = "15m"',
        'fetch_article = "never"',
        "",
        "[network]",
        'allow = ["127.0.0.1/32"]',
        "robots = false",
        f"concurrency = {concurrency}",
        f"per_host = {per_host}",
    ]
    if timeout is not None:
        lines.append(f'timeout = "{timeout:g}s"')
    lines.append("")
    width = len(str(len(urls)))
    path = folder / "watchdesk.toml"
    with path.open("w") as f:  # a line at a time: the bench's own peak RSS stays small
        f.write("\n".join(lines) + "\n")
        for i, url in enumerate(urls):
            f.write(f'[[feed]]\nurl = "{url}"\nname = "bench-{i:0{width}d}"\n\n')
    return path


@dataclass
class Built:
    rt: Runtime
    config: Path
    load_s: float
    runtime_s: float
    started: float  # time.time() before load_config
    peak_rss: float | None = None  # MB, VmHWM over load_config and Runtime()


def reset_peak_rss() -> bool:
    """Linux: reset this process's peak RSS (VmHWM), so that the peak read later is the
    daemon's, not the bench's set-up; False when /proc/self/clear_refs refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm_mb() -> float | None:
    """Peak RSS since the last reset_peak_rss (VmHWM of /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def build(config: Path) -> Built:
    gc.collect()
    reset_peak_rss()
    started = time.time()
    t0 = time.perf_counter()
    cfg = load_config(config)
    t1 = time.perf_counter()
    rt = Runtime(cfg)
    t2 = time.perf_counter()
    return Built(rt, config, t1 - t0, t2 - t1, started, vm_hwm_mb())


def _feed_index(url: str) -> int:
    return int(url.rsplit("/", 1)[1])


def give_validators(rt: Runtime) -> int:
    """Every feed: the ETag of version 0 (the server answers 304 to it), state ok."""
    rows = rt.db.execute("SELECT id, config_url FROM feeds").fetchall()
    with rt.db.conn:
        rt.db.conn.executemany(
            "UPDATE feeds SET status = 'ok', etag = ?, last_modified = ?, last_http_status = 304, "
            "body_hash = ? WHERE id = ?",
            [(etag_of(_feed_index(u), 0), LAST_MODIFIED, f"{_feed_index(u):064x}", i) for i, u in rows],
        )
    return len(rows)


def spread(rt: Runtime, seed: int) -> tuple[float, list[float]]:
    """next_check_at uniform over the next interval from now (plus a margin for this update);
    last polled one interval before. Returns (base, sorted due times)."""
    rng = random.Random(seed)
    ids = [i for (i,) in rt.db.execute("SELECT id FROM feeds").fetchall()]
    offsets = [rng.random() * INTERVAL for _ in ids]
    base = time.time() + 1.0 + 4e-6 * len(ids)  # the update below takes about that
    with rt.db.conn:
        rt.db.conn.executemany(
            "UPDATE feeds SET next_check_at = ?, last_polled_at = ?, last_success_at = ? WHERE id = ?",
            [
                (base + o, base + o - INTERVAL, base + o - INTERVAL, i)
                for i, o in zip(ids, offsets, strict=True)
            ],
        )
    return base, sorted(base + o for o in offsets)


# ---- the daemon run ------------------------------------------------------------------------


@dataclass
class DaemonRun:
    polls: list[tuple[float, float, float]]  # (due, start, end), time.time()
    probe: list[tuple[float, float]]  # (start, overshoot s)
    reloads: list[tuple[float, float]]  # (start, end) of reload_watchlists calls that reloaded
    touches: list[float]
    t0: float  # daemon.run() called
    t1: float  # daemon.stop() called
    t_end: float  # run() returned
    cpu: float  # this process over [t0, t1]
    workers: float | None
    server: dict[str, int]
    server_cpu: float | None
    peak_rss: float | None  # MB, VmHWM over the run (reset at its start)
    summary_failed: int = 0
    statuses: dict[int | None, int] = field(default_factory=dict)
    stacks: list[tuple[float, str]] = field(default_factory=list)


class StallTracer:
    """A thread that, when the probe has not come back for `threshold` seconds, records the
    event-loop thread's stack (where the loop is stuck), once per stall."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.beat = time.perf_counter()
        self.loop_thread = threading.get_ident()
        self.stacks: list[tuple[float, str]] = []  # (time.time(), stack)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-tracer", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        seen = 0.0
        while not self._stop.wait(0.005):
            beat = self.beat
            if beat != seen and time.perf_counter() - beat > self.threshold:
                seen = beat
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame, limit=60))
                    self.stacks.append((time.time(), stack))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def _probe(samples: list[tuple[float, float]], stop: asyncio.Event, tracer: StallTracer | None) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        if tracer is not None:
            tracer.beat = t
        wall = time.time()
        await asyncio.sleep(0.010)
        samples.append((wall, time.perf_counter() - t - 0.010))


async def run_daemon(
    rt: Runtime,
    server: ScaleServer,
    seconds: float,
    touch_at: Sequence[float],
    watchlist: Path,
    trace_ms: float = 0.0,
) -> DaemonRun:
    polls: list[tuple[float, float, float]] = []
    reloads: list[tuple[float, float]] = []
    touches: list[float] = []
    failed = 0
    statuses: dict[int | None, int] = {}
    poll_one, reload_watchlists = rt.poll_one, rt.reload_watchlists

    async def recorded_poll(row: FeedRow) -> Any:
        nonlocal failed
        start = time.time()
        try:
            summary = await poll_one(row)
            failed += summary.failed
            return summary
        finally:
            polls.append((row.next_check_at or 0.0, start, time.time()))

    def recorded_reload(*, force: bool = False) -> bool:
        start = time.time()
        done = reload_watchlists(force=force)
        if done:
            reloads.append((start, time.time()))
        return done

    rt.poll_one = recorded_poll
    rt.reload_watchlists = recorded_reload
    samples: list[tuple[float, float]] = []
    stop_probe = asyncio.Event()
    daemon = Daemon(rt)
    tracer = StallTracer(trace_ms / 1000) if trace_ms else None
    probe = asyncio.create_task(_probe(samples, stop_probe, tracer))
    gc.collect()
    reset_peak_rss()
    c0 = server.counters()
    w0 = bench_poll.descendants_cpu(server.pid)
    s0 = bench_poll.process_cpu(server.pid)
    cpu0 = time.process_time()
    t0 = time.time()
    task = asyncio.create_task(daemon.run())
    try:
        for at in touch_at:
            await asyncio.sleep(max(0.0, t0 + at - time.time()))
            with watchlist.open("a") as f:  # size and mtime change: the folder signature does
                f.write(f"# touched at {time.time():.3f}\n")
            touches.append(time.time())
        await asyncio.sleep(max(0.0, t0 + seconds - time.time()))
    finally:
        cpu1 = time.process_time()
        w1 = bench_poll.descendants_cpu(server.pid)
        c1 = server.counters()
        server_cpu = _since(server, s0)
        peak_rss = vm_hwm_mb()
        t1 = time.time()
        daemon.stop("bench")
        await task
        t_end = time.time()
        stop_probe.set()
        await probe
        if tracer is not None:
            tracer.stop()
        rt.poll_one, rt.reload_watchlists = poll_one, reload_watchlists
    for (code,) in rt.db.execute("SELECT last_http_status FROM feeds").fetchall():
        statuses[code] = statuses.get(code, 0) + 1
    return DaemonRun(
        polls=polls,
        probe=samples,
        reloads=reloads,
        touches=touches,
        t0=t0,
        t1=t1,
        t_end=t_end,
        cpu=cpu1 - cpu0,
        workers=None if w0 is None or w1 is None else w1 - w0,
        server={k: c1[k] - c0[k] for k in c1},
        server_cpu=server_cpu,
        peak_rss=peak_rss,
        summary_failed=failed,
        statuses=statuses,
        stacks=tracer.stacks if tracer is not None else [],
    )


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def stalls_around_reloads(run: DaemonRun) -> tuple[list[tuple[float, float, float]], float]:
    """Per reload: (duration s, longest overshoot within it +- 0.2 s, touch-to-reload s);
    and the longest overshoot outside every such window."""
    windows = [(a - 0.2, b + 0.2) for a, b in run.reloads]
    out = []
    for (a, b), (lo, hi) in zip(run.reloads, windows, strict=True):
        inside = [o for t, o in run.probe if t + o + 0.01 >= lo and t <= hi]
        touched = max((t for t in run.touches if t <= a), default=a)
        out.append((b - a, max(inside, default=0.0), a - touched))
    outside = [
        o for t, o in run.probe if run.t0 <= t <= run.t1 and not any(lo <= t <= hi for lo, hi in windows)
    ]
    return out, max(outside, default=0.0)


def print_stacks(run: DaemonRun, label: str) -> None:
    if not run.stacks:
        return
    print(f"{label}: {len(run.stacks)} event-loop stall(s) caught by the tracer; where the loop was:")
    for at, stack in run.stacks[:6]:
        frames = [ln.strip() for ln in stack.splitlines() if ln.strip().startswith("File")]
        ours = [f for f in frames if "/watchdesk/" in f][-4:]  # where watchdesk was, then the innermost
        shown = ours + [f for f in frames[-2:] if f not in ours]
        print(f"  at {at - run.t0:.2f} s into the run:")
        for ln in shown:
            print("    " + ln.replace(str(Path(watchdesk.__file__).parent.parent) + "/", ""))
    if len(run.stacks) > 6:
        print(f"  ... and {len(run.stacks) - 6} more")


def print_reloads(run: DaemonRun, label: str) -> bool:
    per, outside = stalls_around_reloads(run)
    if not run.touches:
        return True
    print(
        f"{label}: {len(run.touches)} watchlist touch(es), {len(run.reloads)} reload(s) seen "
        f"(the daemon looks every {WATCH_EVERY:g} s)"
    )
    for n, (dur, stall, delay) in enumerate(per, 1):
        print(
            f"  reload {n}: {delay:.2f} s after the touch, took {dur * 1000:.0f} ms in its thread; longest "
            f"loop stall around it {stall * 1000:.1f} ms"
        )
    worst = max((s for _d, s, _t in per), default=float("nan"))
    print(f"  longest loop stall outside the reloads: {outside * 1000:.1f} ms")
    ok = bool(per) and worst * 1000 <= GOAL_STALL_MS
    print(
        f"goal, reload stall: {worst * 1000:.1f} ms, budget {GOAL_STALL_MS:g} ms: {verdict(ok)}"
        + ("" if len(per) == len(run.touches) else " (a touch was not followed by a reload)")
    )
    return ok


def report_steady(
    args: argparse.Namespace, built: Built, prep: float, dues: list[float], run: DaemonRun
) -> None:
    t0, t1 = run.t0, run.t1
    done = [p for p in run.polls if p[2] <= t1]
    started = [p for p in run.polls if p[1] <= t1]
    lags = [s - d for d, s, _e in started]
    minutes = max(1, round((t1 - t0) / 60))
    print(
        f"\nsteady state: {args.feeds} feeds every 15 min on {args.ports} origins, concurrency "
        f"{args.concurrency}, per_host {args.per_host}, changed share {args.changed:g}; daemon ran "
        f"{t1 - t0:.0f} s (+{run.t_end - t1:.1f} s to stop)"
    )
    print(
        f"{'minute':>6} {'due':>7} {'started':>8} {'done':>7} {'lag p50 s':>9} {'lag p95 s':>9} {'lag max s':>9}"
    )
    for m in range(minutes):
        lo, hi = t0 + 60 * m, min(t1, t0 + 60 * (m + 1))
        due = sum(1 for d in dues if lo <= d < hi)
        st = [s - d for d, s, _e in run.polls if lo <= s < hi]
        dn = sum(1 for _d, _s, e in run.polls if lo <= e < hi)
        print(
            f"{m + 1:>6} {due:>7} {len(st):>8} {dn:>7} {pct(st, 50):9.2f} {pct(st, 95):9.2f} {max(st, default=0):9.2f}"
        )
    due_total = sum(1 for d in dues if t0 <= d < t1)
    print(
        f"total: {due_total} due, {len(started)} started, {len(done)} done "
        f"({len(done) / (t1 - t0):.1f} polls/s; {args.feeds / INTERVAL:.1f}/s needed), {run.summary_failed} failed"
    )
    p95 = pct(lags, 95)
    print(f"lag (start - due): p50 {pct(lags, 50):.2f} s, p95 {p95:.2f} s, max {max(lags, default=0):.2f} s")
    n = max(1, len(done))
    workers = "n/a" if run.workers is None else f"{1000 * run.workers / n:.3f}"
    total = run.cpu + (run.workers or 0.0)
    print(
        f"CPU per poll: this process {1000 * run.cpu / n:.3f} ms, workers {workers} ms, total "
        f"{1000 * total / n:.3f} ms ({100 * total / (t1 - t0):.0f}% of one core)"
    )
    srv = run.server
    print(
        f"server: {srv['requests']} requests ({srv['not_modified']} answered 304, {srv['bodies']} bodies), "
        f"{srv['connections']} new TCP connections = {srv['connections'] / n:.4f} per poll; server CPU "
        f"{1000 * (run.server_cpu or 0.0) / max(1, srv['requests']):.3f} ms/request"
    )
    hwm = max(run.peak_rss or 0.0, built.peak_rss or 0.0) or None
    print(
        f"RSS: peak {_mb(run.peak_rss)} MB during the daemon run, {_mb(built.peak_rss)} MB during load_config and "
        f"Runtime() (VmHWM, reset before each); {bench_poll.peak_rss_mb():.0f} MB for the whole process "
        f"(ru_maxrss, the bench's set-up included); now {_mb(bench_poll.rss_now_mb())} MB"
    )
    first = min((s for _d, s, _e in run.polls), default=float("nan"))
    print(
        f"start-up: load_config {built.load_s:.2f} s, Runtime() {built.runtime_s:.2f} s; daemon.run() to the "
        f"first poll start {first - t0:.2f} s (first feed due {dues[0] - t0:+.2f} s after run()); load_config "
        f"start to first poll {first - built.started - prep:.2f} s, not counting the bench's own SQLite "
        f"set-up ({prep:.2f} s)"
    )
    probe = [(o, t) for t, o in run.probe if t0 <= t <= t1]
    worst, worst_at = max(probe, default=(0.0, t0))
    over = [o for o, _t in probe]
    print(
        f"event-loop probe (10 ms sleeps): {len(over)} samples, overshoot p50 {1000 * pct(over, 50):.1f} ms, "
        f"p99 {1000 * pct(over, 99):.1f} ms, max {1000 * worst:.1f} ms (at {worst_at - t0:.1f} s into the run; "
        f"{sum(o > 0.05 for o in over)} over 50 ms)"
    )
    print(f"last_http_status of the feeds after the run: {dict(sorted(run.statuses.items(), key=str))}")
    print(f"goal, lag p95: {p95:.2f} s, budget {GOAL_LAG_P95:g} s: {verdict(p95 <= GOAL_LAG_P95)}")
    peak = hwm if hwm is not None else bench_poll.peak_rss_mb()
    print(
        f"goal, RSS: peak {peak:.0f} MB (start-up included), budget {GOAL_RSS_MB:g} MB: {verdict(peak <= GOAL_RSS_MB)}"
        + (f"; during the run alone {run.peak_rss:.0f} MB" if run.peak_rss is not None else "")
    )
    print_reloads(run, "reload during the steady run")
    print_stacks(run, "steady")


def daemon_part(
    args: argparse.Namespace,
    server: ScaleServer,
    first: int,
    feeds: int,
    seconds: float,
    touches: Sequence[float],
    folder: Path,
) -> tuple[Built, float, list[float], DaemonRun]:
    server.stats.changed.value = args.changed
    config = write_config(
        folder,
        [server.url(i) for i in range(first, first + feeds)],
        concurrency=args.concurrency,
        per_host=args.per_host,
    )
    built = build(config)
    print(
        f"  {feeds} feeds: config written ({config.stat().st_size / 2**20:.1f} MB), load_config {built.load_s:.2f} s, "
        f"Runtime() {built.runtime_s:.2f} s, peak RSS over them {_mb(built.peak_rss)} MB, now "
        f"{_mb(bench_poll.rss_now_mb())} MB",
        flush=True,
    )
    rt = built.rt
    try:
        t = time.perf_counter()
        give_validators(rt)
        base, dues = spread(rt, args.seed)
        prep = time.perf_counter() - t
        print(f"  steady state set in SQLite in {prep:.2f} s; running the daemon {seconds:.0f} s", flush=True)

        async def go() -> DaemonRun:
            try:
                return await run_daemon(
                    rt, server, seconds, touches, folder / "watchlists" / "darknet.toml", args.trace_stalls
                )
            finally:
                await rt.aclose()

        run = asyncio.run(go())
    except BaseException:
        rt.cpu.close()
        raise
    return built, prep, dues, run


def part_steady(args: argparse.Namespace, server: ScaleServer) -> None:
    print(f"\n== steady: {args.feeds} feeds, {args.minutes:g} min", flush=True)
    seconds = 60 * args.minutes
    touches = [seconds / 2] if args.steady_touch else []
    with tempfile.TemporaryDirectory(prefix="watchdesk-scale-") as tmp:
        built, prep, dues, run = daemon_part(args, server, 0, args.feeds, seconds, touches, Path(tmp))
    report_steady(args, built, prep, dues, run)


def part_reload(args: argparse.Namespace, server: ScaleServer) -> None:
    print(f"\n== reload: {args.reload_feeds} feeds, daemon for {args.reload_seconds:g} s", flush=True)
    n = args.reload_touches
    touches = [args.reload_seconds * (k + 1) / (n + 1) for k in range(n)]
    with tempfile.TemporaryDirectory(prefix="watchdesk-scale-") as tmp:
        _built, _prep, _dues, run = daemon_part(
            args, server, RELOAD_FIRST, args.reload_feeds, args.reload_seconds, touches, Path(tmp)
        )
    done = sum(1 for p in run.polls if p[2] <= run.t1)
    lags = [s - d for d, s, _e in run.polls]
    print(
        f"\nreload: {args.reload_feeds} feeds, {done} polls done in {run.t1 - run.t0:.0f} s, lag p95 "
        f"{pct(lags, 95):.2f} s"
    )
    print_reloads(run, "reload")
    print_stacks(run, "reload")


# ---- polls/s: watchdesk against bare httpx ---------------------------------------------------


@dataclass
class Rate:
    requests: int
    wall: float  # until the last clean request ended
    cpu: float
    conns: int
    server_cpu: float | None = None  # the server process, seconds

    @property
    def per_s(self) -> float:
        return self.requests / self.wall


async def watchdesk_round(
    rt: Runtime, server: ScaleServer, clean: list[FeedRow], holes: list[FeedRow]
) -> Rate:
    """Runtime.poll_feeds over the rows; the time is until the last clean poll ended."""
    clean_ids = {r.id for r in clean}
    ends: list[float] = []
    poll_one = rt.poll_one

    async def timed(row: FeedRow) -> Any:
        try:
            return await poll_one(row)
        finally:
            if row.id in clean_ids:
                ends.append(time.perf_counter())

    rt.poll_one = timed
    c0 = server.counters()["connections"]
    s0 = bench_poll.process_cpu(server.pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        summary = await rt.poll_feeds([*clean, *holes])
    finally:
        rt.poll_one = poll_one
    cpu = time.process_time() - cpu0
    if summary.not_modified != len(clean):
        print(
            f"WARNING: watchdesk round: {summary.not_modified} of {len(clean)} answered 304, "
            f"{summary.failed} failed {summary.errors[:2]}",
            file=sys.stderr,
        )
    return Rate(len(clean), max(ends) - t0, cpu, server.counters()["connections"] - c0, _since(server, s0))


def _since(server: ScaleServer, s0: float | None) -> float | None:
    s1 = bench_poll.process_cpu(server.pid)
    return None if s0 is None or s1 is None else s1 - s0


class BareHttpx:
    """The same layout as watchdesk's HttpPool for these origins: one AsyncClient per origin
    (HttpPool gives each origin its own client when per_host fills one), max(5, per_host)
    connections each, the same headers; a global semaphore of `concurrency`."""

    def __init__(self, concurrency: int, per_host: int):
        self.connections = max(net.CONNECTIONS_PER_CLIENT, per_host)
        self.concurrency = concurrency
        self.clients: dict[str, httpx.AsyncClient] = {}

    def client(self, origin: str) -> httpx.AsyncClient:
        c = self.clients.get(origin)
        if c is None:
            c = self.clients[origin] = httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(30.0, connect=10.0),
                limits=httpx.Limits(
                    max_connections=self.connections, max_keepalive_connections=self.connections
                ),
                headers={"User-Agent": net.DEFAULT_USER_AGENT, "Accept-Encoding": "gzip"},
            )
        return c

    async def round(self, server: ScaleServer, clean: list[int], holes: list[int]) -> Rate:
        gate = asyncio.Semaphore(self.concurrency)
        ends: list[float] = []
        bad = 0

        async def one(url: str, etag: str, is_clean: bool) -> None:
            nonlocal bad
            async with gate:
                try:
                    origin = url.rsplit("/feed/", 1)[0]
                    resp = await self.client(origin).get(
                        url,
                        headers={
                            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.8",
                            "If-None-Match": etag,
                            "If-Modified-Since": LAST_MODIFIED,
                        },
                    )
                    bad += resp.status_code != 304
                except httpx.HTTPError:
                    bad += is_clean
            if is_clean:
                ends.append(time.perf_counter())

        jobs = [(server.url(i), etag_of(i, 0), True) for i in clean]
        jobs += [(server.hole(i), etag_of(i, 0), False) for i in holes]
        c0 = server.counters()["connections"]
        s0 = bench_poll.process_cpu(server.pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(*j) for j in jobs))
        cpu = time.process_time() - cpu0
        if bad:
            print(f"WARNING: bare httpx round: {bad} clean requests not answered 304", file=sys.stderr)
        return Rate(
            len(clean), max(ends) - t0, cpu, server.counters()["connections"] - c0, _since(server, s0)
        )

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()


def part_compare(args: argparse.Namespace, server: ScaleServer) -> None:
    n, holes_n, conc = args.compare_feeds, args.blackholed, args.compare_concurrency
    print(
        f"\n== compare: {n} conditional requests (304), {conc} in flight over {args.ports} origins; then "
        f"with {holes_n} black-holed feeds among them",
        flush=True,
    )
    server.stats.changed.value = 0.0
    ids = list(range(COMPARE_FIRST, COMPARE_FIRST + n))  # feeds no other part has changed
    hole_ids = list(range(COMPARE_FIRST + n, COMPARE_FIRST + n + holes_n))
    urls = [server.url(i) for i in ids] + [server.hole(i) for i in hole_ids]
    with tempfile.TemporaryDirectory(prefix="watchdesk-scale-") as tmp:
        config = write_config(Path(tmp), urls, concurrency=conc, per_host=conc)
        built = build(config)
        rt = built.rt
        give_validators(rt)
        rows = rt.all_feeds()
        clean = [r for r in rows if not r.config_url.startswith(server.hole_url)]
        holes = [r for r in rows if r.config_url.startswith(server.hole_url)]
        bare = BareHttpx(conc, conc)

        async def go() -> tuple[list[Rate], list[Rate], Rate, Rate]:
            try:
                # warm-up: connections opened, imports and caches paid, by both
                await watchdesk_round(rt, server, clean[: min(len(clean), 2000)], [])
                await bare.round(server, ids[:2000], [])
                wd, bx = [], []
                for k in range(args.compare_rounds):
                    wd.append(await watchdesk_round(rt, server, clean, []))
                    bx.append(await bare.round(server, ids, []))
                    print(
                        f"  round {k + 1}: watchdesk {wd[-1].per_s:.0f} polls/s ({wd[-1].wall:.1f} s), bare httpx "
                        f"{bx[-1].per_s:.0f} requests/s ({bx[-1].wall:.1f} s)",
                        flush=True,
                    )
                t = time.perf_counter()
                wd_h = await watchdesk_round(rt, server, clean, holes)
                print(
                    f"  watchdesk with black holes: others done {wd_h.wall:.1f} s, all {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
                t = time.perf_counter()
                bx_h = await bare.round(server, ids, hole_ids)
                print(
                    f"  bare httpx with black holes: others done {bx_h.wall:.1f} s, all {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
                return wd, bx, wd_h, bx_h
            finally:
                await bare.aclose()
                await rt.aclose()

        wd, bx, wd_h, bx_h = asyncio.run(go())
    med = statistics.median
    wd_rate, bx_rate = med(r.per_s for r in wd), med(r.per_s for r in bx)
    wd_wall, bx_wall = med(r.wall for r in wd), med(r.wall for r in bx)
    print(
        f"\ncompare: {n} requests answered 304, {conc} in flight, {args.ports} origins on 127.0.0.1 (one host: "
        f"per_host = concurrency = {conc}), median of {args.compare_rounds} round(s)"
    )
    print(f"{'':<24} {'polls/s':>8} {'wall s':>7} {'CPU ms/req':>10} {'conns/req':>9} {'server ms/req':>13}")
    for label, rs in (("watchdesk poll_feeds", wd), ("bare httpx", bx)):
        print(
            f"{label:<24} {med(r.per_s for r in rs):8.0f} {med(r.wall for r in rs):7.2f} "
            f"{med(1000 * r.cpu / r.requests for r in rs):10.3f} {med(r.conns / r.requests for r in rs):9.4f} "
            f"{med(1000 * (r.server_cpu or 0.0) / r.requests for r in rs):13.3f}"
        )
    ratio = wd_rate / bx_rate
    print(
        f"goal, watchdesk / bare httpx: {ratio:.2f}x, goal >= {GOAL_RATIO:g}x: {verdict(ratio >= GOAL_RATIO)}"
    )
    for label, h, clean_wall in (("watchdesk", wd_h, wd_wall), ("bare httpx", bx_h, bx_wall)):
        r = h.wall / clean_wall
        goal = (
            f", goal <= {GOAL_BLACKHOLE:g}x: {verdict(r <= GOAL_BLACKHOLE)}"
            if label == "watchdesk"
            else " (reference)"
        )
        print(
            f"{'goal, ' if label == 'watchdesk' else ''}{label} with {holes_n} black-holed feeds: the other {n} done in "
            f"{h.wall:.2f} s against {clean_wall:.2f} s clean = {r:.2f}x{goal}"
        )


def part_cluster(args: argparse.Namespace, server: ScaleServer) -> None:
    """bench/cluster.py (its own origins: it counts requests per feed path)."""
    import cluster as bench_cluster

    print(
        f"\n== cluster: {args.cluster_feeds} feeds, SQLite vs PostgreSQL daemons (bench/cluster.py)",
        flush=True,
    )
    argv = ["--feeds", str(args.cluster_feeds), "--rounds", str(args.cluster_rounds)]
    if args.cluster_profile:
        argv.append("--profile")
    status = bench_cluster.main(argv)
    if status:
        print(f"cluster: a goal not met (exit status {status} of bench/cluster.py)")


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/scale.py",
        description="Issue #15: the daemon at steady state with many feeds (lag, CPU, RSS, start-up), the "
        "event-loop stall of a watchlist reload, and watchdesk's polls/s against bare httpx (also with "
        "black-holed feeds). Only 127.0.0.1 is contacted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--parts",
        default="steady,reload,compare",
        help=f"comma-separated, of {', '.join(PARTS)} (cluster: bench/cluster.py, not in the default)",
    )
    p.add_argument("--ports", type=int, default=20, help="feed origins (ports of 127.0.0.1)")
    p.add_argument("--seed", type=int, default=1)
    g = p.add_argument_group("steady")
    g.add_argument("--feeds", type=int, default=300_000)
    g.add_argument("--minutes", type=float, default=3.0, help="how long the daemon runs")
    g.add_argument(
        "--changed", type=float, default=0.05, help="share of conditional requests given a new body"
    )
    g.add_argument("--concurrency", type=int, default=50, help="[network] concurrency (steady and reload)")
    g.add_argument(
        "--per-host",
        type=int,
        default=None,
        help="[network] per_host; None: the concurrency (all origins are 127.0.0.1)",
    )
    g.add_argument(
        "--steady-touch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="touch a watchlist mid-run and print the stall around the reload",
    )
    p.add_argument(
        "--trace-stalls",
        type=float,
        default=100.0,
        metavar="MS",
        help="steady and reload: record the event-loop thread's stack when the probe is late by MS "
        "(0: off) and print the stacks",
    )
    g = p.add_argument_group("reload")
    g.add_argument("--reload-feeds", type=int, default=100_000)
    g.add_argument("--reload-seconds", type=float, default=40.0)
    g.add_argument("--reload-touches", type=int, default=3)
    g = p.add_argument_group("compare")
    g.add_argument("--compare-feeds", type=int, default=20_000, help="conditional requests per round")
    g.add_argument("--compare-concurrency", type=int, default=200)
    g.add_argument("--compare-rounds", type=int, default=3)
    g.add_argument("--blackholed", type=int, default=50)
    g = p.add_argument_group("cluster (bench/cluster.py: SQLite vs PostgreSQL daemons)")
    g.add_argument("--cluster-feeds", type=int, default=10_000)
    g.add_argument("--cluster-rounds", type=int, default=3)
    g.add_argument("--cluster-profile", action="store_true", help="bench/cluster.py --profile")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    for part in args.parts:
        if part not in PARTS:
            p.error(f"--parts: {part!r} is not one of {', '.join(PARTS)}")
    if args.per_host is None:
        args.per_host = args.concurrency
    if min(args.feeds, args.ports, args.reload_feeds, args.compare_feeds, args.compare_rounds) < 1:
        p.error("sizes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("watchdesk").addHandler(bench_poll.LOG_TALLY)
    # enough descriptors for the server's and the clients' connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    server = ScaleServer(args.ports, args.changed)
    try:
        print(
            f"watchdesk {watchdesk.__version__}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
            f"server pid {server.pid}: {args.ports} origins {server.base_urls[0]}..{server.base_urls[-1].rsplit(':', 1)[1]}, "
            f"black hole {server.hole_url}; parts {', '.join(args.parts)}",
            flush=True,
        )
        for part in args.parts:
            {"steady": part_steady, "reload": part_reload, "compare": part_compare, "cluster": part_cluster}[
                part
            ](args, server)
            gc.collect()
    finally:
        server.stop()
    counts = dict(bench_poll.LOG_TALLY.counts)
    if counts:
        print(f"watchdesk warnings and errors logged: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
