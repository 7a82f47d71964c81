"""Trust it unattended: no entry lost to the per-poll cap, health that tells the truth,
one alert per feed-health incident, tools that only read, a clean start and stop.

Real parts: feeds served over HTTP on 127.0.0.1, email through a real SMTP server
(aiosmtpd), Slack messages to a local receiver, SQLite files; an injected clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_config
from server import LocalServer, Reply, Request
from smtp_fixture import smtp_server
from test_crash_safety import MailRecorder

from watchdesk.cli import main
from watchdesk.config import load_config
from watchdesk.runtime import Runtime
from watchdesk.store.feeds import FeedRow, get_feed

START = 1_750_000_000.0
HOUR = 3600.0
DAY = 86400.0
RSS_TYPE = {"Content-Type": "application/rss+xml; charset=utf-8"}
WATCHLIST = 'match = ["fentanyl"]\nnotify = ["desk"]\n'


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rss(base: str, numbers: range, *, newest: float, spacing: float = 60) -> bytes:
    """RSS items numbered `numbers`, the highest number newest, `spacing` seconds apart."""
    items = []
    for i in sorted(numbers, reverse=True):
        when = datetime.fromtimestamp(newest, UTC) - timedelta(seconds=spacing * (max(numbers) - i))
        link = f"{base}/story/{i:05d}"
        items.append(
            f"<item><title>Seizure {i}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>{format_datetime(when)}</pubDate>"
            f"<description>Police seized fentanyl pills in case {i}.</description></item>"
        )
    head = "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Metro</title>"
    return (head + "".join(items) + "</channel></rss>").encode()


def email_channel(port: int) -> str:
    return f"""
        [channel.desk]
        type = "email"
        smtp = "smtp://127.0.0.1:{port}"
        tls = "none"
        from = "watchdesk@example.org"
        to = ["desk@example.org"]
        """


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for rt in made:
        asyncio.run(rt.aclose())


def runtime(config: Path, clock: Clock, made: list[Runtime]) -> Runtime:
    rt = Runtime(load_config(config), clock=clock, rand=lambda: 0.5)
    made.append(rt)
    return rt


def only_feed(rt: Runtime) -> FeedRow:
    (row,) = rt.all_feeds()
    return row


def poll_due(rt: Runtime) -> int:
    """What the daemon's tick does: poll every due feed; how many were polled."""
    rows = rt.due_feeds()
    asyncio.run(rt.poll_feeds(rows))
    return len(rows)


# ---- no entry lost ---------------------------------------------------------------------


def test_250_new_items_are_all_stored_and_alerted_exactly_once(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    """The cap (100 per poll) defers, never drops: the rest wait, the feed is polled again
    within seconds (not its 15 minutes), and all 250 reach the SMTP server once each."""
    recorder = MailRecorder()
    with smtp_server(recorder) as port:
        server.route("/feed", body=rss(server.base, range(1, 3), newest=START - 60), headers=RSS_TYPE)
        config = write_config(
            tmp_path,
            [{"url": server.url("/feed"), "name": "Metro"}],
            {"opioids": WATCHLIST},
            polling='interval = "15m"\nfetch_article = "never"\nbackfill = "all"',
            extra=email_channel(port),
        )
        rt = runtime(config, clock, runtimes)
        assert poll_due(rt) == 1  # the first poll: 2 items
        asyncio.run(rt.drain())
        # A holiday's worth of press releases: 250 new items at once (the feed keeps 252).
        server.route("/feed", body=rss(server.base, range(1, 253), newest=START + 800), headers=RSS_TYPE)
        clock.now += 900
        polls = 0
        while poll_due(rt):
            polls += 1
            row = only_feed(rt)
            if row.entries_waiting:
                assert row.next_check_at is not None and row.next_check_at - clock.now <= 10
            asyncio.run(rt.drain())
            clock.now += 10
            assert polls < 10
        assert polls == 3  # 100 + 100 + 50
        while asyncio.run(rt.drain()).sent:
            pass
        row = only_feed(rt)
        assert row.entries_waiting == 0
        assert row.body_hash is not None  # saved once everything in the body was in
        stored = rt.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        assert stored == 252
        subjects = [m.message["Subject"] for m in recorder.mails()]
    assert len(subjects) == 252 and len(set(subjects)) == 252
    assert {f"[watchdesk] opioids: Seizure {i}" for i in range(1, 253)} == set(subjects)


def test_waiting_entries_are_shown_by_feeds(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    server.route("/feed", body=rss(server.base, range(1, 131), newest=START), headers=RSS_TYPE)
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "Metro"}],
        {"opioids": 'match = ["fentanyl"]'},
        polling='fetch_article = "never"\nbackfill = "none"',
    )
    rt = runtime(config, clock, runtimes)
    poll_due(rt)
    out = CliRunner().invoke(main, ["--config", str(config), "feeds", "--json"])
    view = json.loads(out.output)
    assert view["entries_waiting"] == 30
    assert view["next_check_at"] == "2025-06-15T15:06:50Z"  # START + 10 s, ISO 8601 UTC
    text = CliRunner().invoke(main, ["--config", str(config), "feeds"]).output
    assert "30 new entries waiting" in text


