"""Polling cost: wall throughput, CPU per poll and memory of `Runtime.poll_feeds`.

N feeds are served by a local HTTP server on 127.0.0.1 (a few ports), in a separate
process so that its CPU is not counted. After one warm-up poll that stores every feed's
entries, three phases are measured, each a poll of every feed:

  304        the server honours If-None-Match / If-Modified-Since: 304 Not Modified
  unchanged  the server ignores validators and returns the same bytes: 200, and the
             pipeline skips parsing because the body hash matches the last poll's
  changed    every request gets a new realistic RSS body with new GUIDs, so parse
             (worker processes), dedup, match and store all run

For each phase it prints polls/s (wall), CPU ms per poll of this (polling) process,
CPU ms per poll of its worker processes, the server's CPU per request (to show it is not
the bottleneck), new TCP connections per poll, and RSS. With --rounds R each phase runs
R times and the median is printed. The goal (issue): an unchanged feed, 304 or same
bytes, costs at most 1 ms of CPU end to end.

    python bench/poll.py                       # 2,000 feeds, 3 rounds
    python bench/poll.py --feeds 500 --rounds 1
    python bench/poll.py --phases 304 --profile 304

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import email.utils
import gzip
import hashlib
import multiprocessing
import os
import pstats
import random
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchdesk
from watchdesk.config import load_config
from watchdesk.models import PollSummary
from watchdesk.runtime import Runtime

PHASES = ("304", "unchanged", "changed")
_ALIASES = {"1": "304", "2": "unchanged", "same": "unchanged", "3": "changed"}
GOAL_MS = 1.0  # CPU per unchanged poll, end to end

# Server modes (a shared integer the server reads on every request).
MODE_VALIDATE, MODE_SAME, MODE_CHANGED = 0, 1, 2
_PHASE_MODE = {"304": MODE_VALIDATE, "unchanged": MODE_SAME, "changed": MODE_CHANGED}

WATCHLIST = """\
description = "Fentanyl and opioid trafficking"
match = [
  'fentanyl',
  'carfentanil OR "nitazene*"',
  '"dark web" NEAR/15 (opioid* OR pills OR fentanyl)',
]
exclude = ['"fentanyl patch" recall']
notify = ["console"]
"""

# ---- feed documents ---------------------------------------------------------------------

_VOCAB_TEXT = (
    "the a of to in and for on with at by from as after before over about into under "
    "city county state federal police officers officials council mayor residents court "
    "judge jury prosecutors investigators agents department office report reports said "
    "says told announced confirmed charged arrested sentenced seized found warned "
    "released filed opened closed approved rejected budget plan program school schools "
    "hospital health public safety community neighborhood street downtown district "
    "week month year Monday Tuesday Wednesday Thursday Friday weekend morning night "
    "people families workers students patients drivers victims suspects witnesses "
    "new local national major small large first second third last recent early late "
    "investigation case cases charges trial hearing meeting vote election campaign "
    "fire crash storm flooding traffic road bridge project housing rent prices costs "
    "million thousand percent dozens hundreds several many more less most least "
    "according spokesperson statement interview records documents data analysis study"
)
_VOCAB = tuple(_VOCAB_TEXT.split())
_TOPICS = (
    "Agents said the pills were pressed with fentanyl and sold to buyers across three states.",
    "The vendor advertised on the dark web and shipped counterfeit pills through the mail.",
    "Investigators linked the overdoses to carfentanil found in a storage unit.",
    "A new synthetic opioid, a nitazene, was detected in samples sent to the state lab.",
    "The indictment says the ring used a dark web market to sell opioid pills for crypto.",
)
_SECTIONS = ("Local", "Crime", "Politics", "Health", "Business", "Weather", "Education")
_AUTHORS = ("Dana Whitfield", "Luis Ortega", "Priya Raman", "Tom Becker", "Grace Okafor")


def _sentence(rng: random.Random, lo: int = 8, hi: int = 22) -> str:
    words = rng.choices(_VOCAB, k=rng.randint(lo, hi))
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


@dataclass
class FeedSite:
    """Feed documents: feed f at version v holds items [v*new, v*new + items), newest first."""

    base_url: list[str]  # per port: "http://127.0.0.1:PORT"
    items: int = 20
    new_items: int = 20
    gzip: bool = False
    hit_rate: float = 0.15
    epoch: float = field(default_factory=lambda: time.time() - 86400.0)
    versions: dict[int, int] = field(default_factory=dict)
    # feed -> (version, etag, last_modified, headers+body of the 200 answer)
    _cache: dict[int, tuple[int, bytes, bytes, bytes]] = field(default_factory=dict)

    def origin(self, feed: int) -> str:
        return self.base_url[feed % len(self.base_url)]

    def _published(self, item: int) -> float:
        return self.epoch + 60.0 * item

    def item_xml(self, feed: int, item: int) -> str:
        rng = random.Random(feed * 1_000_003 + item)
        link = f"{self.origin(feed)}/story/{feed}/{item}"
        title = " ".join(w.capitalize() for w in rng.choices(_VOCAB, k=rng.randint(6, 12)))
        paragraphs = []
        for p in range(rng.randint(2, 4)):
            sentences = [_sentence(rng) for _ in range(rng.randint(2, 4))]
            if p == 0 and rng.random() < self.hit_rate:
                sentences.insert(1, rng.choice(_TOPICS))
            text = " ".join(sentences)
            if p == 0:
                text = f'<em>{text[:40]}</em>{text[40:]} <a href="{link}#more">Read more</a>'
            paragraphs.append(f"<p>{text}</p>")
        when = email.utils.formatdate(self._published(item), usegmt=True)
        return (
            "<item>\n"
            f"<title>{title}</title>\n"
            f"<link>{link}</link>\n"
            f'<guid isPermaLink="false">urn:watchdesk-bench:feed-{feed}:item-{item}</guid>\n'
            f"<pubDate>{when}</pubDate>\n"
            f"<dc:creator>{rng.choice(_AUTHORS)}</dc:creator>\n"
            f"<category>{rng.choice(_SECTIONS)}</category>\n"
            f"<description><![CDATA[{''.join(paragraphs)}]]></description>\n"
            "</item>\n"
        )

    def document(self, feed: int, version: int) -> bytes:
        first = version * self.new_items
        newest = first + self.items - 1
        origin = self.origin(feed)
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
            f"<title>Bench Gazette {feed}</title>\n<link>{origin}/</link>\n"
            f"<description>Local news, desk {feed}</description>\n<language>en-us</language>\n"
            f"<lastBuildDate>{email.utils.formatdate(self._published(newest), usegmt=True)}"
            "</lastBuildDate>\n"
            f'<atom:link href="{origin}/feed/{feed}" rel="self" type="application/rss+xml"/>\n'
        )
        body = "".join(self.item_xml(feed, i) for i in range(newest, first - 1, -1))
        return (head + body + "</channel>\n</rss>\n").encode()

    def current(self, feed: int) -> tuple[int, bytes, bytes, bytes]:
        version = self.versions.get(feed, 0)
        cached = self._cache.get(feed)
        if cached is not None and cached[0] == version:
            return cached
        body = self.document(feed, version)
        etag = b'"' + hashlib.sha1(b"%d:%d" % (feed, version)).hexdigest()[:20].encode() + b'"'
        newest = version * self.new_items + self.items - 1
        modified = email.utils.formatdate(self._published(newest), usegmt=True).encode()
        headers = [
            b"Content-Type: application/rss+xml; charset=UTF-8",
            b"ETag: " + etag,
            b"Last-Modified: " + modified,
            b"Cache-Control: max-age=300",
            b"Vary: Accept-Encoding",
        ]
        if self.gzip:
            body = gzip.compress(body, 6)
            headers.append(b"Content-Encoding: gzip")
        headers.append(b"Content-Length: %d" % len(body))
        answer = b"\r\n".join(headers) + b"\r\n\r\n" + body
        self._cache[feed] = cached = (version, etag, modified, answer)
        return cached

    def bump(self, feed: int) -> None:
        self.versions[feed] = self.versions.get(feed, 0) + 1

    def story(self, feed: int, item: int) -> bytes:
        rng = random.Random(feed * 1_000_003 + item)
        text = "".join(f"<p>{_sentence(rng)} {_sentence(rng)}</p>" for _ in range(8))
        page = f"<!doctype html><html><head><title>Story {item}</title></head><body><article>{text}</article></body></html>"
        return page.encode()


# ---- the server (its own process) ---------------------------------------------------------


class _Stats:
    """Counters shared with the parent: connections accepted, requests answered."""

    def __init__(self, ctx: multiprocessing.context.BaseContext):
        self.mode = ctx.RawValue("i", MODE_VALIDATE)
        self.connections = ctx.RawValue("q", 0)
        self.requests = ctx.RawValue("q", 0)


def _header(head: bytes, name: bytes) -> bytes | None:
    """Value of header `name` (lower case, with the leading CRLF and colon) in `head`."""
    at = head.lower().find(name)
    if at < 0:
        return None
    start = at + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class _Server:
    def __init__(self, site: FeedSite, stats: _Stats):
        self.site = site
        self.stats = stats
        self._date = b""
        self._date_at = 0.0

    def date(self) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date_at = now
            self._date = email.utils.formatdate(now, usegmt=True).encode()
        return self._date

    def answer(self, head: bytes) -> bytes:
        self.stats.requests.value += 1
        line_end = head.find(b"\r\n")
        parts = head[: line_end if line_end >= 0 else len(head)].split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        common = b"HTTP/1.1 %s\r\nDate: " + self.date() + b"\r\nServer: bench\r\n"
        pieces = path.split(b"/")
        if len(pieces) == 3 and pieces[1] == b"feed" and pieces[2].isdigit():
            feed = int(pieces[2])
            mode = self.stats.mode.value
            if mode == MODE_CHANGED:
                self.site.bump(feed)
            _version, etag, modified, answer = self.site.current(feed)
            if mode == MODE_VALIDATE:
                inm = _header(head, b"\r\nif-none-match:")
                ims = _header(head, b"\r\nif-modified-since:")
                if (inm is not None and inm == etag) or (inm is None and ims == modified):
                    return (common % b"304 Not Modified") + b"ETag: " + etag + b"\r\n\r\n"
            return (common % b"200 OK") + answer
        if len(pieces) == 4 and pieces[1] == b"story" and pieces[2].isdigit() and pieces[3].isdigit():
            body = self.site.story(int(pieces[2]), int(pieces[3]))
            return (
                (common % b"200 OK")
                + b"Content-Type: text/html; charset=UTF-8\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
        return (common % b"404 Not Found") + b"Content-Length: 9\r\n\r\nnot found"


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server):
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.stats.connections.value += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            assert self.transport is not None
            self.transport.write(self.server.answer(head))


def _serve(sockets: list[socket.socket], site: FeedSite, stats: _Stats, ready: Any) -> None:
    async def main() -> None:
        server = _Server(site, stats)
        loop = asyncio.get_running_loop()
        for sock in sockets:
            await loop.create_server(lambda: _Connection(server), sock=sock, backlog=1024)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class FeedServer:
    """The server process; listening sockets are bound here, so ports never race."""

    def __init__(self, ports: int, items: int, new_items: int, use_gzip: bool):
        ctx = multiprocessing.get_context("fork")
        self.sockets = []
        for _ in range(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            self.sockets.append(sock)
        self.base_urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self.sockets]
        self.site = FeedSite(self.base_urls, items=items, new_items=new_items, gzip=use_gzip)
        self.stats = _Stats(ctx)
        ready = ctx.Event()
        self.process = ctx.Process(
            target=_serve, args=(self.sockets, self.site, self.stats, ready), name="bench-feed-server"
        )
        self.process.daemon = True
        self.process.start()
        for sock in self.sockets:
            sock.close()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("the feed server did not start")

    def url(self, feed: int) -> str:
        return f"{self.site.origin(feed)}/feed/{feed}"

    def set_phase(self, phase: str) -> None:
        self.stats.mode.value = _PHASE_MODE[phase]

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# ---- CPU and memory readings -------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, int]] | None:
    """pid -> (ppid, utime+stime+cutime+cstime in ticks), from /proc; None elsewhere."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    table = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        table[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def descendants_cpu(exclude: int) -> float | None:
    """CPU seconds of this process's descendants (worker pools, the forkserver and the
    children it reaped), less the subtree of `exclude` (the feed server).

    Not RUSAGE_CHILDREN: pool workers live on, and forkserver workers are grandchildren,
    so their CPU reaches RUSAGE_CHILDREN only when they exit (in practice: never here).
    """
    table = _proc_table()
    if table is None:
        return None
    me, total = os.getpid(), 0
    for pid, (_ppid, ticks) in table.items():
        p = pid
        while p not in (0, 1, me, exclude) and p in table:
            p = table[p][0]
        if p == me and pid != me:
            total += ticks
    return total / _TICK


