"""The entries table: every entry ever seen, keyed by (feed, identity)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from ..language import fts_tokens
from ..models import Article, ParsedEntry
from ..web import canonical_url
from . import search
from .sql import stream


def existing_keys(db: sqlite_utils.Database, feed_id: int, keys: Sequence[str]) -> set[str]:
    """Which of these identities this feed has stored already (one indexed lookup each)."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        marks = ",".join("?" * len(chunk))
        cursor = db.execute(
            f"SELECT key FROM entries WHERE feed_id = ? AND key IN ({marks})", [feed_id, *chunk]
        )
        found.update(row[0] for row in cursor.fetchall())
    return found


def insert_entry(
    db: sqlite_utils.Database,
    feed_id: int,
    entry: ParsedEntry,
    article: Article,
    *,
    alerting: bool,
    now: float,
    index_tokens: str | None = None,
) -> int:
    """Store an entry and its search-index row; `index_tokens` is fts_tokens(title, text)
    when the caller has it already."""
    row = db.execute(
        "INSERT INTO entries (feed_id, key, guid, link, title, summary, text, text_source, published, "
        "seen_at, alerting, canonical_url, text_note, language, page_title, page_date) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [
            feed_id,
            entry.key,
            entry.guid,
            entry.link,
            article.title,
            entry.summary,
            article.text,
            article.text_source,
            entry.published.timestamp() if entry.published else None,
            now,
            int(alerting),
            canonical_url(entry.link) if entry.link else None,
            article.note,
            article.language,
            article.page_title,
            article.page_date,
        ],
    ).fetchone()
    entry_id = int(row[0])
    tokens = index_tokens if index_tokens is not None else fts_tokens(article.title, article.text)
    search.index(db, entry_id, tokens)
    return entry_id


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    feed_url: str  # the feed's config URL
    feed_name: str
    key: str
    link: str | None
    article: Article
    story_id: int | None = None  # None: stored before stories existed
    story: str | None = None  # its story's key (the alerts' identity)


def stored_entries(
    db: sqlite_utils.Database, *, fts: str | None = None, since: float | None = None, batch: int = 500
) -> Iterator[StoredEntry]:
    """Stored entries, most recently stored first: all of them, or those whose tokens
    satisfy `fts`; only those stored since `since` if given."""
    where, params = _filters(db, fts, since)
    rows = stream(
        db,
        "SELECT e.id, f.config_url, f.name, e.key, e.link, e.title, e.text, e.text_source, e.published, "
        "e.story_id, s.key FROM entries e JOIN feeds f ON f.id = e.feed_id LEFT JOIN stories s ON s.id = e.story_id "
        f"WHERE {where} ORDER BY e.seen_at DESC, e.id DESC",
        params,
        batch,
    )
    for entry_id, feed_url, feed_name, key, link, title, text, source, published, sid, story in rows:
        when = datetime.fromtimestamp(published, UTC) if published is not None else None
        article = Article(title, text, url=link, outlet=feed_name, published=when, text_source=source)
        yield StoredEntry(entry_id, feed_url, feed_name, key, link, article, sid, story)


def _filters(db: sqlite_utils.Database, fts: str | None, since: float | None) -> tuple[str, list[Any]]:
    where = ["1 = 1"]
    params: list[Any] = []
    if fts is not None:
        narrowed = search.candidates(db, fts)
        if narrowed is not None:
            where.append(f"e.id IN ({narrowed[0]})")
            params.append(narrowed[1])
    if since is not None:
        where.append("e.seen_at >= ?")
        params.append(since)
    return " AND ".join(where), params


def count_entries(db: sqlite_utils.Database, *, fts: str | None = None, since: float | None = None) -> int:
    """How many entries stored_entries would give."""
    where, params = _filters(db, fts, since)
    return int(db.execute(f"SELECT COUNT(*) FROM entries e WHERE {where}", params).fetchone()[0])


def stored_page_text(db: sqlite_utils.Database, link: str) -> Article | None:
    """The page text another entry (any feed) already extracted for this story's URL."""
    row = db.execute(
        "SELECT title, text, language, page_title, page_date FROM entries "
        "WHERE canonical_url = ? AND text_source = 'page' ORDER BY id LIMIT 1",
        [canonical_url(link)],
    ).fetchone()
    if row is None:
        return None
    title, text, language, page_title, page_date = row
    return Article(
        title=title,
        text=text,
        text_source="page",
        language=language,
        page_title=page_title,
        page_date=page_date,
    )