def test_first_poll_backlog_keeps_its_backfill_window_across_polls(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    """A new feed's backlog drained over several polls alerts only what the backfill
    window allows, as one poll would have: the later polls are not 'after the first'."""
    recorder = MailRecorder()
    with smtp_server(recorder) as port:
        # 150 items, one minute apart, the newest now: 60 are within the last hour.
        server.route("/feed", body=rss(server.base, range(1, 151), newest=START), headers=RSS_TYPE)
        config = write_config(
            tmp_path,
            [{"url": server.url("/feed"), "name": "Metro"}],
            {"opioids": WATCHLIST},
            polling='fetch_article = "never"\nbackfill = "59m30s"',
            extra=email_channel(port),
        )
        rt = runtime(config, clock, runtimes)
        while poll_due(rt):
            clock.now += 10
        asyncio.run(rt.drain())
        assert rt.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 150
        assert recorder.count() == 60


def test_overflowing_feed_is_polled_more_often_then_relaxes(
    tmp_path: Path,
    server: LocalServer,
    clock: Clock,
    runtimes: list[Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every entry new at each poll, the oldest newer than our newest: it scrolled past
    us. Logged, counted, the interval halved down to min_interval, then doubled back."""
    server.route("/feed", body=rss(server.base, range(1, 21), newest=START, spacing=10), headers=RSS_TYPE)
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "Wire"}],
        {"opioids": 'match = ["fentanyl"]'},
        polling='interval = "16m"\nmin_interval = "4m"\nfetch_article = "never"\nbackfill = "none"',
    )
    rt = runtime(config, clock, runtimes)
    poll_due(rt)
    top = 20

    def grow_and_poll(new_items: int) -> float | None:
        """At its next check, the feed shows its newest 20 items, `new_items` of them new;
        the interval it is then given."""
        nonlocal top
        clock.now = only_feed(rt).next_check_at or clock.now
        top += new_items
        body = rss(server.base, range(top - 19, top + 1), newest=clock.now, spacing=10)
        server.route("/feed", body=body, headers=RSS_TYPE)
        poll_due(rt)
        row = only_feed(rt)
        return row.next_check_at - clock.now if row.next_check_at else None

    with caplog.at_level(logging.WARNING):  # 50 new between polls: 30 scrolled past unseen
        intervals = [grow_and_poll(50) for _ in range(3)]
    assert intervals == [8 * 60, 4 * 60, 4 * 60]
    assert only_feed(rt).overflows == 3
    assert sum("feed_overflow feed=Wire" in r.getMessage() for r in caplog.records) == 3
    view = json.loads(CliRunner().invoke(main, ["--config", str(config), "feeds", "--json"]).output)
    assert (view["effective_interval"], view["interval"], view["overflows"]) == (240, 960, 3)
    relaxed = [grow_and_poll(5) for _ in range(3)]  # 5 new per poll: it keeps up again
    assert relaxed == [8 * 60, 16 * 60, 16 * 60]
    assert only_feed(rt).effective_interval is None


# ---- health from what happened ---------------------------------------------------------


def test_html_page_with_last_modified_stays_failing(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    """The server answers 304 to validators of a body that never parsed; none are kept
    from such a body, so the feed is not 'ok' on the next poll."""
    stamp = "Mon, 06 Jan 2025 10:00:00 GMT"

    def page(req: Request) -> Reply:
        if req.headers.get("if-modified-since") == stamp:
            return Reply(304, headers={"Last-Modified": stamp})
        return Reply(
            200, b"<html><body>We moved!</body></html>", {"Content-Type": "text/html", "Last-Modified": stamp}
        )

    server.route("/feed", handler=page)
    config = write_config(tmp_path, [{"url": server.url("/feed"), "name": "Moved"}], {"w": 'match = ["x"]'})
    rt = runtime(config, clock, runtimes)
    for n in range(1, 4):
        clock.now = only_feed(rt).next_check_at or clock.now
        poll_due(rt)
        row = only_feed(rt)
        assert (row.status, row.consecutive_errors, row.last_success_at) == ("failing", n, None)
        assert row.last_error and row.last_error.startswith("not a feed")
        assert row.last_modified is None and row.body_hash is None
    assert rt.status_line().startswith("1 feed (1 failing, 0 stale)")


def test_feeds_shows_failing_since_and_stale(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    server.route("/ok", body=rss(server.base, range(1, 3), newest=START), headers=RSS_TYPE)
    server.route("/bad", body=b"", handler=lambda req: Reply(503, b"down"))
    config = write_config(
        tmp_path,
        [{"url": server.url("/ok"), "name": "Quiet"}, {"url": server.url("/bad"), "name": "Down"}],
        {"w": 'match = ["x"]'},
        polling='fetch_article = "never"\nmax_backoff = "1h"',
        extra='[health]\nstale_after = "2d"\n',
    )
    clock.now = time.time() - 73 * HOUR  # `feeds` reads the real clock: end an hour ago
    rt = runtime(config, clock, runtimes)
    poll_due(rt)
    first = clock.now
    for _ in range(12):  # three days of polls: Quiet answers (the same body), Down fails
        clock.now += 6 * HOUR
        poll_due(rt)
    views = {
        v["name"]: v
        for v in map(
            json.loads,
            CliRunner().invoke(main, ["--config", str(config), "feeds", "--json"]).output.splitlines(),
        )
    }
    assert views["Quiet"]["status"] == "stale"
    assert views["Down"]["status"] == "failing"
    assert views["Down"]["failing_since"] == datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = CliRunner().invoke(main, ["--config", str(config), "feeds"]).output
    assert "failing for 3d" in text
    assert "last entry 3d" in text
    assert rt.status_line().startswith("2 feeds (1 failing, 1 stale)")
    assert re.search(r"; database \d[\d,.]* (KB|MB)$", rt.status_line()), rt.status_line()  # its size
    assert re.search(rf"^database {re.escape(str(rt.config.database))}: \d[\d,.]* (KB|MB)$", text, re.M), text


# ---- health alerts ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hooks(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack webhook URLs are secrets: given through the environment, as users do."""
    monkeypatch.setenv("HOOK_URL", server.url("/hook"))
    monkeypatch.setenv("DEAD_URL", server.url("/dead"))


def health_config(tmp_path: Path, server: LocalServer, *, notify: bool) -> Path:
    server.route("/hook", b"ok")
    health = '[health]\nnotify = ["newsroom"]\nfailing_after = "24h"\nstale_after = "3d"\n' if notify else ""
    return write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "DOJ"}],
        {"w": 'match = ["fentanyl"]'},
        polling='fetch_article = "never"\nmax_backoff = "2h"',
        extra=f'{health}\n[channel.newsroom]\ntype = "slack"\nwebhook = "env:HOOK_URL"\n',
    )


