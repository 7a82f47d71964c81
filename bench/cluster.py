"""Cluster (shared PostgreSQL store): polls/s and CPU per poll of real `watchdesk run`
daemons dividing --feeds (10,000) feeds by leases, against one daemon on SQLite.

Three scenarios (and a fourth on request), in one run, each on a fresh database and its
own range of feed paths:

  sqlite-1  one daemon, SQLite file                     taskset -c 0
  pg-1      one daemon, PostgreSQL (node "a")           taskset -c 0
  pg-2      two daemons, one PostgreSQL (nodes a, b)    taskset -c 0 and taskset -c 1
  side      sqlite-1 and pg-1 at the same time, each    taskset -c 0 (SQLite, node a) and
            its own --feeds feeds and database          taskset -c 1 (PostgreSQL, node b),
                                                        swapped every other round

While one daemon runs (sqlite-1, pg-1) the origins, PostgreSQL and this script are
confined to the other core (--confine), so the daemon's core is its own; the CPU goal is
judged on the median of each round's PG-1/SQLite-1 ratio (rounds alternate their order).
side is a cross-check only: on 2 cores the two daemons, the origins and PostgreSQL
contend, and its ratios spread wider (0.88 to 1.31 in one run) than the confined runs'.

The feed origins (one server process, --ports ports of 127.0.0.1), PostgreSQL, and this
script are NOT pinned: on a 2-core machine they share the cores with the daemons, and the
machine's load over each window is printed so that this is visible.

Catch-up, saturated: before the daemons start, the database is created and its feeds
given the validators the origins answer 304 to, every feed due now (the origins answer
304 to every poll: the cheapest poll, where the store's own cost shows most). The
interval is 15 minutes, so in the run every feed is due exactly once and the daemons
poll as fast as they can until all are done: the rate is the daemons', not the
schedule's. polls/s and CPU/poll are measured over the window between 10% and 90% of the
feeds polled (start-up and the tail left out), from `watchdesk_polls_total` on each
daemon's /metrics and utime+stime of each daemon and its child processes in /proc.

Lease-claim p95: `watchdesk_feed_claim_seconds` (cumulative buckets, interpolated as
histogram_quantile does) over the same window. Feeds polled twice: the origin server
keeps each feed path's last request time; two requests to one path closer than half the
interval are a double poll (goal 0). Feeds never polled: configured feeds the server
never saw a request for (goal 0).

    python bench/cluster.py                      # 10,000 feeds (about 2-3 min)
    python bench/cluster.py --feeds 2000
    python bench/cluster.py --profile            # also py-spy each daemon
    python bench/scale.py --parts cluster        # the same, from scale.py

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import poll as bench_poll  # noqa: E402  (bench/poll.py: FeedSite, the HTTP connection, /proc)

import watchdesk  # noqa: E402
from watchdesk.store import feeds as feed_store  # noqa: E402
from watchdesk.store.engine import Store  # noqa: E402

INTERVAL = 900.0  # [polling] interval = "15m": every feed due once in the run
LEASE = "1m"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
GOAL_CPU = 1.10  # PG-1 CPU/poll over SQLite-1 CPU/poll, at most
GOAL_SCALE = 1.6  # PG-2 polls/s over PG-1 polls/s, at least
SCENARIOS = ("sqlite-1", "pg-1", "pg-2", "side")
DEFAULT_SCENARIOS = ("sqlite-1", "pg-1", "pg-2")
CLAIM_HIST = "watchdesk_feed_claim_seconds"
_TICK = os.sysconf("SC_CLK_TCK")


def etag_of(feed: int) -> bytes:
    return b'"c-%d"' % feed


# ---- the origins (their own process) ------------------------------------------------------


class _Stats:
    def __init__(self, ctx: Any, half_interval: float):
        self.half = ctx.RawValue("d", half_interval)
        self.connections = ctx.RawValue("q", 0)
        self.requests = ctx.RawValue("q", 0)
        self.not_modified = ctx.RawValue("q", 0)
        self.bodies = ctx.RawValue("q", 0)
        self.distinct = ctx.RawValue("q", 0)  # feed paths requested at least once
        self.doubles = ctx.RawValue("q", 0)  # a request to a path within `half` of the last
        self.repeats = ctx.RawValue("q", 0)  # any second request to a path
        self.min_gap = ctx.RawValue("d", float("inf"))


class _Answers:
    """304 to If-None-Match of the feed's ETag, a 20-item body otherwise; every request's
    path and time noted (the last time per path) to count double polls."""

    def __init__(self, site: bench_poll.FeedSite, stats: _Stats):
        self.site = site
        self.stats = stats
        self.last: dict[int, float] = {}
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
        common = b"HTTP/1.1 %s\r\nDate: " + self._date + b"\r\nServer: bench-cluster\r\n"
        pieces = path.split(b"/")
        if not (len(pieces) == 3 and pieces[1] == b"feed" and pieces[2].isdigit()):
            return (common % b"404 Not Found") + b"Content-Length: 9\r\n\r\nnot found"
        feed = int(pieces[2])
        before = self.last.get(feed)
        if before is None:
            stats.distinct.value += 1
        else:
            gap = now - before
            stats.repeats.value += 1
            if gap < stats.half.value:
                stats.doubles.value += 1
            if gap < stats.min_gap.value:
                stats.min_gap.value = gap
        self.last[feed] = now
        etag = etag_of(feed)
        if bench_poll._header(head, b"\r\nif-none-match:") == etag:
            stats.not_modified.value += 1
            return (common % b"304 Not Modified") + b"ETag: " + etag + b"\r\n\r\n"
        stats.bodies.value += 1
        body = self.site.document(feed, 0)
        return (
            (common % b"200 OK")
            + b"Content-Type: application/rss+xml; charset=UTF-8\r\nETag: "
            + etag
            + b"\r\nLast-Modified: "
            + LAST_MODIFIED.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )


def _serve(sockets: list[socket.socket], site: bench_poll.FeedSite, stats: _Stats, ready: Any) -> None:
    async def main() -> None:
        answers = _Answers(site, stats)
        loop = asyncio.get_running_loop()
        for sock in sockets:
            await loop.create_server(lambda: bench_poll._Connection(answers), sock=sock, backlog=4096)  # type: ignore[arg-type]
        ready.set()
        await asyncio.Event().wait()

    gc.freeze()
    asyncio.run(main())


class Origins:
    def __init__(self, ports: int):
        ctx = multiprocessing.get_context("fork")
        socks = []
        for _ in range(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(4096)
            socks.append(sock)
        self.base_urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in socks]
        self.site = bench_poll.FeedSite(self.base_urls, hit_rate=0.0)
        self.stats = _Stats(ctx, INTERVAL / 2)
        ready = ctx.Event()
        self.process = ctx.Process(
            target=_serve, args=(socks, self.site, self.stats, ready), name="bench-origins"
        )
        self.process.daemon = True
        self.process.start()
        for sock in socks:
            sock.close()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("the origin server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid or -1

    def url(self, feed: int) -> str:
        return f"{self.base_urls[feed % len(self.base_urls)]}/feed/{feed}"

    def counters(self) -> dict[str, float]:
        s = self.stats
        return {
            k: getattr(s, k).value
            for k in (
                "connections",
                "requests",
                "not_modified",
                "bodies",
                "distinct",
                "doubles",
                "repeats",
                "min_gap",
            )
        }

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# ---- /proc ----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, comm, utime+stime+cutime+cstime ticks)"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.find(b"(") + 1 : data.rfind(b")")].decode(errors="replace")
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), comm, sum(int(x) for x in rest[11:15])


def proc_table() -> dict[int, tuple[int, str, int]]:
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s is not None:
                table[int(name)] = s
    return table


def tree_cpu(table: dict[int, tuple[int, str, int]], root: int) -> float:
    """CPU seconds of `root` and its descendants (the parse workers, the forkserver)."""
    total = 0
    for pid, (_ppid, _comm, ticks) in table.items():
        p = pid
        while p in table and p != root and p > 1:
            p = table[p][0]
        if p == root:
            total += ticks
    return total / _TICK


def postgres_cpu(table: dict[int, tuple[int, str, int]]) -> float:
    """Every postgres process (postmaster, backends, its helpers; the CPU of exited backends
    is in the postmaster's cutime)."""
    return sum(t for _pp, comm, t in table.values() if comm.startswith("postgres")) / _TICK


def confine(pids: list[int], cores: set[int]) -> int:
    """Every thread of these processes (and of every postgres process: its postmaster,
    so backends started later too) onto `cores`; how many threads were moved. A single
    daemon's core is then its own (the origins, PostgreSQL and this script on the other),
    and its CPU per poll is not the share a neighbour left it."""
    table = proc_table()
    targets = set(pids) | {pid for pid, (_pp, comm, _t) in table.items() if comm.startswith("postgres")}
    moved = 0
    for pid in targets:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cores)
                moved += 1
    return moved


