"""The entries table: every entry ever seen, keyed by (feed, identity)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlite_utils

from ..models import Article, ParsedEntry
from ..urls import canonical_url


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
) -> int:
    cursor = db.execute(
        "INSERT INTO entries (feed_id, key, guid, link, title, summary, text, text_source, published, "
        "seen_at, alerting, canonical_url, text_note, language, page_title, page_date) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


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