def slack_messages(server: LocalServer) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in server.hits("/hook")]


def run_for(rt: Runtime, clock: Clock, hours: float) -> None:
    """The daemon's ticks over `hours` of the injected clock: polls when due, drains."""
    end = clock.now + hours * HOUR
    while clock.now < end:
        poll_due(rt)
        asyncio.run(rt.drain())
        clock.now += 15 * 60


@pytest.mark.parametrize("notify", [True, False], ids=["health-notify", "no-health-notify"])
def test_failing_feed_alerts_once_and_recovers_once(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime], notify: bool
) -> None:
    state = {"up": True}

    def feed(req: Request) -> Reply:
        if state["up"]:
            return Reply(200, rss(server.base, range(1, 3), newest=clock.now), RSS_TYPE)
        return Reply(503, b"maintenance")

    server.route("/feed", handler=feed)
    rt = runtime(health_config(tmp_path, server, notify=notify), clock, runtimes)
    run_for(rt, clock, 1)
    state["up"] = False
    run_for(rt, clock, 23)  # failing, but not yet for 24 h
    assert slack_messages(server) == []
    run_for(rt, clock, 30)
    state["up"] = True
    run_for(rt, clock, 4)
    messages = slack_messages(server)
    if not notify:
        assert messages == []
        return
    assert [m["text"] for m in messages] == [
        "[watchdesk] feed failing: DOJ",
        "[watchdesk] feed recovered: DOJ",
    ]
    failing = json.dumps(messages[0]["blocks"])
    assert "failing for 1d" in failing and "HTTP 503" in failing