def machine_cpu() -> dict[str, tuple[int, int]]:
    """cpu line name -> (busy ticks, total ticks), from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *v = line.split()
                nums = [int(x) for x in v[:8]]
                idle = nums[3] + nums[4]
                out[name] = (sum(nums) - idle, sum(nums))
    return out


# ---- /metrics --------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


def scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        with contextlib.suppress(ValueError):
            out[name + (labels or "")] = float(value)
    return out


def polls_of(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k.startswith("watchdesk_polls_total{"))


def buckets_of(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    out = []
    for k, v in m.items():
        if k.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', k)
            if le:
                out.append((float(le.group(1)), v))
    return sorted(out)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile: linear within the bucket the rank falls in; the top finite bound
    when it falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lo_bound
            if count == lo_count:
                return bound
            return lo_bound + (bound - lo_bound) * (rank - lo_count) / (count - lo_count)
        lo_bound, lo_count = bound, count
    return None


def diff_buckets(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    before = dict(a)
    return [(le, c - before.get(le, 0.0)) for le, c in b]


# ---- databases ---------------------------------------------------------------------------------


def pg_url(args: argparse.Namespace) -> str | None:
    if args.database_url:
        return args.database_url
    for var in ("WATCHDESK_BENCH_PG",):
        if os.environ.get(var):
            return os.environ[var]
    path = Path("/tmp/pgdev/url")
    return path.read_text().strip() if path.exists() else None


def with_db(url: str, name: str) -> str:
    base, _, _old = url.rpartition("/")
    return f"{base}/{name}"


def create_database(url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return with_db(url, name)


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(database: Path | str, urls: list[str], names: list[str], first: int) -> None:
    """Create the schema and the feeds, every one with the validators the origins answer 304
    to and due now (a fraction of a second apart, in random order)."""
    store = Store.open(database, node="bench")
    try:
        db = store.db
        now = time.time()
        feed_store.sync_feeds(db, list(zip(urls, names, strict=True)), now)
        rows = db.execute("SELECT id, config_url FROM feeds").fetchall()
        rng = random.Random(first)
        with db.atomic():
            db.conn.executemany(
                "UPDATE feeds SET status = 'ok', etag = ?, last_modified = ?, last_http_status = 304, "
                "body_hash = ?, next_check_at = ?, last_polled_at = ?, last_success_at = ? WHERE id = ?",
                [
                    (
                        etag_of(int(u.rsplit("/", 1)[1])).decode(),
                        LAST_MODIFIED,
                        f"{int(u.rsplit('/', 1)[1]):064x}",
                        now - rng.random(),
                        now - INTERVAL,
                        now - INTERVAL,
                        i,
                    )
                    for i, u in rows
                ],
            )
    finally:
        store.close()


def write_config(
    folder: Path,
    database: Path | str,
    urls: list[str],
    names: list[str],
    *,
    node: str,
    port: int,
    concurrency: int,
) -> Path:
    watch = folder / "watchlists"
    watch.mkdir(parents=True, exist_ok=True)
    (watch / "bench.toml").write_text(
        'description = "nothing matches"\nmatch = [\'"zz-never-zz"\']\nnotify = ["console"]\n'
    )
    db = database if isinstance(database, str) else str(database)
    lines = [
        "[watchdesk]",
        f'database = "{db}"',
        'watchlists = "watchlists/"',
        f'node = "{node}"',
        f'lease = "{LEASE}"',
        "",
        "[polling]",
        f'interval = "{int(INTERVAL)}s"',
        'fetch_article = "never"',
        "",
        "[network]",
        'allow = ["127.0.0.1/32"]',
        "robots = false",
        f"concurrency = {concurrency}",
        f"per_host = {concurrency}",
        "",
        "[metrics]",
        f'listen = "127.0.0.1:{port}"',
        "",
    ]
    path = folder / "watchdesk.toml"
    with path.open("w") as f:
        f.write("\n".join(lines) + "\n")
        for url, name in zip(urls, names, strict=True):
            f.write(f'[[feed]]\nurl = "{url}"\nname = "{name}"\n\n')
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- one scenario ------------------------------------------------------------------------------


@dataclass
class Proc:
    node: str
    core: int
    port: int
    folder: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Sample:
    t: float
    polls: list[float]  # per daemon
    cpu: list[float]  # per daemon, s (with its children)
    origins: float
    postgres: float
    me: float
    machine: dict[str, tuple[int, int]]
    metrics: list[dict[str, float]]


@dataclass
class Result:
    name: str
    daemons: int
    feeds: int
    rate: float = 0.0  # polls/s, all daemons, over the window
    cpu_per_poll: float = 0.0  # ms, all daemons' CPU / all polls over the window
    per_daemon: list[tuple[str, int, float, float, float]] = field(default_factory=list)
    # (node, core, polls/s, CPU ms/poll, CPU share of a core)
    window: tuple[float, float] = (0.0, 0.0)  # seconds from the daemons' start
    all_done: float | None = None  # seconds from start until every feed was polled
    first_poll: float | None = None
    claim_p95: list[float | None] = field(default_factory=list)
    claim_p50: list[float | None] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)  # looks in the window
    claimed: list[float] = field(default_factory=list)  # feeds claimed over the run
    origins_ms: float = 0.0  # per poll
    postgres_ms: float = 0.0
    me_ms: float = 0.0
    machine_busy: float = 0.0  # share of all cores
    per_core_busy: dict[str, float] = field(default_factory=dict)
    doubles: int = 0
    repeats: int = 0
    min_gap: float = float("inf")
    never: int = 0
    bodies: int = 0
    requests: int = 0
    connections: int = 0
    log_levels: Counter[str] = field(default_factory=Counter)
    log_samples: list[str] = field(default_factory=list)
    db_unpolled: int | None = None
    leases_left: int | None = None
    polled_by: dict[str, int] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    label: str = ""


def start_daemon(config: Path, core: int | None, node: str, port: int) -> Proc:
    folder = config.parent
    cmd = [sys.executable, "-m", "watchdesk", "--config", str(config), "run"]
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    with open(folder / "daemon.out", "ab") as out, open(folder / "daemon.err", "ab") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    return Proc(node, core if core is not None else -1, port, folder, proc)


def stop_daemon(p: Proc) -> int | None:
    if p.proc.poll() is None:
        p.proc.send_signal(signal.SIGTERM)
    try:
        return p.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.proc.kill()
        return p.proc.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.proc.pid, signal.SIGKILL)


def take_sample(daemons: list[Proc], origins: Origins, metrics: list[dict[str, float]]) -> Sample:
    table = proc_table()
    return Sample(
        time.time(),
        [polls_of(m) for m in metrics],
        [tree_cpu(table, d.pid) for d in daemons],
        (table.get(origins.pid, (0, "", 0))[2]) / _TICK,
        postgres_cpu(table),
        (table.get(os.getpid(), (0, "", 0))[2]) / _TICK,
        machine_cpu(),
        metrics,
    )


def py_spy_profile(pid: int, seconds: float, out: Path) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "py-spy not installed (pip install py-spy): no profile"
    raw = out.with_suffix(".txt")
    r = subprocess.run(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--subprocesses",
            "--nonblocking",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not raw.exists():
        return f"py-spy failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[_frame(frames[-1])] += n
        for name in {_frame(f) for f in frames}:
            inclusive[name] += n
    if not total:
        return "py-spy: no samples"
    lines = [f"py-spy, pid {pid}, {total} samples (own time, then inclusive; % of samples):"]
    for name, n in own.most_common(12):
        lines.append(f"    own {100 * n / total:5.1f}%  {name}")
    for name, n in inclusive.most_common(40):
        if any(k in name for k in ("watchdesk", "psycopg", "httpx", "httpcore", "sqlite", "asyncio")):
            lines.append(f"    incl {100 * n / total:5.1f}%  {name}")
    return "\n".join(lines[:40])


def _frame(f: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    m = re.match(r"(.*) \((.*?):\d+\)$", f.strip())
    if not m:
        return f.strip()
    path = m.group(2)
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group(1)} ({path})"


def run_scenario(
    name: str, args: argparse.Namespace, origins: Origins, first: int, pg: str | None, tmp: Path, rnd: int = 0
) -> Result:
    side = name == "side"  # SQLite (a) and PostgreSQL (b) side by side, n feeds each
    each = args.feeds
    n = 2 * each if side else each
    daemons_n = 2 if name in ("pg-2", "side") else 1
    res = Result(name, daemons_n, n)
    ids = list(range(first, first + n))
    urls = [origins.url(i) for i in ids]
    names = [f"c{i}" for i in ids]
    folder = tmp / name
    folder.mkdir(parents=True)
    dbname = None
    if name.startswith("pg") or side:
        assert pg is not None
        dbname = f"watchdesk_bench_{name.replace('-', '_')}_{os.getpid()}_{first}"
        database: Path | str = create_database(pg, dbname)
    else:
        database = folder / "watchdesk.db"
    # per daemon: its database and its feeds (pg-2's two share both)
    shares: list[tuple[Path | str, list[str], list[str]]] = (
        [(folder / "watchdesk.db", urls[:each], names[:each]), (database, urls[each:], names[each:])]
        if side
        else [(database, urls, names)] * daemons_n
    )
    t_prep = time.perf_counter()
    for k, (where, some, their) in enumerate(shares):
        if k == 0 or side:
            prepare(where, some, their, first + k)
    print(
        f"  {name}: database ready ({n} feeds due, validators set) in {time.perf_counter() - t_prep:.1f} s",
        flush=True,
    )
    procs: list[Proc] = []
    cores = os.cpu_count() or 1
    if args.confine and args.pin and cores >= 2:
        # one daemon on core 0: the rest on the others; two daemons: everything everywhere
        confine([origins.pid, os.getpid()], set(range(1, cores)) if daemons_n == 1 else set(range(cores)))
    try:
        for k in range(daemons_n):
            node = "ab"[k]
            sub = folder / node
            sub.mkdir()
            port = free_port()
            where, some, their = shares[k]
            config = write_config(sub, where, some, their, node=node, port=port, concurrency=args.concurrency)
            core = (k + rnd) % 2 if side else k  # side: the two swap cores every other round
            procs.append(start_daemon(config, core if args.pin else None, node, port))
        t0 = time.time()
        c0 = origins.counters()
        samples: list[Sample] = []
        deadline = t0 + args.timeout
        profile_at: float | None = None
        profiling: list[Any] = []
        while time.time() < deadline:
            for p in procs:
                if p.proc.poll() is not None:
                    tail = (p.folder / "daemon.err").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"daemon {p.node} of {name} exited ({p.proc.returncode}):\n{tail}")
            metrics = [scrape(p.port) for p in procs]
            if all(m is not None for m in metrics):
                samples.append(take_sample(procs, origins, metrics))  # type: ignore[arg-type]
                total = sum(samples[-1].polls)
                if res.first_poll is None and total > 0:
                    res.first_poll = samples[-1].t - t0
                if args.profile and profile_at is None and total >= 0.15 * n:
                    profile_at = time.time()
                    secs = max(1.0, min(8.0, (0.75 * n) / max(1.0, _rate(samples)) * 0.6))
                    import concurrent.futures

                    ex = concurrent.futures.ThreadPoolExecutor(len(procs))
                    profiling = [
                        ex.submit(py_spy_profile, p.pid, secs, folder / f"py-spy-{p.node}") for p in procs
                    ]
                if total >= n:
                    if res.all_done is None:
                        res.all_done = samples[-1].t - t0
                    if samples[-1].t - t0 - res.all_done >= args.settle:
                        break
            time.sleep(args.sample)
        if profiling:
            res.profiles = [f.result() for f in profiling]
        c1 = origins.counters()
    finally:
        codes = [stop_daemon(p) for p in procs]
    for p, code in zip(procs, codes, strict=True):
        if code not in (0, None):
            res.log_samples.append(f"daemon {p.node} exited {code}")
    summarize(res, samples, procs, t0, each if side else None)
    res.doubles = int(c1["doubles"] - c0["doubles"])
    res.repeats = int(c1["repeats"] - c0["repeats"])
    res.min_gap = c1["min_gap"]
    res.never = n - int(c1["distinct"] - c0["distinct"])
    res.bodies = int(c1["bodies"] - c0["bodies"])
    res.requests = int(c1["requests"] - c0["requests"])
    res.connections = int(c1["connections"] - c0["connections"])
    for p in procs:
        for line in (p.folder / "daemon.err").read_text(errors="replace").splitlines():
            parts = line.split(" ", 4)
            if len(parts) >= 4 and parts[2] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
                res.log_levels[parts[2]] += 1
                if parts[2] != "INFO" and parts[2] != "DEBUG" and len(res.log_samples) < 6:
                    res.log_samples.append(f"{p.node}: {line[:240]}")
            elif line.startswith("Traceback") and len(res.log_samples) < 6:
                res.log_samples.append(f"{p.node}: {line[:240]}")
    for where in dict.fromkeys(where for where, _some, _their in shares):
        check_database(res, where, t0)
    if dbname is not None and pg is not None and not args.keep:
        with contextlib.suppress(Exception):
            drop_database(pg, dbname)
    if args.keep:
        print(f"  kept: {folder}" + (f", database {dbname}" if dbname else ""))
    return res


def _rate(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 1.0
    a, b = samples[max(0, len(samples) - 5)], samples[-1]
    return (sum(b.polls) - sum(a.polls)) / max(1e-6, b.t - a.t)


def summarize(
    res: Result, samples: list[Sample], procs: list[Proc], t0: float, each: int | None = None
) -> None:
    """`each`: every daemon polls its own `each` feeds (side): the window is where every
    one of them is between 10% and 90% of its own."""
    n = res.feeds
    if each is not None:
        lo = [s for s in samples if min(s.polls) >= 0.10 * each]
        hi = [s for s in samples if max(s.polls) <= 0.90 * each]
    else:
        lo = [s for s in samples if sum(s.polls) >= 0.10 * n]
        hi = [s for s in samples if sum(s.polls) <= 0.90 * n]
    if not lo or not hi or hi[-1].t <= lo[0].t:
        a, b = samples[0], samples[-1]
    else:
        a, b = lo[0], hi[-1]
    dt = max(1e-9, b.t - a.t)
    polls = sum(b.polls) - sum(a.polls)
    cpu = sum(b.cpu) - sum(a.cpu)
    res.window = (a.t - t0, b.t - t0)
    res.rate = polls / dt
    res.cpu_per_poll = 1000 * cpu / max(1.0, polls)
    for k, p in enumerate(procs):
        dp = b.polls[k] - a.polls[k]
        dc = b.cpu[k] - a.cpu[k]
        res.per_daemon.append((p.node, p.core, dp / dt, 1000 * dc / max(1.0, dp), dc / dt))
        claims = diff_buckets(buckets_of(a.metrics[k], CLAIM_HIST), buckets_of(b.metrics[k], CLAIM_HIST))
        res.claim_p95.append(quantile(claims, 0.95))
        res.claim_p50.append(quantile(claims, 0.50))
        res.claims.append(claims[-1][1] if claims else 0.0)
        res.claimed.append(samples[-1].metrics[k].get("watchdesk_feeds_claimed_total", 0.0))
    res.origins_ms = 1000 * (b.origins - a.origins) / max(1.0, polls)
    res.postgres_ms = 1000 * (b.postgres - a.postgres) / max(1.0, polls)
    res.me_ms = 1000 * (b.me - a.me) / max(1.0, polls)
    busy = {
        k: (b.machine[k][0] - a.machine[k][0]) / max(1, b.machine[k][1] - a.machine[k][1]) for k in b.machine
    }
    res.machine_busy = busy.pop("cpu", 0.0)
    res.per_core_busy = busy


def check_database(res: Result, database: Path | str, t0: float) -> None:
    try:
        store = Store.open(database, node="bench-check")
    except Exception as e:  # the figures stand without it
        res.log_samples.append(f"database not read after the run: {e}")
        return
    try:
        db = store.db
        res.db_unpolled = (res.db_unpolled or 0) + int(
            db.execute("SELECT COUNT(*) FROM feeds WHERE active = 1 AND last_polled_at < ?", [t0]).fetchone()[
                0
            ]
        )
        res.leases_left = (res.leases_left or 0) + int(
            db.execute("SELECT COUNT(*) FROM feeds WHERE lease_until IS NOT NULL").fetchone()[0]
        )
        for who, count in db.execute(
            "SELECT COALESCE(polled_by, '-'), COUNT(*) FROM feeds WHERE last_polled_at >= ? GROUP BY 1", [t0]
        ).fetchall():
            res.polled_by[str(who)] = int(count)
    except Exception as e:
        res.log_samples.append(f"database not read after the run: {type(e).__name__}: {e}")
    finally:
        store.close()


# ---- report ---------------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.1f}"


def report(results: list[Result], args: argparse.Namespace) -> bool:
    cores = os.cpu_count() or 1
    print(
        f"\ncluster: {args.feeds} feeds, all due at start, every poll a 304 (catch-up, saturated: the daemons, "
        f"not the 15m schedule, set the rate); window 10%..90% of the feeds polled; "
        f"[network] concurrency = per_host = {args.concurrency}, lease {LEASE}"
    )
    print(
        "pinned: "
        + (
            "daemon a taskset -c 0, daemon b taskset -c 1 (with their parse workers)"
            if args.pin
            else "nothing"
        )
        + (
            f"; the origin server ({args.ports} ports, one process), PostgreSQL and this script: on cores 1.. "
            f"while one daemon runs (--confine), on every core while two do; {cores} CPUs"
            if args.confine and args.pin and cores >= 2
            else f"; NOT pinned: the origin server ({args.ports} ports, one process), PostgreSQL, this script; "
            f"{cores} CPUs"
        )
    )
    print(
        f"{'scenario':<11} {'polls/s':>8} {'CPU ms/poll':>11} {'claim p50/p95 ms':>17} {'window s':>11} "
        f"{'all done s':>10} {'origins ms/poll':>15} {'pg ms/poll':>10} {'bench ms/poll':>13} {'machine busy':>12}"
    )
    for r in results:
        p50 = "/".join(_ms(x) for x in r.claim_p50)
        p95 = "/".join(_ms(x) for x in r.claim_p95)
        cores_s = " ".join(f"{k[3:]}:{100 * v:.0f}%" for k, v in sorted(r.per_core_busy.items()))
        print(
            f"{r.label or r.name:<11} {r.rate:8.0f} {r.cpu_per_poll:11.3f} {p50 + ' / ' + p95:>17} "
            f"{r.window[0]:5.1f}-{r.window[1]:<5.1f} {(r.all_done or float('nan')):10.1f} {r.origins_ms:15.3f} "
            f"{r.postgres_ms if r.name != 'sqlite-1' else 0.0:10.3f} {r.me_ms:13.3f} {100 * r.machine_busy:7.0f}% ({cores_s})"
        )
        for (node, core, rate, ms, share), claimed, looks in zip(
            r.per_daemon, r.claimed, r.claims, strict=True
        ):
            print(
                f"    daemon {node} (core {core}): {rate:6.0f} polls/s, {ms:.3f} CPU ms/poll, {100 * share:3.0f}% of a core; "
                f"{looks:.0f} claims in the window, {claimed:.0f} feeds claimed in the run"
            )
        extra = f", polled_by {r.polled_by}" if r.polled_by else ""
        print(
            f"    origins: {r.requests} requests ({r.bodies} bodies), {r.connections} connections; double polls "
            f"(< {INTERVAL / 2:.0f} s apart) {r.doubles}, any repeat {r.repeats}"
            + (f" (closest {r.min_gap:.1f} s)" if r.repeats else "")
            + f"; feeds never requested {r.never}; in the database: not polled {r.db_unpolled}, leases left "
            f"{r.leases_left}{extra}"
        )
        lv = dict(r.log_levels)
        print(f"    daemon log lines by level: {lv}")
        for s in r.log_samples:
            print(f"      {s}")
        for prof in r.profiles:
            print("    " + prof.replace("\n", "\n    "))
    by = medians(results)
    ok = True
    print()
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds:")
        for r in by.values():
            print(
                f"  {r.name:<9} {r.rate:6.0f} polls/s, {r.cpu_per_poll:.3f} CPU ms/poll (daemons), PostgreSQL "
                f"{r.postgres_ms:.3f}, origins {r.origins_ms:.3f} ms/poll; machine busy {100 * r.machine_busy:.0f}%; "
                f"claim p95 " + "/".join(_ms(x) for x in r.claim_p95) + " ms"
            )
    sides = [r for r in results if r.name == "side" and len(r.per_daemon) == 2]
    if sides:
        # per_daemon: (node, core, polls/s, CPU ms/poll, cores); a is SQLite, b PostgreSQL
        ratios = [r.per_daemon[1][3] / r.per_daemon[0][3] for r in sides]
        print(
            f"side by side (a cross-check, not the goal's measure): PostgreSQL daemon CPU/poll / SQLite daemon "
            f"CPU/poll, the same moments, median of {len(ratios)} runs: {statistics.median(ratios):.2f}x"
        )
        print(
            "      each run's: "
            + ", ".join(
                f"{r.per_daemon[1][3]:.3f}/{r.per_daemon[0][3]:.3f} = {x:.2f}"
                for r, x in zip(sides, ratios, strict=True)
            )
        )
    if "sqlite-1" in by and "pg-1" in by:
        ratio = by["pg-1"].cpu_per_poll / by["sqlite-1"].cpu_per_poll
        pairs = paired(results, "pg-1", "sqlite-1", lambda r: r.cpu_per_poll)
        judged = statistics.median(pairs)
        met = judged <= GOAL_CPU
        ok &= met
        print(
            f"goal, PG-1 CPU/poll / SQLite-1 CPU/poll, median of the rounds' ratios: {judged:.2f}x, goal <= "
            f"{GOAL_CPU:.2f}x: {'met' if met else 'NOT met'}"
        )
        print(
            "      the rounds' ratios: "
            + ", ".join(f"{x:.2f}" for x in pairs)
            + f"; ratio of the medians: {by['pg-1'].cpu_per_poll:.3f} / {by['sqlite-1'].cpu_per_poll:.3f} = {ratio:.2f}x"
        )
        print(
            f"      (PostgreSQL's own CPU is outside that: {by['pg-1'].postgres_ms:.3f} ms/poll in pg-1; daemon + "
            f"PostgreSQL = {(by['pg-1'].cpu_per_poll + by['pg-1'].postgres_ms) / by['sqlite-1'].cpu_per_poll:.2f}x SQLite-1)"
        )
        print(
            f"      polls/s PG-1 / SQLite-1: {by['pg-1'].rate:.0f} / {by['sqlite-1'].rate:.0f} = "
            f"{by['pg-1'].rate / by['sqlite-1'].rate:.2f}x"
        )
    if "pg-1" in by and "pg-2" in by:
        pairs = paired(results, "pg-2", "pg-1", lambda r: r.rate)
        ratio = statistics.median(pairs)
        met = ratio >= GOAL_SCALE
        ok &= met
        print(
            f"goal, PG-2 polls/s / PG-1 polls/s, median of the rounds' ratios: {ratio:.2f}x, "
            f"goal >= {GOAL_SCALE:.1f}x: {'met' if met else 'NOT met'}"
        )
        print(
            "      the rounds' ratios: "
            + ", ".join(f"{x:.2f}" for x in pairs)
            + f"; ratio of the medians: {by['pg-2'].rate:.0f} / {by['pg-1'].rate:.0f} = "
            f"{by['pg-2'].rate / by['pg-1'].rate:.2f}x"
        )
        if not met:
            print("      where the CPU went (ms per poll, over the window):")
            for r in (by["pg-1"], by["pg-2"]):
                total = r.cpu_per_poll + r.postgres_ms + r.origins_ms + r.me_ms
                print(
                    f"        {r.name}: daemons {r.cpu_per_poll:.3f}, PostgreSQL {r.postgres_ms:.3f}, origins "
                    f"{r.origins_ms:.3f}, bench {r.me_ms:.3f}; sum {total:.3f} ms/poll = "
                    f"{total * r.rate / 1000:.2f} cores of {cores} at {r.rate:.0f} polls/s; machine busy "
                    f"{100 * r.machine_busy:.0f}% = {r.machine_busy * cores:.2f} cores, "
                    f"{max(0.0, r.machine_busy * cores - total * r.rate / 1000):.2f} of them in no process above "
                    "(the kernel's loopback TCP softirqs, other processes)"
                )
            r2 = by["pg-2"]
            need = (r2.cpu_per_poll + r2.postgres_ms + r2.origins_ms) * GOAL_SCALE * by["pg-1"].rate / 1000
            verdict = (
                f"bottleneck: the machine's CPU. {GOAL_SCALE}x PG-1 at pg-2's cost per poll needs {need:.2f} cores "
                f"(daemons + PostgreSQL + origins), the machine has {cores}; pg-2 ran it {100 * r2.machine_busy:.0f}% busy"
                if r2.machine_busy >= 0.90
                else "the machine was not saturated: the limit is inside the daemons or PostgreSQL (see --profile)"
            )
            print(f"      {verdict}")
    for r in results:
        if r.doubles or r.never:
            ok = False
    total_doubles = sum(r.doubles for r in results)
    never = sum(r.never for r in results)
    print(
        f"goal, feeds polled twice in one interval: {total_doubles} (goal 0): {'met' if not total_doubles else 'NOT met'}; "
        f"feeds never polled: {never}"
    )
    print(
        "lease-claim p95 per daemon (ms, median of rounds): "
        + "; ".join(f"{r.name} " + "/".join(_ms(x) for x in r.claim_p95) for r in by.values())
    )
    return ok


def paired(results: list[Result], top: str, bottom: str, value: Callable[[Result], float]) -> list[float]:
    """value(top) / value(bottom) of each round that ran both: runs of one round are
    minutes apart, so a drift in the machine's speed (a shared VM's neighbours) cancels
    out of the ratio better than out of a ratio of medians over the whole run."""
    rounds: dict[str, dict[str, Result]] = {}
    for r in results:
        rounds.setdefault(r.label.rsplit("#", 1)[-1], {})[r.name] = r
    return [value(rs[top]) / value(rs[bottom]) for rs in rounds.values() if top in rs and bottom in rs]


def medians(results: list[Result]) -> dict[str, Result]:
    """Per scenario, a Result of the medians of its rounds (rate, CPU, the breakdowns)."""
    import statistics

    out: dict[str, Result] = {}
    for name in SCENARIOS:
        rs = [r for r in results if r.name == name]
        if not rs:
            continue
        m = Result(name, rs[0].daemons, rs[0].feeds)
        med = statistics.median
        m.rate = med(r.rate for r in rs)
        m.cpu_per_poll = med(r.cpu_per_poll for r in rs)
        m.postgres_ms = med(r.postgres_ms for r in rs)
        m.origins_ms = med(r.origins_ms for r in rs)
        m.me_ms = med(r.me_ms for r in rs)
        m.machine_busy = med(r.machine_busy for r in rs)
        m.claim_p95 = [
            med(x for x in (r.claim_p95[k] for r in rs) if x is not None)
            if any(r.claim_p95[k] is not None for r in rs)
            else None
            for k in range(rs[0].daemons)
        ]
        m.doubles = sum(r.doubles for r in rs)
        m.never = sum(r.never for r in rs)
        out[name] = m
    return out


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/cluster.py",
        description="Polls/s and CPU per poll of real `watchdesk run` daemons: one on SQLite, one on "
        "PostgreSQL, two on one PostgreSQL (leases), each pinned to its own core. Only 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)
    return check_args(p, p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--feeds", type=int, default=10_000)
    g.add_argument("--ports", type=int, default=20, help="origin ports of 127.0.0.1")
    g.add_argument("--concurrency", type=int, default=50, help="[network] concurrency and per_host")
    g.add_argument(
        "--rounds", type=int, default=3, help="rounds of all scenarios, interleaved; medians compared"
    )
    g.add_argument(
        "--scenarios", default=",".join(DEFAULT_SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}"
    )
    g.add_argument("--database-url", default=None, help="PostgreSQL server URL (default: /tmp/pgdev/url)")
    g.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True, help="taskset -c 0 / -c 1")
    g.add_argument(
        "--confine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="while one daemon runs (on core 0), the origins, PostgreSQL and this script on the other cores",
    )
    g.add_argument(
        "--profile", action="store_true", help="py-spy each daemon of each scenario for a few seconds"
    )
    g.add_argument("--timeout", type=float, default=240.0, help="longest a scenario's daemons run, s")
    g.add_argument("--settle", type=float, default=3.0, help="s the daemons run on once every feed is polled")
    g.add_argument("--sample", type=float, default=0.25, help="s between scrapes of /metrics and /proc")
    g.add_argument("--keep", action="store_true", help="keep the folders and databases")


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"--scenarios: {s!r} is not one of {', '.join(SCENARIOS)}")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.feeds < 10:
        p.error("--feeds must be >= 10")
    return args


def run(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    pg = pg_url(args)
    if any(s.startswith("pg") for s in args.scenarios) and not pg:
        raise SystemExit("no PostgreSQL: --database-url, or .ci/postgres start DIR and its URL")
    origins = Origins(args.ports)
    started = time.perf_counter()
    results = []
    try:
        print(
            f"watchdesk {watchdesk.__version__}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs; origins pid "
            f"{origins.pid} ({args.ports} ports); PostgreSQL {pg.rsplit('@', 1)[-1] if pg else '-'}; "
            f"scenarios {', '.join(args.scenarios)}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="watchdesk-cluster-") as tmp:
            for rnd in range(args.rounds):
                order = list(enumerate(args.scenarios))
                if rnd % 2:  # every other round backwards: a drift in the machine's speed hits both sides
                    order.reverse()
                for k, base in order:
                    name = f"{base}#{rnd + 1}"
                    first = 30_000_000 + 1_000_000 * (rnd * len(SCENARIOS) + k)  # each run its own feed paths
                    results.append(
                        run_scenario(base, args, origins, first, pg, Path(tmp) / f"r{rnd + 1}", rnd)
                    )
                    r = results[-1]
                    r.label = name
                    print(
                        f"  {name}: {r.rate:.0f} polls/s, {r.cpu_per_poll:.3f} CPU ms/poll, all {r.feeds} polled "
                        f"{r.all_done if r.all_done is not None else float('nan'):.1f} s after start "
                        f"(first poll at {r.first_poll or float('nan'):.1f} s)",
                        flush=True,
                    )
                    if args.keep:
                        shutil.copytree(
                            tmp,
                            Path(tempfile.gettempdir()) / f"watchdesk-cluster-kept-{os.getpid()}",
                            dirs_exist_ok=True,
                        )
    finally:
        origins.stop()
    ok = report(results, args)
    print(f"(took {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
