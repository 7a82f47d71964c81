"""The types that flow between the stages. Plain frozen data, no I/O.

fetch.py   -> Fetched | NotModified | FetchFailed
parse.py   -> ParsedFeed (ParsedEntry, ...)
pipeline   -> Article (what the matcher reads)
match.py   -> list[Hit]
outbox     -> Alert (what a channel renders)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class FeedStatus(StrEnum):
    """Health of a feed as users see it in `watchdesk feeds`."""

    NEW = "new"  # never polled successfully yet
    OK = "ok"  # its last body parsed (or was unchanged since one that did)
    FAILING = "failing"  # errors continue; retried with backoff, never abandoned
    STALE = "stale"  # it answers, but has produced no new entry for [health] stale_after
    GONE = "gone"  # the server said 410: polling stopped, visibly


class FailureKind(StrEnum):
    HTTP = "http"  # an HTTP status we treat as failure
    GONE = "gone"  # 410
    RATE_LIMITED = "rate_limited"  # 429 / 503 (Retry-After honoured)
    TIMEOUT = "timeout"  # the total deadline passed
    TOO_LARGE = "too_large"  # body (or its inflation) over the byte cap
    NETWORK = "network"  # DNS, connect, TLS, protocol errors
    REFUSED = "refused"  # the network guard refused the address or scheme
    MALFORMED = "malformed"  # the body is not a feed we can read
    INTERNAL = "internal"  # a bug of ours while handling it: recorded, retried with backoff


# ---- fetch ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 200 with its body (already inflated, within the byte cap)."""

    url: str  # the URL finally answered (after redirects)
    body: bytes
    etag: str | None
    last_modified: str | None
    content_type: str | None
    permanent_url: str | None = None  # set when every redirect hop was 301/308


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304: nothing new. Validators are kept even when the server repeats them."""

    etag: str | None
    last_modified: str | None
    permanent_url: str | None = None


@dataclass(frozen=True, slots=True)
class FetchFailed:
    kind: FailureKind
    message: str
    status: int | None = None
    retry_after: float | None = None  # seconds, from Retry-After


FetchResult = Fetched | NotModified | FetchFailed


# ---- parse ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    key: str  # identity inside its feed: "guid:...", "link:..." or "hash:..."
    guid: str | None
    link: str | None
    title: str  # plain text
    summary: str  # plain text (HTML stripped)
    content: str  # plain text of the feed's full content, "" when the feed has none
    published: datetime | None  # aware, UTC
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str | None
    entries: tuple[ParsedEntry, ...]
    version: str = ""  # feedparser's format name ("rss20", "atom10"...); "" when not a feed
    malformed: str | None = None  # why the document is not well-formed, if it is not
    entries_dropped: int = 0  # entries over the per-poll cap (oldest dropped)


# ---- match ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Article:
    """What the matcher reads: plain text only, never markup."""

    title: str
    text: str
    url: str | None = None
    outlet: str | None = None
    published: datetime | None = None
    text_source: str = "summary"  # "page" | "feed content" | "summary"
    note: str | None = None  # why the page's text is not used, when it is not
    language: str | None = None
    page_title: str | None = None  # the page's own title and date, when it states them
    page_date: str | None = None


@dataclass(frozen=True, slots=True)
class Watchlist:
    name: str  # the file's stem
    match: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    notify: tuple[str, ...] = ("console",)
    description: str = ""
    feeds: tuple[str, ...] = ()  # feed names or tags; empty means every feed
    delivery: str = "immediate"
    case_sensitive_terms: tuple[str, ...] = ()
    source: str = ""  # file the watchlist came from, for messages
    lines: tuple[int, ...] = ()  # line of each `match` query in `source`


@dataclass(frozen=True, slots=True)
class TermMatch:
    term: str  # the query term that matched
    field: str  # "title" | "text"
    start: int  # character offsets into that field's stored text
    end: int


@dataclass(frozen=True, slots=True)
class Hit:
    watchlist: str
    query: str  # the `match` query that fired
    terms: tuple[TermMatch, ...]
    snippet: str  # ~30 words around the first match
    snippet_marks: tuple[tuple[int, int], ...] = ()  # spans of matched terms in `snippet`


# ---- deliver --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """Everything a channel needs to render one alert; stored as the outbox payload."""

    watchlist: str
    title: str
    link: str | None
    outlet: str | None
    published: datetime | None
    terms: tuple[str, ...]
    snippet: str
    snippet_marks: tuple[tuple[int, int], ...] = ()
    query: str = ""
    story_key: str = ""  # stable id of the story (threading, digests)
    test: bool = False  # a `notify-test` alert
    kind: str = "hit"  # "hit": a watchlist matched; "health": a feed or a delivery needs attention
    also_in: tuple[str, ...] = ()  # other outlets that carried the story (filled when it is sent)


@dataclass(frozen=True, slots=True)
class Digest:
    """Several alerts in one message (a digest window, or alerts over a rate cap)."""

    title: str  # e.g. "Hourly digest, 09:00-10:00 UTC"
    alerts: tuple[Alert, ...]  # newest first; channels group them by watchlist and story
    capped: int = 0  # how many of them are here because the channel's max_per_hour was reached


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    message: str = ""
    permanent: bool = False  # a failure that retrying will not fix
    retry_after: float | None = None


@dataclass(slots=True)
class PollSummary:
    """What one poll of one feed did; summed for `poll --once`."""

    feeds: int = 0
    fetched: int = 0
    not_modified: int = 0
    unchanged: int = 0
    failed: int = 0
    new_entries: int = 0
    hits: int = 0
    alerts_queued: int = 0
    entries_waiting: int = 0  # new entries over max_entries, handled by the next polls
    errors: list[str] = field(default_factory=list)

    def add(self, other: PollSummary) -> None:
        self.feeds += other.feeds
        self.fetched += other.fetched
        self.not_modified += other.not_modified
        self.unchanged += other.unchanged
        self.failed += other.failed
        self.new_entries += other.new_entries
        self.hits += other.hits
        self.alerts_queued += other.alerts_queued
        self.entries_waiting += other.entries_waiting
        self.errors.extend(other.errors)
