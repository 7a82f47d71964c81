"""Digests and rate caps, with a frozen clock: each digest holds exactly the hits of its
window, once; a channel over max_per_hour folds the rest into the next digest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import write_config
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.digest import title, window_end
from watchdesk.models import Alert, DeliveryResult, Digest
from watchdesk.runtime import Runtime


class Recorder:
    """Stands in for a remote service: records what it is sent."""

    def __init__(self, name: str):
        self.name = name
        self.alerts: list[Alert] = []
        self.digests: list[Digest] = []
        self.keys: list[str] = []

    async def send(self, alert: Alert, *, key: str) -> DeliveryResult:
        self.alerts.append(alert)
        self.keys.append(key)
        return DeliveryResult(True)

    async def send_digest(self, digest: Digest, *, key: str) -> DeliveryResult:
        self.digests.append(digest)
        self.keys.append(key)
        return DeliveryResult(True)

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self, when: datetime):
        self.now = when.timestamp()

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def at(hour: int, minute: int, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def feed(titles: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{t}</title><guid>{t}</guid><link>https://news.example/{t.replace(' ', '-')}</link>"
        "<description>fentanyl seizure</description></item>"
        for t in titles
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{items}</channel></rss>'.encode()
    )


def runtime(
    tmp_path: Path,
    server: LocalServer,
    watchlist: str,
    clock: Clock,
    extra: str = '[channel.desk]\ntype = "console"\n',
) -> tuple[Runtime, Recorder]:
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "Wire", "fetch_article": "never"}],
        {"drugs": watchlist},
        polling='backfill = "all"',
        extra=extra,
    )
    recorder = Recorder("desk")
    return Runtime(
        load_config(config), clock=clock, rand=lambda: 0.0, channels={"console": recorder, "desk": recorder}
    ), recorder


def poll(rt: Runtime, server: LocalServer, titles: list[str]) -> None:
    server.route("/feed", feed(titles))
    asyncio.run(rt.poll_feeds(rt.all_feeds()))


def test_hourly_digest_holds_exactly_its_window(tmp_path: Path, server: LocalServer) -> None:
    clock = Clock(at(10, 20))
    rt, rec = runtime(
        tmp_path, server, "match = ['fentanyl']\nnotify = ['desk']\ndelivery = 'hourly'\n", clock
    )
    try:
        poll(rt, server, ["a1", "a2"])
        clock.set(at(10, 50))
        poll(rt, server, ["a1", "a2", "a3"])
        assert asyncio.run(rt.drain()).sent == 0 and rec.digests == []  # not before 11:00
        clock.set(at(11, 5))
        poll(rt, server, ["a1", "a2", "a3", "b1"])  # b1 belongs to the 11:00-12:00 window
        assert asyncio.run(rt.drain()).sent == 3
        assert len(rec.digests) == 1
        first = rec.digests[0]
        assert first.title == "Hourly digest, 10:00-11:00 UTC"
        assert sorted(a.title for a in first.alerts) == ["a1", "a2", "a3"]
        assert asyncio.run(rt.drain()).sent == 0  # once
        clock.set(at(12, 0))
        assert asyncio.run(rt.drain()).sent == 1
        assert [a.title for a in rec.digests[1].alerts] == ["b1"]
        assert rec.alerts == []
        assert len(set(rec.keys)) == 2
    finally:
        asyncio.run(rt.aclose())


def test_daily_digest_in_the_configured_timezone(tmp_path: Path, server: LocalServer) -> None:
    clock = Clock(at(13, 0))  # 07:00 in Chicago (CST, UTC-6)
    rt, rec = runtime(
        tmp_path,
        server,
        "match = ['fentanyl']\nnotify = ['desk']\ndelivery = 'daily 08:00'\n",
        clock,
    )
    try:
        rt.ctx.tz = rt.drainer.tz = ZoneInfo("America/Chicago")
        poll(rt, server, ["early"])  # before 08:00 Chicago: today's digest
        clock.set(at(14, 30))  # 08:30 Chicago: tomorrow's digest
        poll(rt, server, ["early", "late"])
        assert asyncio.run(rt.drain()).sent == 1
        assert [a.title for a in rec.digests[0].alerts] == ["early"]
        assert rec.digests[0].title.startswith("Daily digest, until Tue 24 Nov 2026 08:00")
        clock.set(at(14, 0, day=25))
        assert asyncio.run(rt.drain()).sent == 1
        assert [a.title for a in rec.digests[1].alerts] == ["late"]
    finally:
        asyncio.run(rt.aclose())


def test_rate_cap_folds_the_rest_into_the_next_digest(tmp_path: Path, server: LocalServer) -> None:
    clock = Clock(at(9, 15))
    extra = '[channel.desk]\ntype = "console"\nmax_per_hour = 2\n'
    rt, rec = runtime(tmp_path, server, "match = ['fentanyl']\nnotify = ['desk']\n", clock, extra)
    try:
        poll(rt, server, ["s1", "s2", "s3", "s4", "s5"])
        summary = asyncio.run(rt.drain())
        assert (summary.sent, summary.capped) == (2, 3)
        assert len(rec.alerts) == 2 and rec.digests == []
        clock.set(at(10, 0))
        summary = asyncio.run(rt.drain())
        assert summary.sent == 3
        digest = rec.digests[0]
        assert digest.capped == 3 and len(digest.alerts) == 3
        assert digest.title == "Alerts held back by the hourly cap, until 10:00 UTC"
        sent_titles = [a.title for a in rec.alerts] + [a.title for a in digest.alerts]
        assert sorted(sent_titles) == ["s1", "s2", "s3", "s4", "s5"]  # nothing dropped, nothing twice
    finally:
        asyncio.run(rt.aclose())


def test_window_arithmetic() -> None:
    utc = ZoneInfo("UTC")
    assert window_end("hourly", at(9, 0).timestamp(), utc) == at(10, 0).timestamp()
    assert window_end("hourly", at(9, 59).timestamp(), utc) == at(10, 0).timestamp()
    assert window_end("daily 08:00", at(8, 0).timestamp(), utc) == at(8, 0, day=25).timestamp()
    assert window_end("daily 08:00", at(7, 59).timestamp(), utc) == at(8, 0).timestamp()
    assert title("hourly", at(10, 0).timestamp(), utc) == "Hourly digest, 09:00-10:00 UTC"


def test_empty_digest_is_not_sent(tmp_path: Path, server: LocalServer) -> None:
    clock = Clock(at(10, 20))
    rt, rec = runtime(tmp_path, server, "match = ['heroin']\nnotify = ['desk']\ndelivery = 'hourly'\n", clock)
    try:
        poll(rt, server, ["a1"])
        clock.set(at(11, 1))
        asyncio.run(rt.drain())
        assert rec.digests == [] and rec.alerts == []
    finally:
        asyncio.run(rt.aclose())
