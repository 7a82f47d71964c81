"""Polling cost: wall throughput, CPU per poll and memory of `Runtime.poll_feeds`.

N feeds are served by a local HTTP server on 127.0.0.1 (a few ports), in a separate
process so that its CPU is not counted. After one warm-up poll that stores every feed's
entries, four phases are measured, the first three each a poll of every feed:

  304        the server honours If-None-Match / If-Modified-Since: 304 Not Modified
  unchanged  the server ignores validators and returns the same bytes: 200, and the
             pipeline skips parsing because the body hash matches the last poll's
  changed    every request gets a new realistic RSS body with new GUIDs, so parse
             (worker processes), dedup, match and store all run
  overflow   the first --overflow-feeds feeds (100) each grow by --overflow-items (300)
             items between polls and the document shows exactly the newest 300: every
             entry is new and the oldest is newer than the newest stored (an overflow),
             and [polling] max_entries (100) new entries are handled per poll, so those
             feeds are polled again and again until none has entries waiting

For the first three it prints polls/s (wall), CPU ms per poll of this (polling) process,
CPU ms per poll of its worker processes, the server's CPU per request (to show it is not
the bottleneck), new TCP connections per poll, and RSS. For overflow, in a second table:
items stored per second, passes needed to drain, CPU ms per stored item, overflows
detected per feed, and RSS; a round that did not store exactly 300 x feeds items, or
took other than ceil(300 / max_entries) passes, or did not count one overflow per feed,
is a WARNING. With --rounds R each phase runs R times and the median is printed. The
goal (issue): an unchanged feed, 304 or same bytes, costs at most 1 ms of CPU end to end.

    python bench/poll.py                       # 2,000 feeds, 3 rounds
    python bench/poll.py --feeds 500 --rounds 1
    python bench/poll.py --phases 304 --profile 304
    python bench/poll.py --feeds 200 --rounds 2 --phases overflow

Not a test: it prints figures. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import email.utils
import gzip
import hashlib
import logging
import math
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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchdesk
from watchdesk.config import load_config
from watchdesk.models import PollSummary
from watchdesk.runtime import Runtime
from watchdesk.store.feeds import FeedRow

PHASES = ("304", "unchanged", "changed", "overflow")
_ALIASES = {"1": "304", "2": "unchanged", "same": "unchanged", "3": "changed", "4": "overflow"}
GOAL_MS = 1.0  # CPU per unchanged poll, end to end

# Server modes (a shared integer the server reads on every request).
MODE_VALIDATE, MODE_SAME, MODE_CHANGED = 0, 1, 2
# overflow: validators honoured; its feeds change by the shared generation, not per request
_PHASE_MODE = {
    "304": MODE_VALIDATE,
    "unchanged": MODE_SAME,
    "changed": MODE_CHANGED,
    "overflow": MODE_VALIDATE,
}

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
    """Feed documents: feed f at version v holds items [v*new, v*new + items), newest first.

    Overflow feeds (f < overflow_feeds) also grow by overflow_items per generation g (a
    counter shared by the whole site): their newest item is v*new + items - 1 + g*overflow
    and, after a generation step, the document shows the newest overflow_items items (a
    `changed` bump goes back to `items` items).
    """

    base_url: list[str]  # per port: "http://127.0.0.1:PORT"
    items: int = 20
    new_items: int = 20
    gzip: bool = False
    hit_rate: float = 0.15
    overflow_feeds: int = 0
    overflow_items: int = 300
    epoch: float = field(default_factory=lambda: time.time() - 86400.0)
    versions: dict[int, int] = field(default_factory=dict)
    # overflow feed -> the generation its document last showed; `_wide`: those showing
    # overflow_items items (the last change was a generation step, not a bump)
    _generation: dict[int, int] = field(default_factory=dict)
    _wide: set[int] = field(default_factory=set)
    # feed -> ((version, generation, wide), etag, last_modified, headers+body of the 200 answer)
    _cache: dict[int, tuple[tuple[int, int, bool], bytes, bytes, bytes]] = field(default_factory=dict)

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

    def span(self, feed: int, version: int, generation: int = 0, wide: bool = False) -> tuple[int, int]:
        """The first (oldest) and newest item of a document."""
        newest = version * self.new_items + self.items - 1
        if feed < self.overflow_feeds:
            newest += generation * self.overflow_items
        return newest - (self.overflow_items if wide else self.items) + 1, newest

    def document(self, feed: int, version: int, generation: int = 0, wide: bool = False) -> bytes:
        first, newest = self.span(feed, version, generation, wide)
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

    def current(self, feed: int, generation: int = 0) -> tuple[tuple[int, int, bool], bytes, bytes, bytes]:
        version = self.versions.get(feed, 0)
        if feed >= self.overflow_feeds:
            generation = 0
        elif generation != self._generation.get(feed, 0):
            self._generation[feed] = generation
            self._wide.add(feed)
        key = (version, generation, feed in self._wide)
        cached = self._cache.get(feed)
        if cached is not None and cached[0] == key:
            return cached
        body = self.document(feed, *key)
        tag = b"%d:%d:%d:%d" % (feed, *key)
        etag = b'"' + hashlib.sha1(tag).hexdigest()[:20].encode() + b'"'
        _first, newest = self.span(feed, *key)
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
        self._cache[feed] = cached = (key, etag, modified, answer)
        return cached

    def bump(self, feed: int) -> None:
        self.versions[feed] = self.versions.get(feed, 0) + 1
        self._wide.discard(feed)

    def story(self, feed: int, item: int) -> bytes:
        rng = random.Random(feed * 1_000_003 + item)
        text = "".join(f"<p>{_sentence(rng)} {_sentence(rng)}</p>" for _ in range(8))
        page = f"<!doctype html><html><head><title>Story {item}</title></head><body><article>{text}</article></body></html>"
        return page.encode()


# ---- the server (its own process) ---------------------------------------------------------


class _Stats:
    """Counters shared with the parent: connections accepted, requests answered; the
    mode, and the generation of the overflow feeds (the parent steps it)."""

    def __init__(self, ctx: multiprocessing.context.BaseContext):
        self.mode = ctx.RawValue("i", MODE_VALIDATE)
        self.generation = ctx.RawValue("q", 0)
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
            _key, etag, modified, answer = self.site.current(feed, self.stats.generation.value)
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

    def __init__(
        self,
        ports: int,
        items: int,
        new_items: int,
        use_gzip: bool,
        overflow_feeds: int = 0,
        overflow_items: int = 300,
    ):
        ctx = multiprocessing.get_context("fork")
        self.sockets = []
        for _ in range(ports):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            self.sockets.append(sock)
        self.base_urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in self.sockets]
        self.site = FeedSite(
            self.base_urls,
            items=items,
            new_items=new_items,
            gzip=use_gzip,
            overflow_feeds=overflow_feeds,
            overflow_items=overflow_items,
        )
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

    def grow_overflow_feeds(self) -> None:
        """Every overflow feed gains overflow_items items at once (its next request sees them)."""
        self.stats.generation.value += 1

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


# ---- watchdesk's warnings ----------------------------------------------------------------


class _LogTally(logging.Handler):
    """Counts watchdesk's warnings by event (a message's first word) and prints them, as
    logging's last resort would, except the overflow phase's expected ones (hundreds)."""

    QUIET = ("entries_waiting", "feed_overflow")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        event = str(record.msg).split(" ", 1)[0]
        self.counts[event] += 1
        if event not in self.QUIET:
            sys.stderr.write(self.format(record) + "\n")


LOG_TALLY = _LogTally()


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


async def measure(
    rt: Runtime,
    server: FeedServer,
    profiler: cProfile.Profile | None = None,
    poll: Callable[[], Awaitable[PollSummary]] | None = None,
) -> Round:
    """What `poll` (default: one poll of every feed) cost."""
    server_pid = server.process.pid or -1
    workers0, server0 = descendants_cpu(server_pid), process_cpu(server_pid)
    conns0, reqs0 = server.stats.connections.value, server.stats.requests.value
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    summary = await (poll() if poll is not None else rt.poll_feeds(rt.all_feeds()))
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
class OverflowRound:
    """One growth step of the overflow feeds, drained: polled until none has entries waiting."""

    cost: Round  # all the passes together; cost.polls counts every poll of every pass
    feeds: int
    passes: int
    overflows: int  # feeds.overflows gained, summed over the overflow feeds
    waiting: int  # entries still waiting when the drain stopped (0 unless it gave up)
    logged: int  # feed_overflow warnings logged

    @property
    def stored(self) -> int:
        return self.cost.summary.new_entries

    def per_item_ms(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.stored else 1000 * seconds / self.stored


async def measure_overflow(
    rt: Runtime,
    server: FeedServer,
    urls: set[str],
    max_passes: int,
    profiler: cProfile.Profile | None = None,
) -> OverflowRound:
    """Grow every overflow feed by overflow_items items, then poll them, and again those with
    entries waiting (as `Runtime.poll_everything` does), until none waits."""

    def rows() -> list[FeedRow]:
        return [row for row in rt.all_feeds() if row.config_url in urls]

    before = rows()
    logged = LOG_TALLY.counts["feed_overflow"]
    passes = 0
    left: list[FeedRow] = []

    async def drain() -> PollSummary:
        nonlocal passes, left
        total = PollSummary()
        todo = before
        while todo and passes < max_passes:
            total.add(await rt.poll_feeds(todo))
            passes += 1
            todo = [row for row in rows() if row.entries_waiting]
        left = todo
        return total

    server.grow_overflow_feeds()
    cost = await measure(rt, server, profiler, drain)
    return OverflowRound(
        cost=cost,
        feeds=len(before),
        passes=passes,
        overflows=sum(row.overflows for row in rows()) - sum(row.overflows for row in before),
        waiting=sum(row.entries_waiting for row in left),
        logged=LOG_TALLY.counts["feed_overflow"] - logged,
    )


def overflow_unexpected(r: OverflowRound, grow: int, max_entries: int) -> list[str]:
    """A round that did not overflow and drain as it should."""
    problems = []
    want_passes = math.ceil(grow / max_entries)
    summary = r.cost.summary
    if r.stored != grow * r.feeds or summary.failed:
        problems.append(
            f"overflow: expected {grow} x {r.feeds} = {grow * r.feeds} entries stored, got {r.stored} "
            f"({summary.failed} failed) {summary.errors[:3]}"
        )
    if r.passes != want_passes:
        problems.append(
            f"overflow: expected the drain to take ceil({grow} / max_entries {max_entries}) = "
            f"{want_passes} passes, it took {r.passes}"
            + (f" and gave up with {r.waiting} entries still waiting" if r.waiting else "")
        )
    if r.overflows != r.feeds or r.logged != r.feeds:
        problems.append(
            f"overflow: expected one overflow per feed ({r.feeds}), got {r.overflows} counted in "
            f"feeds.overflows and {r.logged} feed_overflow logged"
        )
    return problems


@dataclass
class PhaseResult:
    phase: str
    rounds: list[Round]
    peak_rss: float  # MB, ru_maxrss after the phase
    rss: float | None  # MB, resident now

    def median(self, value: Callable[[Round], float | None]) -> float | None:
        values = [value(r) for r in self.rounds]
        return None if any(v is None for v in values) else statistics.median(values)  # type: ignore[type-var]


@dataclass
class OverflowResult:
    rounds: list[OverflowRound]
    peak_rss: float  # MB, ru_maxrss after the phase
    rss: float | None  # MB, resident now

    def median(self, value: Callable[[OverflowRound], float | None]) -> float | None:
        values = [value(r) for r in self.rounds]
        return None if any(v is None for v in values) else statistics.median(values)  # type: ignore[type-var]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(results: list[PhaseResult], args: argparse.Namespace) -> None:
    if not results:
        return
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


def print_overflow_table(results: list[OverflowResult], args: argparse.Namespace, max_entries: int) -> None:
    """One row per overflow phase run (--phases may name it more than once)."""
    if not results:
        return
    grow = args.overflow_items
    print(
        f"\noverflow: {args.overflow_feeds} feeds each grow by {grow} items between polls, the document "
        f"showing the newest {grow}; max_entries {max_entries}, so ceil({grow}/{max_entries}) = "
        f"{math.ceil(grow / max_entries)} passes to drain; median of {args.rounds} round(s)"
    )
    header = (
        f"{'items/s':>8} {'passes':>6} {'polls':>6} {'CPU ms/item':>11} {'workers ms/item':>15} "
        f"{'total ms/item':>13} {'overflows/feed':>14} {'s/round':>8} {'peak RSS MB':>11} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        print(
            f"{_fmt(result.median(lambda r: r.stored / r.cost.wall), '8.0f')} "
            f"{_fmt(result.median(lambda r: r.passes), '6g')} "
            f"{_fmt(result.median(lambda r: r.cost.polls), '6g')} "
            f"{_fmt(result.median(lambda r: r.per_item_ms(r.cost.cpu)), '11.3f')} "
            f"{_fmt(result.median(lambda r: r.per_item_ms(r.cost.workers)), '15.3f')} "
            f"{_fmt(result.median(lambda r: r.per_item_ms(r.cost.total)), '13.3f')} "
            f"{_fmt(result.median(lambda r: r.overflows / max(1, r.feeds)), '14.2f')} "
            f"{_fmt(result.median(lambda r: r.cost.wall), '8.2f')} "
            f"{result.peak_rss:11.1f} {_fmt(result.rss, '7.1f')}"
        )
    print(
        "items/s: entries stored per second of wall clock, all passes of a round; passes: polls of\n"
        "the overflow feeds until none had entries waiting; polls: feed polls in those passes; ms/item:\n"
        "CPU per stored entry (this process, its workers, both); overflows/feed: feeds.overflows gained"
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
) -> tuple[list[PhaseResult], list[OverflowResult], int, list[str]]:
    """Warm up, then each phase: --rounds measured polls, then one profiled poll if asked."""
    t0 = time.perf_counter()
    rt = Runtime(load_config(config_path))
    print(f"config loaded and runtime built in {time.perf_counter() - t0:.2f} s", flush=True)
    problems: list[str] = []
    results: list[PhaseResult] = []
    overflow: list[OverflowResult] = []
    max_entries = rt.ctx.polling.max_entries
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
            if phase == "overflow":
                overflow.append(await run_overflow(args, rt, server, max_entries, problems))
                continue
            rounds = []
            for n in range(args.rounds):
                groups, grouped = rt.store.groups.groups, rt.store.groups.calls
                r = await measure(rt, server)
                rounds.append(r)
                problems += filter(None, [unexpected(phase, r.summary, args.feeds)])
                groups, grouped = rt.store.groups.groups - groups, rt.store.groups.calls - grouped
                print(
                    f"  {phase} round {n + 1}: {r.polls / r.wall:.0f} polls/s, CPU "
                    f"{_fmt(r.per_poll_ms(r.cpu), '.3f')} ms/poll, workers "
                    f"{_fmt(r.per_poll_ms(r.workers), '.3f')} ms/poll, {r.connections} new connections, "
                    f"{grouped} state saves in {groups} commits (group commit)",
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
    return results, overflow, max_entries, problems


async def run_overflow(
    args: argparse.Namespace, rt: Runtime, server: FeedServer, max_entries: int, problems: list[str]
) -> OverflowResult:
    urls = {server.url(i) for i in range(args.overflow_feeds)}
    max_passes = 3 * math.ceil(args.overflow_items / max_entries) + 5  # then it gives up: a WARNING
    rounds = []
    for n in range(args.rounds):
        r = await measure_overflow(rt, server, urls, max_passes)
        rounds.append(r)
        problems += overflow_unexpected(r, args.overflow_items, max_entries)
        print(
            f"  overflow round {n + 1}: {r.stored} entries stored in {r.passes} passes ({r.cost.polls} polls, "
            f"{r.cost.wall:.1f} s), {r.stored / r.cost.wall:.0f} items/s, CPU "
            f"{_fmt(r.per_item_ms(r.cost.cpu), '.3f')} ms/item, workers "
            f"{_fmt(r.per_item_ms(r.cost.workers), '.3f')} ms/item, {r.overflows} overflows "
            f"counted, {r.logged} feed_overflow logged"
            + (f", {r.waiting} entries still waiting" if r.waiting else ""),
            flush=True,
        )
    result = OverflowResult(rounds, peak_rss_mb(), rss_now_mb())
    if "overflow" in args.profile:
        profiler = cProfile.Profile()
        r = await measure_overflow(rt, server, urls, max_passes, profiler)
        problems += overflow_unexpected(r, args.overflow_items, max_entries)
        print_profile(profiler, "overflow", r.cost.polls, args.profile_top, args.profile_out)
    return result


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
            "feed server (127.0.0.1, separate process) in four phases: 304 (validators "
            "honoured), unchanged (same bytes, parse skipped by body hash), changed (new "
            "20-item RSS body every poll: parse + store + match), overflow (feeds growing by "
            "300 items between polls, drained max_entries per poll: items/s, passes, CPU "
            f"ms per item, overflows detected). Goal: an unchanged poll costs <= {GOAL_MS:g} ms CPU."
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
        help=f"phases to run, in this order ({', '.join(PHASES)}; or 1 2 3 4)",
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
    p.add_argument(
        "--overflow-feeds",
        type=int,
        default=100,
        help="overflow phase: feeds that grow (the first N; at most --feeds)",
    )
    p.add_argument(
        "--overflow-items",
        type=int,
        default=300,
        help="overflow phase: items each feed gains between polls, all shown by its document",
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
    if min(args.overflow_feeds, args.overflow_items) < 1:
        p.error("--overflow-feeds and --overflow-items must be >= 1")
    args.overflow_feeds = min(args.overflow_feeds, args.feeds)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("watchdesk").addHandler(LOG_TALLY)
    overflow_feeds = args.overflow_feeds if "overflow" in args.phases else 0
    server = FeedServer(
        args.ports, args.items, args.new_items, args.gzip, overflow_feeds, args.overflow_items
    )
    try:
        size = len(server.site.document(0, 0))
        if overflow_feeds:
            wide = len(server.site.document(0, 0, 1, wide=True))
            size_note = f", an overflow document ({args.overflow_items} items) {wide / 1024:.1f} KB"
        else:
            size_note = ""
        print(
            f"watchdesk {watchdesk.__version__} from {Path(watchdesk.__file__).parent}; python "
            f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; feed server pid {server.process.pid} on "
            f"{', '.join(server.base_urls)}; a feed document is {size / 1024:.1f} KB{size_note}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="watchdesk-bench-") as tmp:
            config_path = write_config(Path(tmp), server, args)
            results, overflow, max_entries, problems = asyncio.run(run(args, server, config_path))
    finally:
        server.stop()
    print_table(results, args)
    print_overflow_table(overflow, args, max_entries)
    quiet = {event: n for event, n in LOG_TALLY.counts.items() if event in _LogTally.QUIET}
    if quiet:
        said = ", ".join(f"{event} {n}" for event, n in sorted(quiet.items()))
        print(f"watchdesk warnings counted, not printed (warm-up and every phase): {said}")
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
