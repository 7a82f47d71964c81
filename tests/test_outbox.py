"""The outbox drainer: sent once, transient failures retried with backoff, permanent
failures dead and visible, dead rows retried on request. Real SQLite and PostgreSQL,
injected clock."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watchdesk.models import Alert, DeliveryResult
from watchdesk.notify.console import ConsoleChannel, render
from watchdesk.outbox import MAX_ATTEMPTS, Drainer, retry_delay
from watchdesk.store import outbox as outbox_store
from watchdesk.store.engine import Store, open_database


class Receiver:
    """A channel standing in for a remote service: answers from a script of results."""

    def __init__(self, name: str, script: list[DeliveryResult] | None = None):
        self.name = name
        self.script = list(script or [])
        self.received: list[Alert] = []

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        result = self.script.pop(0) if self.script else DeliveryResult(True)
        if result.ok:
            self.received.append(alert)
        return result

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def alert(title: str = "Darknet market shut down") -> Alert:
    return Alert(
        watchlist="opioids",
        title=title,
        link="https://news.example/story",
        outlet="Metro",
        published=datetime(2026, 11, 2, 23, 0, tzinfo=UTC),
        terms=("fentanyl",),
        snippet="pills that contained fentanyl, the synthetic opioid",
        snippet_marks=((21, 29),),
    )


@pytest.fixture
def db(tmp_path: Path, database: str):  # type: ignore[no-untyped-def]
    """The outbox on each store: an SQLite file, then a PostgreSQL database."""
    opened = open_database(tmp_path / database if database == "watchdesk.db" else database)
    yield opened
    opened.close()


def enqueue(db, key: str, channel: str = "remote", title: str = "t") -> None:  # type: ignore[no-untyped-def]
    with db.atomic():
        assert outbox_store.enqueue(db, key, channel, alert(title), hit_id=None, now=1_800_000_000.0)


def test_idempotency_key_is_unique(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    with db.atomic():
        assert not outbox_store.enqueue(db, "k1", "remote", alert(), hit_id=None, now=0)
    assert outbox_store.counts(db) == {"pending": 1}


def test_delivered_once_and_marked_sent(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    enqueue(db, "k2", title="second")
    receiver = Receiver("remote")
    drainer = Drainer(Store(db), {"remote": receiver}, Clock(), lambda: 0.0)
    assert asyncio.run(drainer.drain()).sent == 2
    assert asyncio.run(drainer.drain()).sent == 0
    assert [a.title for a in receiver.received] == ["t", "second"]
    assert outbox_store.counts(db) == {"sent": 2}
    assert receiver.received[0] == alert("t")  # the payload round-trips through SQLite


def test_transient_failure_retries_with_backoff_then_delivers(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    clock = Clock()
    receiver = Receiver("remote", [DeliveryResult(False, "451 try later"), DeliveryResult(False, "timeout")])
    drainer = Drainer(Store(db), {"remote": receiver}, clock, lambda: 0.0)
    assert asyncio.run(drainer.drain()).retrying == 1
    row = outbox_store.list_rows(db)[0]
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "451 try later")
    assert row.next_attempt_at == clock.now + retry_delay(1, lambda: 0.0)
    assert asyncio.run(drainer.drain()).sent == 0  # not due yet
    clock.now = row.next_attempt_at
    asyncio.run(drainer.drain())
    second = outbox_store.list_rows(db)[0]
    assert (
        second.next_attempt_at - clock.now == retry_delay(2, lambda: 0.0) == 2 * retry_delay(1, lambda: 0.0)
    )
    clock.now = second.next_attempt_at
    assert asyncio.run(drainer.drain()).sent == 1
    assert len(receiver.received) == 1


def test_retry_after_is_honoured(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    clock = Clock()
    receiver = Receiver("remote", [DeliveryResult(False, "429", retry_after=900)])
    asyncio.run(Drainer(Store(db), {"remote": receiver}, clock, lambda: 0.0).drain())
    assert outbox_store.list_rows(db)[0].next_attempt_at == clock.now + 900


def test_permanent_failure_is_dead_visible_and_retryable(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    clock = Clock()
    receiver = Receiver("remote", [DeliveryResult(False, "550 no such user", permanent=True)])
    drainer = Drainer(Store(db), {"remote": receiver}, clock, lambda: 0.0)
    assert asyncio.run(drainer.drain()).dead == 1
    dead = outbox_store.list_rows(db, "dead")
    assert len(dead) == 1 and dead[0].last_error == "550 no such user"
    assert outbox_store.retry(db, clock.now, row_id=dead[0].id) == 1
    assert asyncio.run(drainer.drain()).sent == 1


def test_too_many_attempts_go_dead(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    clock = Clock()
    receiver = Receiver("remote", [DeliveryResult(False, "down")] * MAX_ATTEMPTS)
    drainer = Drainer(Store(db), {"remote": receiver}, clock, lambda: 0.0)
    for _ in range(MAX_ATTEMPTS):
        clock.now += 10 * 3600
        asyncio.run(drainer.drain())
    row = outbox_store.list_rows(db)[0]
    assert row.status == "dead" and row.attempts == MAX_ATTEMPTS
    assert row.last_error is not None and row.last_error.startswith(f"{MAX_ATTEMPTS} attempts failed")


def test_a_failing_channel_is_tried_once_per_round_and_others_still_deliver(db) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        enqueue(db, f"bad{i}", channel="remote")
    enqueue(db, "good", channel="console")
    stream = io.StringIO()
    failing = Receiver("remote", [DeliveryResult(False, "connection refused")] * 10)
    drainer = Drainer(
        Store(db), {"remote": failing, "console": ConsoleChannel(stream=stream)}, Clock(), lambda: 0.0
    )
    summary = asyncio.run(drainer.drain())
    assert (summary.sent, summary.retrying) == (1, 1)
    assert "[watchdesk] opioids: t" in stream.getvalue()


def test_rows_for_an_unconfigured_channel_go_dead_with_the_reason(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1", channel="removed")
    asyncio.run(Drainer(Store(db), {}, Clock(), lambda: 0.0).drain())
    assert outbox_store.list_rows(db, "dead")[0].last_error == "channel 'removed' is not configured"


def test_console_strips_control_and_bidi_characters() -> None:
    hostile = Alert(
        watchlist="w",
        title="Evil\x1b[2J\u202etitle\x07",
        link="https://x.example/\x1b]8;;",
        outlet="Out\u2066let",
        published=None,
        terms=("t",),
        snippet="line\rbreak \x9b31m red",
    )
    text = render(hostile)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text and "\x9b" not in text
    assert "\u2066" not in text and "\r" not in text
    assert "Evil[2Jtitle" in text


def test_console_marks_matched_terms() -> None:
    assert "*fentanyl*" in render(alert())


def test_rows_of_an_unavailable_channel_wait_pending(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1", channel="desk")
    enqueue(db, "k2", channel="remote")
    receiver = Receiver("remote")
    drainer = Drainer(
        Store(db), {"remote": receiver}, Clock(), lambda: 0.0, {"desk": "password: env:X is not set"}
    )
    assert asyncio.run(drainer.drain()).sent == 1
    assert [(r.channel, r.status, r.attempts) for r in outbox_store.list_rows(db, "pending")] == [
        ("desk", "pending", 0)
    ]


def test_every_attempt_is_recorded(db) -> None:  # type: ignore[no-untyped-def]
    enqueue(db, "k1")
    clock = Clock()
    receiver = Receiver(
        "remote", [DeliveryResult(False, "451 try later"), DeliveryResult(True, "250 queued")]
    )
    drainer = Drainer(Store(db), {"remote": receiver}, clock, lambda: 0.0)
    asyncio.run(drainer.drain())
    clock.now += 3600
    asyncio.run(drainer.drain())
    row = outbox_store.list_rows(db)[0]
    attempts = outbox_store.attempts_of(db, row.id)
    assert [(at, ok, message) for at, ok, message, _ms in attempts] == [
        (1_800_000_000.0, False, "451 try later"),
        (1_800_003_600.0, True, "250 queued"),
    ]
