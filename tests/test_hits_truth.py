"""`watchdesk hits` tells the truth: what each hit queued, where, in what state, and why
a hit queued nothing (another feed's copy already alerted, outside the backfill window),
all derived from the outbox, the entries and the feeds, not from a stored flag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write_config
from server import LocalServer

from watchdesk.cli.main import main
from watchdesk.config import load_config
from watchdesk.runtime import Runtime

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # when ABC7 Chicago is polled (in the past)
T1 = datetime(2026, 11, 2, 9, 40, tzinfo=UTC)  # when Wire is polled, carrying the same story

OPIOIDS = "match = ['fentanyl']\nnotify = ['console', 'hook']\n"
SEIZURES = "match = ['seizure']\nnotify = ['console']\ndelivery = 'daily 08:00'\n"
HOOK = """
[channel.hook]
type = "webhook"
url = "{url}"
"""


class Clock:
    def __init__(self, when: datetime):
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


def item(title: str, guid: str, link: str, published: datetime, text: str) -> str:
    return (
        f"<item><title>{title}</title><guid>{guid}</guid><link>{link}</link>"
        f"<pubDate>{format_datetime(published)}</pubDate><description>{text}</description></item>"
    )


def rss(name: str, items: list[str]) -> bytes:
    body = "".join(items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name}</title>{body}</channel></rss>'.encode()


@dataclass
class Desk:
    config: Path
    story: str  # the story's URL, without the feeds' tracking parameters


@pytest.fixture
def desk(tmp_path: Path, server: LocalServer) -> Iterator[Desk]:
    """Two feeds polled for real, ten minutes apart, carrying the same story."""
    story = server.url("/story/fentanyl-bust")
    server.route(
        "/abc7.xml",
        rss(
            "ABC7 Chicago",
            [
                item(
                    "Fentanyl bust on the South Side",
                    "abc7-1",
                    story + "?utm_source=abc7",
                    datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
                    "Agents seized fentanyl pills.",
                ),
                item(
                    "Port seizure of counterfeit pills",
                    "abc7-2",
                    server.url("/story/port"),
                    datetime(2026, 11, 2, 7, 0, tzinfo=UTC),
                    "A record seizure at the port.",
                ),
                item(
                    "Fentanyl case from last year closes",
                    "abc7-3",
                    server.url("/story/old"),
                    datetime(2025, 10, 1, 12, 0, tzinfo=UTC),
                    "An old fentanyl case.",
                ),
            ],
        ),
    )
    server.route(
        "/wire.xml",
        rss(
            "Wire",
            [
                item(
                    "Chicago agents seize fentanyl",
                    "wire-1",
                    story + "?utm_source=wire&utm_medium=rss",
                    datetime(2026, 11, 2, 8, 30, tzinfo=UTC),
                    "Fentanyl pills seized in Chicago.",
                )
            ],
        ),
    )
    server.route("/hook", b"no such hook", status=400)  # a permanent failure: the delivery goes dead
    config = write_config(
        tmp_path,
        [
            {"url": server.url("/abc7.xml"), "name": "ABC7 Chicago", "fetch_article": "never"},
            {"url": server.url("/wire.xml"), "name": "Wire", "fetch_article": "never"},
        ],
        {"opioids": OPIOIDS, "seizures": SEIZURES},
        extra=HOOK.format(url=server.url("/hook")),
    )
    clock = Clock(T0)
    rt = Runtime(load_config(config), clock=clock, rand=lambda: 0.0)
    try:
        feeds = {row.name: row for row in rt.all_feeds()}
        asyncio.run(rt.poll_feeds([feeds["ABC7 Chicago"]]))
        asyncio.run(rt.drain())
        clock.now = T1.timestamp()
        summary = asyncio.run(rt.poll_feeds([feeds["Wire"]]))
        assert (summary.new_entries, summary.hits, summary.alerts_queued) == (1, 1, 0)
        asyncio.run(rt.drain())
    finally:
        asyncio.run(rt.aclose())
    yield Desk(config, story)


def hits(desk: Desk, *args: str, grouped: bool = False) -> str:
    """`watchdesk hits`, each copy on its own (--all-copies) unless `grouped`."""
    extra = [] if grouped else ["--all-copies"]
    result = CliRunner().invoke(main, ["--config", str(desk.config), "hits", *extra, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def hits_json(desk: Desk, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in hits(desk, "--json", *args).splitlines()]


def by_title(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["title"]: row for row in rows}


def test_json_says_what_each_hit_queued_and_why_not(desk: Desk) -> None:
    rows = hits_json(desk)
    assert [r["feed"] for r in rows] == [
        "Wire",
        "ABC7 Chicago",
        "ABC7 Chicago",
        "ABC7 Chicago",
    ]  # newest first
    assert [r["id"] for r in rows[1:]] == sorted((r["id"] for r in rows[1:]), reverse=True)
    found = by_title(rows)
    first = found["Fentanyl bust on the South Side"]
    copy = found["Chicago agents seize fentanyl"]
    old = found["Fentanyl case from last year closes"]
    digest = found["Port seizure of counterfeit pills"]

    assert copy["alerted"] is False, "a copy whose alert the outbox suppressed is not alerted"
    assert first["alerted"] is True
    assert [(d["channel"], d["status"], d["digest"]) for d in first["alerted_to"]] == [
        ("console", "sent", None),
        ("hook", "dead", None),
    ]
    assert first["alerted_to"][0]["sent_at"] == "2026-11-02T09:30:00Z"
    assert first["alerted_to"][1]["sent_at"] is None
    assert first["duplicate_of"] is None and first["outside_backfill"] is False and first["digest"] is None
    assert first["created_at"] == "2026-11-02T09:30:00Z"
    assert first["published"] == "2026-11-02T08:00:00Z"
    assert first["story"] == desk.story

    assert copy["alerted"] is False and copy["alerted_to"] == []
    assert copy["duplicate_of"] == first["id"]
    assert copy["duplicate_of_feed"] == "ABC7 Chicago"
    assert copy["outside_backfill"] is False and copy["digest"] is None
    assert copy["created_at"] == "2026-11-02T09:40:00Z" and copy["story"] == desk.story

    assert old["alerted"] is False and old["alerted_to"] == []
    assert old["outside_backfill"] is True and old["duplicate_of"] is None
    assert old["published"] == "2025-10-01T12:00:00Z"

    window = {"title": "Daily digest, until Tue 03 Nov 2026 08:00 UTC", "window_end": "2026-11-03T08:00:00Z"}
    assert digest["alerted"] is True and digest["digest"] == window
    assert [(d["channel"], d["status"], d["digest"]) for d in digest["alerted_to"]] == [
        ("console", "pending", window)
    ]
    assert digest["duplicate_of"] is None and digest["outside_backfill"] is False


def test_text_says_the_same_in_utc(desk: Desk) -> None:
    rows = {r["title"]: r["id"] for r in hits_json(desk)}
    first = rows["Fentanyl bust on the South Side"]
    blocks = {b.splitlines()[0]: b for b in ("\n" + hits(desk)).split("\nhit ")[1:]}

    def block(title: str) -> str:
        (found,) = [b for head, b in blocks.items() if head.endswith(title)]
        return found

    copy = block("Chicago agents seize fentanyl")
    assert copy.startswith(f"{rows['Chicago agents seize fentanyl']}  2026-11-02 09:40:00 UTC  opioids  ")
    assert "Wire | published 2026-11-02 08:30:00 UTC |" in copy
    assert f"not alerted: duplicate of hit {first} (ABC7 Chicago)" in copy

    original = block("Fentanyl bust on the South Side")
    assert "2026-11-02 09:30:00 UTC" in original
    assert "alerted: console (sent 2026-11-02 09:30:00 UTC), hook (dead)" in original
    assert "not alerted" not in original

    assert "not alerted: stored outside the backfill window" in block("Fentanyl case from last year closes")
    assert "alerted: console (pending, waiting for Daily digest, until Tue 03 Nov 2026 08:00 UTC)" in block(
        "Port seizure of counterfeit pills"
    )


def test_filters(desk: Desk) -> None:
    def titles(*args: str) -> list[str]:
        return sorted(r["title"] for r in hits_json(desk, *args))

    abc7 = [
        "Fentanyl bust on the South Side",
        "Fentanyl case from last year closes",
        "Port seizure of counterfeit pills",
    ]
    assert titles("--feed", "abc7 CHICAGO") == abc7
    assert titles("--feed", "wire") == ["Chicago agents seize fentanyl"]
    assert titles("--feed", "nowhere") == []
    assert titles("--alerted") == ["Fentanyl bust on the South Side", "Port seizure of counterfeit pills"]
    assert titles("--not-alerted") == ["Chicago agents seize fentanyl", "Fentanyl case from last year closes"]
    assert titles("--feed", "Wire", "--alerted") == []
    assert titles("--watchlist", "seizures") == ["Port seizure of counterfeit pills"]
    assert titles("--watchlist", "opioids", "--not-alerted", "--feed", "ABC7 Chicago") == [
        "Fentanyl case from last year closes"
    ]
    assert titles("--since", "3650d") == sorted(abc7 + ["Chicago agents seize fentanyl"])
    assert titles("--since", "1d") == []  # everything was stored on 2 November 2026
    assert titles("--limit", "1") == ["Chicago agents seize fentanyl"]
    newest_alerted = hits_json(desk, "--alerted")[0]["title"]
    assert titles("--alerted", "--limit", "1") == [newest_alerted]  # filtered, then limited
    assert newest_alerted != "Chicago agents seize fentanyl"
    assert hits(desk, "--feed", "wire", "--alerted") == ""


def test_by_default_a_copy_shows_under_its_story(desk: Desk) -> None:
    """The Wire copy is not listed again: it is under the hit that alerted."""
    rows = [json.loads(line) for line in hits(desk, "--json", grouped=True).splitlines()]
    lead = next(r for r in rows if r["title"] == "Fentanyl bust on the South Side")
    assert [c["feed"] for c in lead["copies"]] == ["Wire"]
    assert not any(r["feed"] == "Wire" and r["watchlist"] == "opioids" for r in rows)
    text = hits(desk, grouped=True)
    assert "also in: Wire (hit " in text
