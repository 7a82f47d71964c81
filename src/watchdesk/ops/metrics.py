"""Prometheus metrics of the daemon, and the HTTP endpoints that serve them.

Metrics live on a registry of our own (not prometheus_client's global one: nothing an
imported library registers shows up, and every test gets a fresh set). No label names a
feed, a watchlist or a query: the series stay as few as the outcomes, whatever the
number of feeds (the store answers per-feed questions: `watchdesk feeds`).

    watchdesk_polls_total{outcome}            changed | not_modified | unchanged | failed
    watchdesk_poll_duration_seconds           histogram, one observation per feed poll
    watchdesk_feeds{status}                   gauge, active feeds per status (set_state)
    watchdesk_entries_stored_total            new entries stored
    watchdesk_articles_extracted_total{outcome}  extracted | empty | failed | skipped
    watchdesk_extract_duration_seconds        histogram, one observation per page extracted
    watchdesk_hits_total                      watchlist hits
    watchdesk_deliveries_total{channel_type,outcome}  sent | retrying | dead (alerts)
    watchdesk_outbox_pending                  gauge (set_state)
    watchdesk_outbox_oldest_pending_age_seconds  gauge, 0 when nothing is pending
    watchdesk_db_size_bytes                   gauge, the database and its WAL
    watchdesk_build_info{version,node,store}  1
    process_*                                 the process's CPU, memory, file descriptors

`serve()` answers `GET /metrics` (the Prometheus text format, or OpenMetrics when the
scraper asks for it) and `GET /healthz` (200 `ok` while `alive()` is true, else 503
`stalled`) from the daemon's own asyncio loop: no thread, and a loop that is stuck
answers nothing at all, which a probe sees as it should. One request per connection
(HTTP/1.0), its head bounded in size and time; anything else is answered 4xx or closed.

Wiring (daemon.py / runtime.py): see each method's docstring for where it is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from ..models import FeedStatus, PollSummary

__all__ = [
    "DELIVERY_OUTCOMES",
    "EXTRACT_OUTCOMES",
    "POLL_OUTCOMES",
    "DrainCounts",
    "Metrics",
    "serve",
]

log = logging.getLogger(__name__)

POLL_OUTCOMES = ("changed", "not_modified", "unchanged", "failed")
EXTRACT_OUTCOMES = ("extracted", "empty", "failed", "skipped")
DELIVERY_OUTCOMES = ("sent", "retrying", "dead")
# A poll is a fetch (up to [network] timeouts), a parse and a store write; an extraction
# runs up to [polling] extract_timeout (20 s by default).
CLAIM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
EXTRACT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

MAX_REQUEST_BYTES = 8192  # a request head longer than this is answered 431
REQUEST_TIMEOUT = 5.0  # to send the request head, and again to take the answer
MAX_CONNECTIONS = 32  # at once; more are closed unanswered


class DrainCounts(Protocol):
    """What observe_drain reads: outbox.DrainSummary (outbox.py sits above ops)."""

    @property
    def sent(self) -> int: ...
    @property
    def retrying(self) -> int: ...
    @property
    def dead(self) -> int: ...


def _version() -> str:
    try:
        return metadata.version("watchdesk")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The daemon's metrics, on `self.registry`. `channel_types`: the configured channels'
    types, so their delivery series exist (at 0) before the first delivery."""

    def __init__(
        self,
        version: str | None = None,
        channel_types: Iterable[str] = (),
        *,
        node: str = "",
        store: str = "sqlite",
    ):
        # No `_created` series beside every counter and histogram: they double the series
        # and the text format has no use for them. (A process-wide switch of
        # prometheus_client's, read when a metric is made; watchdesk has no other metrics.)
        disable_created_metrics()
        self.registry = r = CollectorRegistry()
        self.polls = Counter("watchdesk_polls_total", "Feed polls by outcome.", ["outcome"], registry=r)
        self.poll_duration = Histogram(
            "watchdesk_poll_duration_seconds",
            "Time one feed poll took: fetch, parse, match, store.",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.feeds = Gauge("watchdesk_feeds", "Active feeds by status.", ["status"], registry=r)
        self.feed_claims = Histogram(
            "watchdesk_feed_claim_seconds",
            "Time one look for due feeds took (PostgreSQL: leasing them to this daemon).",
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self.feeds_claimed = Counter(
            "watchdesk_feeds_claimed_total", "Due feeds this daemon took to poll.", registry=r
        )
        self.entries_stored = Counter(
            "watchdesk_entries_stored_total", "New feed entries stored.", registry=r
        )
        self.articles_extracted = Counter(
            "watchdesk_articles_extracted_total",
            "Article pages fetched for their text, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.extract_duration = Histogram(
            "watchdesk_extract_duration_seconds",
            "Time the main-text extraction of one page took.",
            buckets=EXTRACT_BUCKETS,
            registry=r,
        )
        self.hits = Counter("watchdesk_hits_total", "Watchlist hits.", registry=r)
        self.deliveries = Counter(
            "watchdesk_deliveries_total",
            "Alerts through a channel, by channel type and outcome (a digest counts its alerts).",
            ["channel_type", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge("watchdesk_outbox_pending", "Alerts waiting to be delivered.", registry=r)
        self.outbox_oldest_pending_age = Gauge(
            "watchdesk_outbox_oldest_pending_age_seconds",
            "Age of the oldest alert waiting to be delivered (0 when none waits).",
            registry=r,
        )
        self.db_size = Gauge("watchdesk_db_size_bytes", "Size of the database file and its WAL.", registry=r)
        self.build_info = Info("watchdesk_build", "The running watchdesk.", registry=r)
        # `node` tells the daemons sharing one PostgreSQL apart (each serves its own /metrics).
        self.build_info.info({"version": version or _version(), "node": node, "store": store})
        ProcessCollector(registry=r)
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for outcome in EXTRACT_OUTCOMES:
            self.articles_extracted.labels(outcome)
        for channel_type in channel_types:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(channel_type, outcome)
        self._statuses = dict.fromkeys(str(s) for s in FeedStatus)  # in order; a set of keys
        for status in self._statuses:
            self.feeds.labels(status)

    def observe_claim(self, feeds: int, seconds: float) -> None:
        """One look for due feeds (Runtime.due): how many it gave and how long it took."""
        self.feed_claims.observe(seconds)
        self.feeds_claimed.inc(feeds)

    def observe_poll(self, summary: PollSummary, seconds: float) -> None:
        """One feed's poll (Runtime.poll_one's summary) and how long it took. A summary of
        no feed (one not polled: not in this config) is not a poll."""
        if not summary.feeds:
            return
        for outcome, count in zip(
            POLL_OUTCOMES,
            (summary.fetched, summary.not_modified, summary.unchanged, summary.failed),
            strict=True,
        ):
            if count:
                self.polls.labels(outcome).inc(count)
        if summary.new_entries:
            self.entries_stored.inc(summary.new_entries)
        if summary.hits:
            self.hits.inc(summary.hits)
        self.poll_duration.observe(max(0.0, seconds))

    def observe_extract(self, outcome: str, seconds: float | None = None) -> None:
        """One article page (ingest/articles.py fetch_article): `extracted` (text from the
        page), `empty` (extraction found no text), `failed` (extraction failed or the
        worker timed out) or `skipped` (no page body: refused, too large, not HTML...);
        `seconds`: the extraction's time, when it ran."""
        if outcome not in EXTRACT_OUTCOMES:
            raise ValueError(f"unknown extraction outcome {outcome!r}")
        self.articles_extracted.labels(outcome).inc()
        if seconds is not None:
            self.extract_duration.observe(max(0.0, seconds))

    def observe_delivery(self, channel_type: str, outcome: str, alerts: int = 1) -> None:
        """One delivery's outcome (outbox.py Drainer._deliver/_dead): `alerts` alerts
        `sent`, `retrying` or `dead` through a channel of `channel_type` (its config type:
        a handful of values, never a channel's name)."""
        if outcome not in DELIVERY_OUTCOMES:
            raise ValueError(f"unknown delivery outcome {outcome!r}")
        if alerts:
            self.deliveries.labels(channel_type, outcome).inc(alerts)

    def observe_drain(self, summary: DrainCounts, channel_type: str) -> None:
        """A drain's outcomes on channels of one type (a DrainSummary per channel type)."""
        for outcome, count in zip(
            DELIVERY_OUTCOMES, (summary.sent, summary.retrying, summary.dead), strict=True
        ):
            self.observe_delivery(channel_type, outcome, count)

    def set_state(
        self,
        feed_statuses: Mapping[str, int],
        outbox_pending: int,
        oldest_pending_age: float | None,
        db_size: int,
    ) -> None:
        """What the store holds now: feeds per status (store.feeds.status_counts), the
        pending alerts and the age of the oldest (None: none pending), the database's
        bytes. A status not in `feed_statuses` is 0."""
        self._statuses |= dict.fromkeys(feed_statuses)
        for status in self._statuses:
            self.feeds.labels(status).set(feed_statuses.get(status, 0))
        self.outbox_pending.set(outbox_pending)
        self.outbox_oldest_pending_age.set(max(0.0, oldest_pending_age or 0.0))
        self.db_size.set(db_size)

    def set_unknown(self) -> None:
        """The store could not be read: the gauges read from it become NaN (absent from
        alerts that compare them, visible as unknown), never stuck at their last value."""
        nan = float("nan")
        for status in self._statuses:
            self.feeds.labels(status).set(nan)
        self.outbox_pending.set(nan)
        self.outbox_oldest_pending_age.set(nan)


# ---- the HTTP endpoints ---------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Responder:
    def __init__(
        self, metrics: Metrics, alive: Callable[[], bool], timeout: float, max_connections: int
    ) -> None:
        self.metrics = metrics
        self.alive = alive
        self.timeout = timeout
        self.max_connections = max_connections
        self.open = 0
        self._alive_failed = False  # said once, not at every probe

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections:
            writer.transport.abort()
            return
        self.open += 1
        clean = False
        try:
            answer = await self._answer(reader)
            if answer is not None:
                writer.write(answer)
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
            clean = True
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or would not take the answer: nothing more to say
        finally:
            self.open -= 1
            if clean:
                writer.close()
                try:
                    async with asyncio.timeout(self.timeout):
                        await writer.wait_closed()
                except (ConnectionError, TimeoutError):
                    writer.transport.abort()
            else:
                writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes | None:
        """The bytes to send back; None: close without a word (the client sent nothing
        whole in time, or went away)."""
        try:
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _response(431, b"request too large\n")
        except (asyncio.IncompleteReadError, TimeoutError):
            return None
        try:
            lines = head.decode("ascii").split("\r\n")
        except UnicodeDecodeError:
            return _response(400, b"bad request\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
            return _response(400, b"bad request\n")
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            return _response(405, b"method not allowed\n", extra=(("Allow", "GET, HEAD"),))
        head_only = method == "HEAD"
        path = target.partition("?")[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            try:
                body = encoder(self.metrics.registry)
            except Exception:  # a collector's bug: said, and answered, never the daemon's end
                log.exception("metrics_failed")
                return _response(500, b"metrics failed\n")
            return _response(200, body, content_type, head_only=head_only)
        if path == "/healthz":
            ok = self._is_alive()
            return _response(200 if ok else 503, b"ok\n" if ok else b"stalled\n", head_only=head_only)
        return _response(404, b"not found\n", head_only=head_only)

    def _is_alive(self) -> bool:
        try:
            return bool(self.alive())
        except Exception:
            if not self._alive_failed:
                self._alive_failed = True
                log.exception("healthz_check_failed (answered 503 until it works)")
            return False


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: Iterable[tuple[str, str]] = (),
) -> bytes:
    headers = [
        f"HTTP/1.0 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head_only else body)


async def serve(
    metrics: Metrics,
    host: str,
    port: int,
    alive: Callable[[], bool],
    *,
    timeout: float = REQUEST_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> asyncio.Server:
    """Serve /metrics and /healthz on host:port (port 0: any free one, read it from the
    server's sockets) in the running loop, until the server is closed:
    `server.close(); await server.wait_closed()`. `alive()` is called on the loop at
    every /healthz; it must be quick. Raises OSError when the address cannot be bound."""
    responder = _Responder(metrics, alive, timeout, max_connections)
    return await asyncio.start_server(responder, host, port, limit=MAX_REQUEST_BYTES)