def process_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return sum(int(x) for x in rest[11:13]) / _TICK


def rss_now_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# ---- measuring -----------------------------------------------------------------------------


@dataclass
class Round:
    """One poll of every feed, and what it cost."""

    polls: int
    wall: float
    cpu: float  # this process, seconds
    workers: float | None  # its descendants (parse / extraction workers), seconds
    children: float  # RUSAGE_CHILDREN delta, seconds (reaped children only)
    server: float | None  # the feed server process, seconds
    connections: int  # TCP connections the server accepted
    requests: int  # requests the server answered
    summary: PollSummary

    def per_poll_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None else 1000 * seconds / self.polls

    @property
    def total(self) -> float:
        return self.cpu + (self.workers or 0.0)


_COUNTER = {"warm-up": "fetched", "304": "not_modified", "unchanged": "unchanged", "changed": "fetched"}


def unexpected(phase: str, summary: PollSummary, polls: int) -> str | None:
    """A phase that did not do what it is meant to measure (e.g. 200s in the 304 phase)."""
    counter = _COUNTER[phase]
    got = getattr(summary, counter)
    if got == polls and not summary.failed:
        return None
    return f"{phase}: expected {polls} {counter}, got {got} ({summary.failed} failed) {summary.errors[:3]}"


async def measure(rt: Runtime, server: FeedServer, profiler: cProfile.Profile | None = None) -> Round:
    server_pid = server.process.pid or -1
    workers0, server0 = descendants_cpu(server_pid), process_cpu(server_pid)
    conns0, reqs0 = server.stats.connections.value, server.stats.requests.value
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    summary = await rt.poll_feeds(rt.all_feeds())
    if profiler is not None:
        profiler.disable()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers1, server1 = descendants_cpu(server_pid), process_cpu(server_pid)
    return Round(
        polls=summary.feeds,
        wall=wall1 - wall0,
        cpu=cpu1 - cpu0,
        workers=None if workers0 is None or workers1 is None else workers1 - workers0,
        children=(children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime),
        server=None if server0 is None or server1 is None else server1 - server0,
        connections=server.stats.connections.value - conns0,
        requests=server.stats.requests.value - reqs0,
        summary=summary,
    )


