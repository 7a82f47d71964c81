"""What every channel shows: safe links, header and Slack escaping, digests grouped by
watchlist and story (and the console's digest, which uses the same grouping)."""

from __future__ import annotations

import asyncio
import html
import io
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from watchdesk.models import Alert, Digest
from watchdesk.notify.console import ConsoleChannel
from watchdesk.notify.render import (
    alert_text,
    capped_note,
    digest_count,
    digest_text,
    group_alerts,
    published_text,
    safe_link,
    snippet_segments,
)
from watchdesk.notify.sanitize import header_text, one_line, slack_escape, slack_text

T0 = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)


def make_alert(
    title: str = "Darknet vendor charged",
    *,
    watchlist: str = "opioids",
    story: str = "https://news.example/a",
    minutes_ago: int = 0,
    link: str | None = "https://news.example/a",
    terms: tuple[str, ...] = ("fentanyl",),
) -> Alert:
    return Alert(
        watchlist=watchlist,
        title=title,
        link=link,
        outlet="Metro",
        published=T0 - timedelta(minutes=minutes_ago),
        terms=terms,
        snippet="pills that contained fentanyl, the synthetic opioid",
        snippet_marks=((21, 29),),
        story_key=story,
    )


# ---- links --------------------------------------------------------------------------


def test_safe_link_accepts_only_absolute_http_urls() -> None:
    assert safe_link("https://news.example/a?b=1&c=2") == "https://news.example/a?b=1&c=2"
    assert safe_link("HTTP://news.example/") == "HTTP://news.example/"
    for bad in [
        None,
        "",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "//news.example/a",
        "/relative/path",
        "http://",
        "https://news.example/a b",
        "https://news.example/\nSet-Cookie: x",
        "https://news.example/\u202eexe.txt",
        "https://[::1",
        "https://news.example/" + "a" * 2100,
    ]:
        assert safe_link(bad) is None, bad


# ---- email headers ------------------------------------------------------------------------

FORBIDDEN_IN_HEADERS = "\r\n\x00\t\x0b\x0c\x1b\x7f\x85\u2028\u2029\u202e\u2066"


def test_header_text_strips_line_breaks_and_controls() -> None:
    assert header_text("x\r\nBcc: evil@example.org") == "x Bcc: evil@example.org"
    assert header_text("a\u2028b\u2029c\x85d\x00e\u202ef") == "a b c d e f"
    assert header_text("  spaced \t out  ") == "spaced out"


def test_header_text_caps_length() -> None:
    capped = header_text("word " * 100)
    assert len(capped) == 200 and capped.endswith("…")
    assert header_text("short", max_chars=200) == "short"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400))
def test_header_text_never_leaves_a_forbidden_character(text: str) -> None:
    cleaned = header_text(text)
    assert len(cleaned) <= 200
    assert not any(c in cleaned for c in FORBIDDEN_IN_HEADERS)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in cleaned)


# ---- Slack escaping -------------------------------------------------------------------


def test_slack_escape_disarms_mentions_and_links() -> None:
    assert slack_escape("<!channel> & <@U123> <http://x|y> &lt;") == (
        "&lt;!channel&gt; &amp; &lt;@U123&gt; &lt;http://x|y&gt; &amp;lt;"
    )


def test_slack_text_cuts_without_splitting_an_entity() -> None:
    assert slack_text("a<b", 5) == "a…"  # "&lt;" does not fit whole: cut before it
    assert slack_text("<<<<", 9) == "&lt;&lt;…"
    assert slack_text("line\nbreak", 50) == "line break"


@given(st.text(max_size=300), st.integers(min_value=2, max_value=200))
def test_slack_text_fits_and_round_trips(text: str, limit: int) -> None:
    out = slack_text(text, limit)
    assert len(out) <= limit
    assert "<" not in out and ">" not in out
    shown = html.unescape(out.removesuffix("…")).rstrip()
    assert one_line(text).startswith(shown)


# ---- alerts ---------------------------------------------------------------------------