def test_stale_feed_alerts_once(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    body = {"items": range(1, 3)}
    server.route(
        "/feed", handler=lambda req: Reply(200, rss(server.base, body["items"], newest=START), RSS_TYPE)
    )
    rt = runtime(health_config(tmp_path, server, notify=True), clock, runtimes)
    run_for(rt, clock, 5 * 24)  # answers 200 every time, nothing new for 5 days
    assert only_feed(rt).status == "stale"
    body["items"] = range(1, 4)  # it publishes again
    run_for(rt, clock, 1)
    assert only_feed(rt).status == "ok"
    texts = [m["text"] for m in slack_messages(server)]
    assert texts == ["[watchdesk] feed stale: DOJ", "[watchdesk] feed recovered: DOJ"]


def test_gone_feed_alerts_once(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    server.route("/feed", handler=lambda req: Reply(410, b"gone"))
    rt = runtime(health_config(tmp_path, server, notify=True), clock, runtimes)
    run_for(rt, clock, 3)
    assert [m["text"] for m in slack_messages(server)] == ["[watchdesk] feed gone: DOJ"]


def test_a_dead_delivery_raises_a_health_alert(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    server.route("/hook", b"ok")
    server.route("/dead", handler=lambda req: Reply(404, b"no such webhook"))
    server.route("/feed", body=rss(server.base, range(1, 2), newest=START), headers=RSS_TYPE)
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "DOJ"}],
        {"w": 'match = ["fentanyl"]\nnotify = ["broken"]'},
        polling='fetch_article = "never"\nbackfill = "all"',
        extra="""
            [health]
            notify = ["newsroom"]

            [channel.newsroom]
            type = "slack"
            webhook = "env:HOOK_URL"

            [channel.broken]
            type = "slack"
            webhook = "env:DEAD_URL"
            """,
    )
    rt = runtime(config, clock, runtimes)
    run_for(rt, clock, 1)
    messages = slack_messages(server)
    assert [m["text"] for m in messages] == ["[watchdesk] delivery dead: broken"]
    assert "Seizure 1" in json.dumps(messages[0]["blocks"])


# ---- tools read, the daemon writes ---------------------------------------------------------


def feeds_table(db_path: Path) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT * FROM feeds ORDER BY id").fetchall()


