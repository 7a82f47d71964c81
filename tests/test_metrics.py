"""ops/metrics.py: the daemon's Prometheus metrics on a registry of its own, served with
/healthz from the running asyncio loop; bad requests are answered or closed, never a crash."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from watchdesk.models import PollSummary
from watchdesk.ops.metrics import Metrics, serve
from watchdesk.outbox import DrainSummary

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {"outcome", "status", "channel_type", "version", "node", "store"}


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def run(test: Callable[[Metrics, int, list[bool]], Awaitable[None]], **options: Any) -> list[dict[str, Any]]:
    """Run `test(metrics, port, alive)` against a server on 127.0.0.1; what the loop's
    exception handler was given (unhandled errors in the server) is returned."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        metrics = Metrics(version="9.9.9", channel_types=["slack"])
        alive = [True]
        server = await serve(metrics, "127.0.0.1", 0, lambda: alive[0], **options)
        try:
            await test(metrics, port_of(server), alive)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    return errors


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(answer.text)


async def raw(port: int, data: bytes, *, close: bool = True) -> bytes:
    """Send `data` as it is; what comes back before the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), timeout=5)
    except ConnectionResetError:  # closed with our bytes unread: the kernel resets
        return b""
    finally:
        writer.close()


def test_counters_move_after_observe_poll() -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        before = await scrape(port)
        assert value(before, "watchdesk_polls_total", outcome="changed") == 0
        assert value(before, "watchdesk_build_info", version="9.9.9", node="", store="sqlite") == 1
        metrics.observe_poll(PollSummary(feeds=1, fetched=1, new_entries=3, hits=2), 0.4)
        metrics.observe_poll(PollSummary(feeds=1, failed=1), 12.0)
        metrics.observe_poll(PollSummary(feeds=1, not_modified=1), 0.1)
        metrics.observe_poll(PollSummary(), 5.0)  # not polled (not in this config): no poll
        after = await scrape(port)
        for outcome, count in {"changed": 1, "failed": 1, "not_modified": 1, "unchanged": 0}.items():
            assert value(after, "watchdesk_polls_total", outcome=outcome) == count
        assert value(after, "watchdesk_entries_stored_total") == 3
        assert value(after, "watchdesk_hits_total") == 2
        assert value(after, "watchdesk_poll_duration_seconds_count") == 3
        assert value(after, "watchdesk_poll_duration_seconds_sum") == pytest.approx(12.5)
        assert value(after, "watchdesk_poll_duration_seconds_bucket", le="0.5") == 2

    assert run(test) == []


def test_deliveries_extractions_and_state() -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        assert (
            value(await scrape(port), "watchdesk_deliveries_total", channel_type="slack", outcome="dead") == 0
        )
        metrics.observe_drain(DrainSummary(sent=3, retrying=1), "slack")
        metrics.observe_delivery("email", "dead", 2)
        metrics.observe_extract("extracted", 0.2)
        metrics.observe_extract("skipped")
        with pytest.raises(ValueError):
            metrics.observe_delivery("email", "lost")
        with pytest.raises(ValueError):
            metrics.observe_extract("maybe")
        metrics.set_state(
            {"ok": 40, "failing": 2}, outbox_pending=5, oldest_pending_age=93.5, db_size=1 << 20
        )
        found = await scrape(port)
        assert value(found, "watchdesk_deliveries_total", channel_type="slack", outcome="sent") == 3
        assert value(found, "watchdesk_deliveries_total", channel_type="slack", outcome="retrying") == 1
        assert value(found, "watchdesk_deliveries_total", channel_type="email", outcome="dead") == 2
        assert value(found, "watchdesk_articles_extracted_total", outcome="extracted") == 1
        assert value(found, "watchdesk_articles_extracted_total", outcome="skipped") == 1
        assert value(found, "watchdesk_extract_duration_seconds_count") == 1
        assert value(found, "watchdesk_feeds", status="ok") == 40
        assert value(found, "watchdesk_feeds", status="failing") == 2
        assert value(found, "watchdesk_feeds", status="stale") == 0
        assert value(found, "watchdesk_outbox_pending") == 5
        assert value(found, "watchdesk_outbox_oldest_pending_age_seconds") == 93.5
        assert value(found, "watchdesk_db_size_bytes") == 1 << 20
        metrics.set_state({"ok": 41}, outbox_pending=0, oldest_pending_age=None, db_size=1 << 20)
        found = await scrape(port)
        assert value(found, "watchdesk_feeds", status="failing") == 0  # gone from the counts: 0
        assert value(found, "watchdesk_outbox_oldest_pending_age_seconds") == 0

    assert run(test) == []


def test_names_follow_the_conventions_and_no_label_names_a_feed() -> None:
    metrics = Metrics(version="1")
    families = list(
        text_string_to_metric_families(prometheus_client.generate_latest(metrics.registry).decode())
    )
    ours = {f.name: f for f in families if f.name.startswith("watchdesk_")}
    assert set(ours) == {
        "watchdesk_polls",
        "watchdesk_poll_duration_seconds",
        "watchdesk_feeds",
        "watchdesk_feed_claim_seconds",
        "watchdesk_feeds_claimed",
        "watchdesk_entries_stored",
        "watchdesk_articles_extracted",
        "watchdesk_extract_duration_seconds",
        "watchdesk_hits",
        "watchdesk_deliveries",
        "watchdesk_outbox_pending",
        "watchdesk_outbox_oldest_pending_age_seconds",
        "watchdesk_db_size_bytes",
        "watchdesk_build_info",
    }
    for family in ours.values():
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, (family.name, sample.labels)
    # Our own registry: nothing in the global one, and two instances do not collide.
    assert not any(name.startswith("watchdesk_") for name in prometheus_client.REGISTRY._names_to_collectors)
    Metrics(version="2")


def test_healthz_follows_alive() -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            ok = await client.get(f"http://127.0.0.1:{port}/healthz")
            assert (ok.status_code, ok.text) == (200, "ok\n")
            alive[0] = False
            stalled = await client.get(f"http://127.0.0.1:{port}/healthz")
            assert (stalled.status_code, stalled.text) == (503, "stalled\n")
            alive[0] = True
            assert (await client.get(f"http://127.0.0.1:{port}/healthz?probe=1")).status_code == 200
            head = await client.head(f"http://127.0.0.1:{port}/healthz")
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "3"

    assert run(test) == []


def test_an_alive_check_that_raises_is_503_said_once(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))

        def alive() -> bool:
            raise RuntimeError("bug")

        server = await serve(Metrics(version="1"), "127.0.0.1", 0, alive)
        try:
            for _ in range(2):
                answer = await raw(port_of(server), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert answer.startswith(b"HTTP/1.0 503 ")
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.ERROR, logger="watchdesk.ops.metrics"):
        asyncio.run(main())
    assert errors == []
    assert [r.getMessage() for r in caplog.records].count(
        "healthz_check_failed (answered 503 until it works)"
    ) == 1


def test_openmetrics_when_the_scraper_asks() -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"},
            )
        assert answer.headers["content-type"].startswith("application/openmetrics-text")
        assert answer.text.endswith("# EOF\n")

    assert run(test) == []


def test_bad_requests_are_answered_or_closed_without_an_exception(caplog: pytest.LogCaptureFixture) -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        assert (await raw(port, b"hello\r\n\r\n")).startswith(b"HTTP/1.0 400 ")
        assert (await raw(port, b"GET /metrics\r\n\r\n")).startswith(b"HTTP/1.0 400 ")
        assert (await raw(port, b"GET /metrics HTTP/1.1\r\nX: \xff\r\n\r\n")).startswith(b"HTTP/1.0 400 ")
        answer = await raw(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        assert answer.startswith(b"HTTP/1.0 405 ") and b"Allow: GET, HEAD" in answer
        assert (await raw(port, b"GET /nothing HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 404 ")
        assert (await raw(port, b"GET http://x/metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 400 ")
        huge = b"GET /metrics HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n"
        answer = await raw(port, huge)
        assert answer == b"" or answer.startswith(b"HTTP/1.0 431 ")  # answered, or reset mid-send
        assert await raw(port, b"GET /metr") == b""  # half a request, then EOF: closed
        assert await raw(port, b"") == b""  # nothing at all
        # A client that sends half a request and waits: closed after the timeout.
        started = asyncio.get_running_loop().time()
        assert await raw(port, b"GET /metrics HTTP/1.1\r\n", close=False) == b""
        assert asyncio.get_running_loop().time() - started < 3
        # Connected and gone without a word.
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.abort()
        await asyncio.sleep(0.05)
        # Still serving.
        assert (
            value(await scrape(port), "watchdesk_build_info", version="9.9.9", node="", store="sqlite") == 1
        )

    with caplog.at_level(logging.WARNING):
        assert run(test, timeout=0.3) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_connections_over_the_limit_are_closed_unanswered() -> None:
    async def test(metrics: Metrics, port: int, alive: list[bool]) -> None:
        _reader, holder = await asyncio.open_connection("127.0.0.1", port)  # sends nothing: held
        await asyncio.sleep(0.05)
        assert await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n") == b""
        holder.close()
        await asyncio.sleep(0.05)
        assert (await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 200 ")

    assert run(test, max_connections=1) == []