@dataclass
class PhaseResult:
    phase: str
    rounds: list[Round]
    peak_rss: float  # MB, ru_maxrss after the phase
    rss: float | None  # MB, resident now

    def median(self, value: Callable[[Round], float | None]) -> float | None:
        values = [value(r) for r in self.rounds]
        return None if any(v is None for v in values) else statistics.median(values)  # type: ignore[type-var]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(results: list[PhaseResult], args: argparse.Namespace) -> None:
    print(
        f"\n{args.feeds} feeds on {args.ports} port(s) of 127.0.0.1, concurrency {args.concurrency}, "
        f"per_host {args.per_host}; {args.items} items per document, {args.new_items} new per changed "
        f"poll, gzip {'on' if args.gzip else 'off'}; median of {args.rounds} round(s)"
    )
    header = (
        f"{'phase':<10} {'polls/s':>8} {'CPU ms/poll':>11} {'workers ms':>10} {'total ms':>9} "
        f"{'server ms/req':>13} {'conns/poll':>10} {'peak RSS MB':>11} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for p in results:
        print(
            f"{p.phase:<10} {_fmt(p.median(lambda r: r.polls / r.wall), '8.0f')} "
            f"{_fmt(p.median(lambda r: r.per_poll_ms(r.cpu)), '11.3f')} "
            f"{_fmt(p.median(lambda r: r.per_poll_ms(r.workers)), '10.3f')} "
            f"{_fmt(p.median(lambda r: r.per_poll_ms(r.total)), '9.3f')} "
            f"{_fmt(p.median(lambda r: None if r.server is None else 1000 * r.server / max(1, r.requests)), '13.3f')} "
            f"{_fmt(p.median(lambda r: r.connections / r.polls), '10.2f')} "
            f"{p.peak_rss:11.1f} {_fmt(p.rss, '7.1f')}"
        )
    children = ", ".join(
        f"{p.phase} {_fmt(p.median(lambda r: r.per_poll_ms(r.children)), '.3f')}" for p in results
    )
    print(
        "CPU ms/poll: this process (time.process_time). workers ms: its child and grandchild processes\n"
        "(parse and extraction workers; from /proc). total = both. RUSAGE_CHILDREN ms/poll, which only\n"
        f"counts children that have exited and been reaped (pool workers live on): {children}"
    )
    for p in results:
        if p.phase in ("304", "unchanged"):
            total = p.median(lambda r: r.per_poll_ms(r.total)) or 0.0
            verdict = "met" if total <= GOAL_MS else f"NOT met ({total / GOAL_MS:.2f}x the budget)"
            print(
                f"goal, {p.phase}: {total:.3f} ms CPU per poll end to end, budget {GOAL_MS:g} ms: {verdict}"
            )


# ---- profiles ------------------------------------------------------------------------------


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        at = path.rfind(marker)
        if at >= 0:
            return path[at + len(marker) :].lstrip("/")
    return path


def print_profile(profiler: cProfile.Profile, phase: str, polls: int, top: int, out: str | None) -> None:
    """Top entries by cumulative and by own time; times are wall clock, inflated by cProfile."""
    stats = pstats.Stats(profiler)
    if out:
        stats.dump_stats(f"{out}.{phase}.prof")
        print(f"\nprofile written to {out}.{phase}.prof")
    rows: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _cc, _nc, tt, _ct, _callers in rows.values())
    for cumulative, title in ((True, "cumulative"), (False, "own time (tottime)")):
        ordered = sorted(rows.items(), key=lambda kv: kv[1][3] if cumulative else kv[1][2], reverse=True)[
            :top
        ]
        print(f"\nprofile, phase {phase}: top {top} by {title}; {polls} polls, {total:.2f} s profiled")
        print(f"{'ncalls':>13} {'tottime':>8} {'cumtime':>8} {'cum ms/poll':>11}  function")
        for (file, line, func), (cc, nc, tt, ct, _callers) in ordered:
            calls = f"{nc}/{cc}" if nc != cc else str(nc)
            where = f"{_short(file)}:{line}({func})" if line else func
            print(f"{calls:>13} {tt:8.3f} {ct:8.3f} {1000 * ct / polls:11.3f}  {where}")


