"""What every channel says, before any medium's escaping: the pieces of an alert, the
links we are willing to make, and a digest grouped by watchlist and story.

Feed strings come out of here unescaped (only flattened to one line where noted); each
channel escapes them for its medium (HTML, Slack mrkdwn, email headers, JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..models import Alert, Digest
from .sanitize import for_terminal, one_line

_WHITESPACE = re.compile(r"\s+")
MAX_LINK_CHARS = 2000
# Whitespace, controls and bidi characters: never inside a link we make.
_LINK_UNSAFE = set(
    "\u00a0\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def safe_link(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL with a host and nothing odd in it, else None.
    Only such URLs are ever made into links (javascript:, data:, relative... are not)."""
    if not url or len(url) > MAX_LINK_CHARS:
        return None
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in _LINK_UNSAFE for c in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return url


def published_text(when: datetime | None) -> str:
    if when is None:
        return "undated"
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def title_of(alert: Alert) -> str:
    return one_line(alert.title) or "(untitled)"


def outlet_of(alert: Alert) -> str:
    return one_line(alert.outlet or "") or "unknown outlet"


def heading(alert: Alert) -> str:
    """`[watchdesk] watchlist: title` (the email subject, the Slack fallback)."""
    tag = "[watchdesk TEST]" if alert.test else "[watchdesk]"
    if alert.kind == "health":  # its title says it all: "feed failing: NAME"
        return f"{tag} {title_of(alert)}"
    return f"{tag} {one_line(alert.watchlist)}: {title_of(alert)}"


def segments(text: str, marks: Iterable[tuple[int, int]]) -> list[tuple[str, bool]]:
    """`text` as (piece, marked) pieces, each cleaned of controls and bidi characters with
    whitespace runs made one space; marks that overlap or fall outside are ignored."""
    pos = 0
    pieces: list[tuple[str, bool]] = []
    for start, end in sorted(marks):
        if start < pos or end > len(text) or start >= end:
            continue
        if start > pos:
            pieces.append((text[pos:start], False))
        pieces.append((text[start:end], True))
        pos = end
    if pos < len(text):
        pieces.append((text[pos:], False))
    return [(_WHITESPACE.sub(" ", for_terminal(piece)), marked) for piece, marked in pieces]


def snippet_segments(alert: Alert) -> list[tuple[str, bool]]:
    return segments(alert.snippet, alert.snippet_marks)


def marked(text: str, marks: Iterable[tuple[int, int]], before: str = "*", after: str = "*") -> str:
    """Plain text with each matched span wrapped in markers (terminal output)."""
    return "".join(f"{before}{piece}{after}" if hit else piece for piece, hit in segments(text, marks))


def alert_text(alert: Alert) -> str:
    """The plain-text body of one alert (email text/plain, Apprise)."""
    if alert.kind == "health":
        link = safe_link(alert.link)
        return "\n".join([title_of(alert), "", one_line(alert.snippet), *([link] if link else [])]) + "\n"
    lines = [
        title_of(alert),
        f"{outlet_of(alert)} | {published_text(alert.published)} | watchlist: {one_line(alert.watchlist)}",
    ]
    link = safe_link(alert.link)
    if link:
        lines.append(link)
    if alert.terms:
        lines.append(f"Matched: {one_line(', '.join(alert.terms))}")
    also = also_in_text(alert.also_in)
    if also:
        lines.append(also[0].upper() + also[1:])
    snippet = one_line("".join(f"*{t}*" if marked else t for t, marked in snippet_segments(alert)))
    if snippet:
        lines += ["", snippet]
    if alert.test:
        lines += ["", "This is a test alert (watchdesk notify-test)."]
    return "\n".join(lines) + "\n"


# ---- digests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Story:
    """The alerts of one watchlist on one story, newest first."""

    key: str
    alerts: tuple[Alert, ...]

    @property
    def lead(self) -> Alert:
        return self.alerts[0]

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for a in self.alerts for t in a.terms))

    @property
    def also_in(self) -> tuple[str, ...]:
        """The other outlets that carried it (not the lead's own)."""
        names = dict.fromkeys(n for a in self.alerts for n in (a.outlet or "", *a.also_in) if n)
        return tuple(n for n in names if n != self.lead.outlet)


ALSO_IN_SHOWN = 2  # outlets named in "also in: A, B (+3)"; the rest counted


def also_in_text(outlets: tuple[str, ...]) -> str | None:
    """`also in: Outlet A, Outlet B (+3)`, or None when no other outlet carried it."""
    if not outlets:
        return None
    named = ", ".join(one_line(o) for o in outlets[:ALSO_IN_SHOWN])
    more = len(outlets) - ALSO_IN_SHOWN
    return f"also in: {named}" + (f" (+{more})" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class WatchlistGroup:
    watchlist: str
    stories: tuple[Story, ...]

    @property
    def count(self) -> int:
        return sum(len(s.alerts) for s in self.stories)


def story_key(alert: Alert) -> str:
    return alert.story_key or alert.link or alert.title


def group_alerts(alerts: Iterable[Alert]) -> list[WatchlistGroup]:
    """Group by watchlist, then story. The input is newest first (Digest's contract), so
    keeping first-appearance order makes every level newest first."""
    groups: dict[str, dict[str, list[Alert]]] = {}
    for alert in alerts:
        groups.setdefault(alert.watchlist, {}).setdefault(story_key(alert), []).append(alert)
    return [
        WatchlistGroup(name, tuple(Story(key, tuple(items)) for key, items in stories.items()))
        for name, stories in groups.items()
    ]


def plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def digest_count(digest: Digest) -> str:
    """e.g. `12 alerts on 7 stories in 2 watchlists`."""
    groups = group_alerts(digest.alerts)
    stories = sum(len(g.stories) for g in groups)
    text = f"{plural(len(digest.alerts), 'alert')} on {plural(stories, 'story', 'stories')}"
    if len(groups) > 1:
        text += f" in {len(groups)} watchlists"
    return text


def capped_note(digest: Digest) -> str | None:
    """The line saying how many alerts the hourly cap held back into this digest."""
    if digest.capped <= 0:
        return None
    were = "was" if digest.capped == 1 else "were"
    return f"{digest.capped} of these alerts {were} held back by this channel's hourly cap."


def story_line(story: Story) -> str:
    """`Title — Outlet, 2026-11-02 23:00 UTC (3 hits)`, one line, unescaped."""
    lead = story.lead
    line = f"{title_of(lead)} — {outlet_of(lead)}, {published_text(lead.published)}"
    if len(story.alerts) > 1:
        line += f" ({len(story.alerts)} hits)"
    also = also_in_text(story.also_in)
    return f"{line}; {also}" if also else line


def digest_text(digest: Digest) -> str:
    """The plain-text body of a digest (email text/plain, Apprise)."""
    lines = [f"{one_line(digest.title)}: {digest_count(digest)}"]
    note = capped_note(digest)
    if note:
        lines.append(note)
    for group in group_alerts(digest.alerts):
        lines += ["", f"== {one_line(group.watchlist)} ({plural(group.count, 'alert')}) =="]
        for story in group.stories:
            lines.append(f"* {story_line(story)}")
            link = safe_link(story.lead.link)
            if link:
                lines.append(f"  {link}")
            if story.terms:
                lines.append(f"  matched: {one_line(', '.join(story.terms))}")
    return "\n".join(lines) + "\n"