def test_feeds_with_another_config_changes_nothing_and_the_daemon_keeps_polling(
    tmp_path: Path, server: LocalServer, clock: Clock, runtimes: list[Runtime]
) -> None:
    server.route("/feed", body=rss(server.base, range(1, 3), newest=START), headers=RSS_TYPE)
    server.route("/other", body=rss(server.base, range(5, 6), newest=START), headers=RSS_TYPE)
    config = write_config(tmp_path, [{"url": server.url("/feed"), "name": "Metro"}], {"w": 'match = ["x"]'})
    rt = runtime(config, clock, runtimes)
    poll_due(rt)
    other_dir = tmp_path / "other"
    other = write_config(other_dir, [{"url": server.url("/other"), "name": "Other"}], {"w": 'match = ["x"]'})
    other.write_text(
        other.read_text().replace('database = "watchdesk.db"', f'database = "{tmp_path / "watchdesk.db"}"')
    )
    before = feeds_table(tmp_path / "watchdesk.db")
    runner = CliRunner()
    for command in (["feeds"], ["feeds", "--json"], ["hits"], ["outbox"], ["search", "x"]):
        runner.invoke(main, ["--config", str(other), *command])
    assert feeds_table(tmp_path / "watchdesk.db") == before
    out = runner.invoke(main, ["--config", str(other), "feeds"]).output
    assert "not in this config" in out and "Other" in out  # Other: configured, never polled
    clock.now += 900
    assert poll_due(rt) == 1  # the daemon's feed is still due and polled
    assert only_feed(rt).last_polled_at == clock.now