def test_snippet_segments_mark_matched_terms_and_ignore_bad_marks() -> None:
    alert = make_alert()
    assert snippet_segments(alert) == [
        ("pills that contained ", False),
        ("fentanyl", True),
        (", the synthetic opioid", False),
    ]
    odd = Alert("w", "t", None, None, None, (), "abc\ndef", snippet_marks=((1, 2), (1, 3), (5, 99), (2, 2)))
    assert snippet_segments(odd) == [("a", False), ("b", True), ("c def", False)]


def test_alert_text_has_every_part() -> None:
    text = alert_text(make_alert("Vendor\x1b[2J charged"))
    assert text.splitlines()[:4] == [
        "Vendor[2J charged",
        "Metro | 2026-11-02 23:00 UTC | watchlist: opioids",
        "https://news.example/a",
        "Matched: fentanyl",
    ]
    assert "*fentanyl*" in text
    assert "javascript" not in alert_text(make_alert(link="javascript:alert(1)"))


def test_published_text_is_utc() -> None:
    from zoneinfo import ZoneInfo

    assert published_text(datetime(2026, 1, 1, 12, 0, tzinfo=ZoneInfo("America/Chicago"))) == (
        "2026-01-01 18:00 UTC"
    )
    assert published_text(None) == "undated"


# ---- digests --------------------------------------------------------------------------


def sample_digest(capped: int = 0) -> Digest:
    alerts = (  # newest first, as Digest promises
        make_alert("Story A, second outlet", story="a", minutes_ago=1),
        make_alert("Story B", watchlist="weapons", story="b", minutes_ago=2),
        make_alert("Story C", story="c", minutes_ago=3),
        make_alert("Story A", story="a", minutes_ago=4, terms=("pills",)),
    )
    return Digest("Hourly digest, 22:00-23:00 UTC", alerts, capped=capped)


def test_digest_groups_by_watchlist_then_story_newest_first() -> None:
    groups = group_alerts(sample_digest().alerts)
    assert [g.watchlist for g in groups] == ["opioids", "weapons"]
    opioids = groups[0]
    assert [s.key for s in opioids.stories] == ["a", "c"]
    assert opioids.count == 3
    story_a = opioids.stories[0]
    assert [a.title for a in story_a.alerts] == ["Story A, second outlet", "Story A"]
    assert story_a.terms == ("fentanyl", "pills")


def test_digest_count_and_capped_note() -> None:
    assert digest_count(sample_digest()) == "4 alerts on 3 stories in 2 watchlists"
    assert capped_note(sample_digest()) is None
    assert capped_note(sample_digest(capped=1)) == (
        "1 of these alerts was held back by this channel's hourly cap."
    )
    assert "3 of these alerts were held back" in (capped_note(sample_digest(capped=3)) or "")


def test_digest_text_lists_groups_and_stories() -> None:
    text = digest_text(sample_digest(capped=2))
    lines = text.splitlines()
    assert lines[0] == "Hourly digest, 22:00-23:00 UTC: 4 alerts on 3 stories in 2 watchlists"
    assert lines[1] == "2 of these alerts were held back by this channel's hourly cap."
    assert "== opioids (3 alerts) ==" in lines and "== weapons (1 alert) ==" in lines
    assert "* Story A, second outlet — Metro, 2026-11-02 22:59 UTC (2 hits)" in lines
    assert lines.index("== opioids (3 alerts) ==") < lines.index("== weapons (1 alert) ==")


def test_console_digest_is_grouped_with_count_and_cap() -> None:
    stream = io.StringIO()
    result = asyncio.run(ConsoleChannel(stream=stream).send_digest(sample_digest(capped=2), key="d1"))
    assert result.ok
    out = stream.getvalue()
    assert out.startswith("[watchdesk] Hourly digest, 22:00-23:00 UTC: 4 alerts on 3 stories")
    assert "2 of these alerts were held back" in out
    assert out.index("opioids") < out.index("weapons") and "(2 hits)" in out