# ---- the run -------------------------------------------------------------------------------


def write_config(folder: Path, server: FeedServer, args: argparse.Namespace) -> Path:
    (folder / "watchlists").mkdir(parents=True, exist_ok=True)
    (folder / "watchlists" / "opioids.toml").write_text(WATCHLIST)
    lines = [
        "[watchdesk]",
        'database = "watchdesk.db"',
        "",
        "[polling]",
        'interval = "15m"',
        f'fetch_article = "{args.fetch_article}"',
        "",
        "[network]",
        'allow = ["127.0.0.1/32"]',
        "robots = false",
        f"concurrency = {args.concurrency}",
        f"per_host = {args.per_host}",
        "",
    ]
    width = len(str(args.feeds))
    for i in range(args.feeds):
        lines += ["[[feed]]", f'url = "{server.url(i)}"', f'name = "bench-{i:0{width}d}"', ""]
    path = folder / "watchdesk.toml"
    path.write_text("\n".join(lines))
    return path


async def run(
    args: argparse.Namespace, server: FeedServer, config_path: Path
) -> tuple[list[PhaseResult], list[str]]:
    """Warm up, then each phase: --rounds measured polls, then one profiled poll if asked."""
    t0 = time.perf_counter()
    rt = Runtime(load_config(config_path))
    print(f"config loaded and runtime built in {time.perf_counter() - t0:.2f} s", flush=True)
    problems: list[str] = []
    results: list[PhaseResult] = []
    try:
        server.set_phase("304")  # a client without validators gets 200s
        warm = await measure(rt, server)
        print(
            f"warm-up: {warm.polls} polls in {warm.wall:.1f} s, {warm.summary.new_entries} entries and "
            f"{warm.summary.hits} hits stored; CPU {_fmt(warm.per_poll_ms(warm.cpu), '.2f')} ms/poll, "
            f"workers {_fmt(warm.per_poll_ms(warm.workers), '.2f')} ms/poll",
            flush=True,
        )
        problems += filter(None, [unexpected("warm-up", warm.summary, args.feeds)])
        for phase in args.phases:
            server.set_phase(phase)
            rounds = []
            for n in range(args.rounds):
                r = await measure(rt, server)
                rounds.append(r)
                problems += filter(None, [unexpected(phase, r.summary, args.feeds)])
                print(
                    f"  {phase} round {n + 1}: {r.polls / r.wall:.0f} polls/s, CPU "
                    f"{_fmt(r.per_poll_ms(r.cpu), '.3f')} ms/poll, workers "
                    f"{_fmt(r.per_poll_ms(r.workers), '.3f')} ms/poll, {r.connections} new connections",
                    flush=True,
                )
            results.append(PhaseResult(phase, rounds, peak_rss_mb(), rss_now_mb()))
            if phase in args.profile:
                profiler = cProfile.Profile()
                r = await measure(rt, server, profiler)
                problems += filter(None, [unexpected(phase, r.summary, args.feeds)])
                print_profile(profiler, phase, r.polls, args.profile_top, args.profile_out)
    finally:
        await rt.aclose()
    return results, problems


