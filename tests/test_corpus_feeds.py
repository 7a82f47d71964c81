"""Every feed of the public corpus, served over HTTP on 127.0.0.1, through fetch -> parse -> store.

Each file in corpus/feeds is served at its own URL with exactly the HTTP headers its
INDEX.json record lists (no Content-Type when it lists none). The two `*.xml.gz` files are
gzip data: they are served as `Content-Encoding: gzip` with their bytes untouched, so
our bounded inflation reads real compressed feeds. One config holds all ~300 feeds and
one `Runtime.poll_feeds(rt.all_feeds())` polls them, as `watchdesk poll --once` does.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import pytest
from conftest import CORPUS, write_config
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.models import PollSummary
from watchdesk.runtime import Runtime
from watchdesk.store import feeds as feed_store
from watchdesk.store.feeds import FeedRow

NOW = 1_750_000_000.0
# feedparser's bozo flags that say nothing about the document's structure
BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


@dataclass(frozen=True)
class CorpusFeed:
    path: str  # relative to the corpus root, e.g. feeds/realworld/rss-parser/guardian.rss
    body: bytes  # the bytes served
    headers: dict[str, str]

    @property
    def document(self) -> bytes:
        """The feed document itself (inflated when the file is gzip data)."""
        return gzip.decompress(self.body) if self.path.endswith(".gz") else self.body


def recorded_headers(item: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in item.get("http_headers", []):
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    if item["path"].endswith(".gz"):
        headers["Content-Encoding"] = "gzip"
    return headers


@dataclass
class CorpusRun:
    feeds: dict[str, CorpusFeed]  # by feed name (= corpus path)
    rows: dict[str, FeedRow]  # by feed name, after the first poll
    entries: dict[str, int]  # stored entries by feed name
    first: PollSummary
    second: PollSummary  # the same bodies again, an interval later


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    """Serve and poll the whole corpus once (twice, in fact) for all tests of this module."""
    if not (CORPUS / "MANIFEST.md").is_file():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHDESK_CORPUS to run corpus tests)")
    index = json.loads((CORPUS / "feeds" / "INDEX.json").read_text(encoding="utf-8"))
    items = [item for item in index["items"] if item["kind"] == "feed"]
    feeds = {
        item["path"]: CorpusFeed(item["path"], (CORPUS / item["path"]).read_bytes(), recorded_headers(item))
        for item in items
    }
    folder: Path = tmp_path_factory.mktemp("corpus")
    clock = [NOW]
    with LocalServer() as server:
        config_feeds: list[dict[str, object]] = []
        for n, feed in enumerate(feeds.values()):
            route = f"/feed/{n}"
            server.route(route, feed.body, headers=feed.headers)
            config_feeds.append({"url": server.url(route), "name": feed.path})
        config = write_config(
            folder,
            config_feeds,
            {"broad": "match = ['the', 'news', 'fentanyl']"},
            # Entries link to the publishers' real sites: never fetch article pages here.
            polling='interval = "15m"\nbackfill = "all"\nfetch_article = "never"',
            network="concurrency = 16\nper_host = 16",
        )
        rt = Runtime(load_config(config), clock=lambda: clock[0], rand=lambda: 0.5)
        try:
            first = asyncio.run(rt.poll_feeds(rt.all_feeds()))
            rows = {row.name: row for row in feed_store.all_feeds(rt.db)}
            counts = dict(
                rt.db.execute(
                    "SELECT f.name, COUNT(e.id) FROM feeds f LEFT JOIN entries e ON e.feed_id = f.id GROUP BY f.id"
                ).fetchall()
            )
            clock[0] += 900
            second = asyncio.run(rt.poll_feeds(rt.all_feeds()))
        finally:
            asyncio.run(rt.aclose())
    yield CorpusRun(feeds, rows, counts, first, second)


def test_every_corpus_feed_is_polled(corpus: Path, corpus_run: CorpusRun) -> None:
    """All ~300 feeds are polled in one run and stored with a health a user can read."""
    run = corpus_run
    assert len(run.feeds) >= 300
    assert run.first.feeds == len(run.feeds)
    assert set(run.rows) == set(run.feeds)
    assert not [e for e in run.first.errors if "internal error" in e]
    for name, row in run.rows.items():
        assert row.status in ("ok", "failing"), (name, row)
        assert row.last_polled_at == NOW, name
        if row.status == "ok":
            assert (row.consecutive_errors, row.last_error, row.last_http_status) == (0, None, 200), name
            assert row.next_check_at == NOW + 900, name
        else:
            assert row.last_error and "internal error" not in row.last_error, name
            assert row.consecutive_errors == 1, name
    assert run.first.fetched + run.first.failed == run.first.feeds


def test_failures_are_only_unreadable_documents(corpus: Path, corpus_run: CorpusRun) -> None:
    """Over loopback nothing times out or is refused: a feed fails only as 'not a feed'."""
    failed = {name: row for name, row in corpus_run.rows.items() if row.status == "failing"}
    for name, row in failed.items():
        assert row.malformed is not None and row.last_error == row.malformed, (name, row.last_error)
        assert row.last_error.startswith("not a feed"), (name, row.last_error)
    # The node-feedparser HTML page is the corpus's one deliberate non-feed.
    assert "feeds/realworld/node-feedparser/notafeed.html" in failed
    assert len(failed) < len(corpus_run.rows) // 10, sorted(failed)


def test_news_feeds_store_their_entries(corpus: Path, corpus_run: CorpusRun) -> None:
    """The real news snapshots (and the gzip-served feed) end with their entries in SQLite."""
    for name in (
        "feeds/realworld/rss-parser/guardian.rss",
        "feeds/realworld/node-feedparser/wapowellness.xml",
        "feeds/realworld/rss-parser/heise.atom",
        "feeds/realworld/miniflux/rdf_UTF8.xml",
        "feeds/realworld/rss2email/bbc-chinese-feed.atom",
        "feeds/realworld/node-feedparser/compressed.xml.gz",
    ):
        assert corpus_run.rows[name].status == "ok", (name, corpus_run.rows[name].last_error)
        assert corpus_run.entries[name] > 0, name
    assert corpus_run.first.new_entries == sum(corpus_run.entries.values())


def test_wellformed_feeds_with_items_store_entries(corpus: Path, corpus_run: CorpusRun) -> None:
    """Regression: whatever feedparser reads cleanly and finds items in, we store items from."""
    missing = []
    checked = 0
    for name, feed in corpus_run.feeds.items():
        headers = {k.lower(): v for k, v in feed.headers.items() if k.lower() != "content-encoding"}
        result = feedparser.parse(feed.document, response_headers=headers)
        clean = not result.bozo or isinstance(result.get("bozo_exception"), BENIGN)
        if clean and result.entries:
            checked += 1
            if corpus_run.entries[name] == 0:
                missing.append((name, corpus_run.rows[name].status, corpus_run.rows[name].last_error))
    assert checked > 150
    assert missing == []


def test_malformed_documents_are_recorded(corpus: Path, corpus_run: CorpusRun) -> None:
    """A document feedparser flags as not well-formed carries `malformed` on its feed row."""
    unrecorded = []
    flagged = 0
    for name, feed in corpus_run.feeds.items():
        headers = {k.lower(): v for k, v in feed.headers.items() if k.lower() != "content-encoding"}
        result = feedparser.parse(feed.document, response_headers=headers)
        if result.bozo and not isinstance(result.get("bozo_exception"), BENIGN):
            flagged += 1
            row = corpus_run.rows[name]
            if not (row.malformed or row.last_error):
                unrecorded.append(name)
    assert flagged > 10
    assert unrecorded == []


def test_bytes_reach_the_parser_intact(corpus: Path, corpus_run: CorpusRun) -> None:
    """Each stored feed title is what feedparser reads from the file itself (with its
    recorded Content-Type): nothing lost or altered in transfer or gzip inflation."""
    wrong = []
    for name, feed in corpus_run.feeds.items():
        row = corpus_run.rows[name]
        if row.status != "ok":
            continue
        content_type = {k.lower(): v for k, v in feed.headers.items()}.get("content-type")
        result = feedparser.parse(
            feed.document,
            response_headers={"content-type": content_type} if content_type else {},
            sanitize_html=False,
            resolve_relative_uris=False,
        )
        expected = (result.feed.get("title") or "")[:1000] or None
        if row.title != expected:
            wrong.append((name, row.title, expected))
    assert wrong == []


def test_second_poll_of_the_same_bodies_changes_nothing(corpus: Path, corpus_run: CorpusRun) -> None:
    """An interval later the same bytes are 'unchanged' for every healthy feed: no new entries."""
    ok = sum(1 for row in corpus_run.rows.values() if row.status == "ok")
    second = corpus_run.second
    assert not [e for e in second.errors if "internal error" in e]
    assert (second.unchanged, second.new_entries, second.fetched) == (ok, 0, 0)
    assert second.failed == len(corpus_run.rows) - ok