def test_a_row_without_config_is_skipped_and_said_once(
    tmp_path: Path,
    server: LocalServer,
    clock: Clock,
    runtimes: list[Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.route("/a", body=rss(server.base, range(1, 2), newest=START), headers=RSS_TYPE)
    server.route("/b", body=rss(server.base, range(2, 3), newest=START), headers=RSS_TYPE)
    both = write_config(
        tmp_path,
        [{"url": server.url("/a"), "name": "A"}, {"url": server.url("/b"), "name": "B"}],
        {"w": 'match = ["x"]'},
    )
    rt = runtime(both, clock, runtimes)
    asyncio.run(rt.aclose())
    runtimes.clear()
    only_a = write_config(tmp_path, [{"url": server.url("/a"), "name": "A"}], {"w": 'match = ["x"]'})
    rt = runtime(only_a, clock, runtimes)
    rt.db.execute("UPDATE feeds SET active = 1")  # B's row as another daemon's config keeps it
    rows = rt.due_feeds()
    assert {r.name for r in rows} == {"A", "B"}
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            summary = asyncio.run(rt.poll_feeds(rt.due_feeds()))
            assert not summary.errors
    said = [r.getMessage() for r in caplog.records if "feed_not_configured" in r.getMessage()]
    assert len(said) == 1 and "feed=B" in said[0]
    assert get_feed(rt.db, next(r.id for r in rows if r.name == "B")).last_polled_at is None


# ---- start and stop ---------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_sigterm_during_startup_exits_zero(tmp_path: Path, server: LocalServer) -> None:
    """Signal handlers come before anything slow: SIGTERM 0.2 s after start is a clean stop."""
    server.route("/feed", body=rss(server.base, range(1, 3), newest=time.time()), headers=RSS_TYPE)
    config = write_config(tmp_path, [{"url": server.url("/feed"), "name": "Metro"}], {"w": 'match = ["x"]'})
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.2)  # the moment of the signal, not a timing assertion
    proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err


def test_a_channel_whose_secret_is_missing_waits_and_delivers_after_a_reload(
    tmp_path: Path,
    server: LocalServer,
    clock: Clock,
    runtimes: list[Runtime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unresolvable secret does not stop the daemon: the channel is unavailable, its
    alerts wait in the outbox, and go out once it resolves on reload (SIGHUP)."""
    monkeypatch.delenv("LATER_URL", raising=False)
    server.route("/hook", b"ok")
    server.route("/feed", body=rss(server.base, range(1, 2), newest=START), headers=RSS_TYPE)
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "DOJ"}],
        {"w": 'match = ["fentanyl"]\nnotify = ["later"]'},
        polling='fetch_article = "never"\nbackfill = "all"',
        extra='[channel.later]\ntype = "slack"\nwebhook = "env:LATER_URL"\n',
    )
    rt = Runtime(load_config(config, check_secrets=False), clock=clock, rand=lambda: 0.5)
    runtimes.append(rt)
    assert "later" in rt.unavailable
    run_for(rt, clock, 1)
    assert slack_messages(server) == []
    assert rt.db.execute("SELECT status FROM outbox").fetchall() == [("pending",)]
    monkeypatch.setenv("LATER_URL", server.url("/hook"))
    rt.retry_unavailable_channels()
    asyncio.run(rt.drain())
    assert [m["text"] for m in slack_messages(server)] == ["[watchdesk] w: Seizure 1"]


# ---- no feed input crashes a poll ------------------------------------------------------

FUZZED_FEEDS = 300


def test_fuzzed_feeds_polled_end_to_end_never_crash(tmp_path: Path, server: LocalServer) -> None:
    """Mutated feeds served over HTTP and polled by the real pipeline (parse in its worker,
    store, match): no poll crashes, and every feed ends `ok` or `failing` with its error
    recorded. (tests/test_parse_fuzz.py puts 10,000+ variants through parse_feed itself.)"""
    from test_parse_fuzz import ATOM10, RDF, RSS20, variant

    seeds = {"rss": RSS20.encode(), "atom": ATOM10.encode(), "rdf": RDF.encode()}
    feeds = []
    for i in range(FUZZED_FEEDS):
        label = sorted(seeds)[i % 3]
        body, content_type, _names = variant(f"e2e-{label}", seeds[label], i)
        headers = {"Content-Type": content_type} if content_type else {}
        server.route(f"/fuzz/{i}", body=body, headers=headers)
        feeds.append({"url": server.url(f"/fuzz/{i}"), "name": f"fuzz-{i:03d}"})
    config = write_config(tmp_path, feeds, {"w": 'match = ["fentanyl"]'}, polling='fetch_article = "never"')
    rt = Runtime(load_config(config))
    try:
        summary = asyncio.run(rt.poll_feeds(rt.all_feeds()))
        rows = rt.all_feeds()
    finally:
        asyncio.run(rt.aclose())
    assert not [e for e in summary.errors if "internal error" in e]
    assert summary.feeds == FUZZED_FEEDS == len(rows)
    for row in rows:
        assert row.status in ("ok", "failing"), row
        if row.status == "failing":
            assert row.last_error and row.consecutive_errors == 1, row
    assert summary.fetched > FUZZED_FEEDS // 2  # most mutations still leave a readable feed


def test_a_feed_whose_entry_ids_change_every_request_is_not_drained_for_ever(
    tmp_path: Path,
    server: LocalServer,
    clock: Clock,
    runtimes: list[Runtime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """150 items whose GUIDs carry a per-request token: every entry is new at every poll.
    Draining stops once a poll leaves no fewer waiting: polled at its interval, not every 10 s."""
    served = {"n": 0}

    def feed(req: Request) -> Reply:
        served["n"] += 1
        body = rss(server.base, range(1, 151), newest=START).replace(
            b"<guid>", f"<guid>t{served['n']}-".encode()
        )
        return Reply(200, body, RSS_TYPE)

    server.route("/feed", handler=feed)
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "Tokens"}],
        {"w": 'match = ["x"]'},
        polling='interval = "15m"\nfetch_article = "never"\nbackfill = "none"',
    )
    rt = runtime(config, clock, runtimes)
    poll_due(rt)
    assert only_feed(rt).entries_waiting == 50
    clock.now += 10
    with caplog.at_level(logging.WARNING):
        poll_due(rt)
    row = only_feed(rt)
    assert row.entries_waiting == 0 and row.next_check_at == clock.now + 900
    assert any("unstable_entry_ids feed=Tokens" in r.getMessage() for r in caplog.records)
    assert asyncio.run(rt.poll_everything()).feeds == 1  # poll --once is one pass, not 1,000