def _phase(value: str) -> str:
    phase = _ALIASES.get(value, value)
    if phase not in PHASES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a phase ({', '.join(PHASES)})")
    return phase


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/poll.py",
        description=(
            "Measure polls/s, CPU ms per poll and RSS of Runtime.poll_feeds against a local "
            "feed server (127.0.0.1, separate process) in three phases: 304 (validators "
            "honoured), unchanged (same bytes, parse skipped by body hash), changed (new "
            "20-item RSS body every poll: parse + store + match). Goal: an unchanged poll "
            f"costs <= {GOAL_MS:g} ms CPU."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--feeds", type=int, default=2000, help="number of feeds (distinct URLs)")
    p.add_argument("--rounds", type=int, default=3, help="polls of every feed per phase; medians are printed")
    p.add_argument("--concurrency", type=int, default=50, help="[network] concurrency")
    p.add_argument(
        "--per-host",
        type=int,
        default=None,
        help="[network] per_host; None: the concurrency (all feeds share the host 127.0.0.1)",
    )
    p.add_argument(
        "--ports", type=int, default=4, help="server ports on 127.0.0.1; feed i on port i %% ports"
    )
    p.add_argument(
        "--phases",
        type=_phase,
        nargs="+",
        default=list(PHASES),
        help=f"phases to run, in this order ({', '.join(PHASES)}; or 1 2 3)",
    )
    p.add_argument(
        "--profile",
        type=_phase,
        action="append",
        default=[],
        metavar="PHASE",
        help="after PHASE's measured rounds, poll once more under cProfile and print the top entries "
        "(repeatable; the profiled poll is not in the figures; parse workers are not profiled)",
    )
    p.add_argument("--profile-top", type=int, default=25, help="entries printed per profile listing")
    p.add_argument("--profile-out", metavar="PREFIX", help="also write PREFIX.PHASE.prof (pstats)")
    p.add_argument("--items", type=int, default=20, help="items per feed document")
    p.add_argument(
        "--new-items", type=int, default=None, help="new items per changed poll; None: all of --items"
    )
    p.add_argument("--gzip", action="store_true", help="serve gzip-encoded feed bodies")
    p.add_argument(
        "--fetch-article",
        choices=("auto", "always", "never"),
        default="never",
        help="[polling] fetch_article (story pages are served too)",
    )
    args = p.parse_args(argv)
    if args.per_host is None:
        args.per_host = args.concurrency
    if args.new_items is None:
        args.new_items = args.items
    for phase in args.profile:
        if phase not in args.phases:
            p.error(f"--profile {phase}: that phase is not in --phases")
    if min(args.feeds, args.rounds, args.concurrency, args.per_host, args.ports, args.items) < 1:
        p.error("--feeds, --rounds, --concurrency, --per-host, --ports and --items must be >= 1")
    if not 1 <= args.new_items <= args.items:
        p.error("--new-items must be between 1 and --items")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = FeedServer(args.ports, args.items, args.new_items, args.gzip)
    try:
        size = len(server.site.document(0, 0))
        print(
            f"watchdesk {watchdesk.__version__} from {Path(watchdesk.__file__).parent}; python "
            f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; feed server pid {server.process.pid} on "
            f"{', '.join(server.base_urls)}; a feed document is {size / 1024:.1f} KB",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="watchdesk-bench-") as tmp:
            config_path = write_config(Path(tmp), server, args)
            results, problems = asyncio.run(run(args, server, config_path))
    finally:
        server.stop()
    print_table(results, args)
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
