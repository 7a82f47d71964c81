"""The hits table: every watchlist match ever stored, alerted or not."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ..models import Hit


def insert_hit(
    db: sqlite_utils.Database, entry_id: int, hit: Hit, *, alerted: bool, now: float
) -> int | None:
    """Store a hit; None when this entry already has a hit for this watchlist."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO hits (entry_id, watchlist, query, terms, snippet, snippet_marks, created_at, alerted) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry_id,
            hit.watchlist,
            hit.query,
            json.dumps(
                [{"term": t.term, "field": t.field, "start": t.start, "end": t.end} for t in hit.terms]
            ),
            hit.snippet,
            json.dumps([list(m) for m in hit.snippet_marks]),
            now,
            int(alerted),
        ],
    )
    return cursor.lastrowid if cursor.rowcount else None


def unalerted_hit(db: sqlite_utils.Database, entry_id: int, watchlist: str) -> int | None:
    """The id of this entry's hit for this watchlist if it was stored but never alerted."""
    row = db.execute(
        "SELECT id FROM hits WHERE entry_id = ? AND watchlist = ? AND alerted = 0", [entry_id, watchlist]
    ).fetchone()
    return row[0] if row else None


def mark_alerted(db: sqlite_utils.Database, hit_id: int) -> None:
    db.execute("UPDATE hits SET alerted = 1 WHERE id = ?", [hit_id])


def list_hits(
    db: sqlite_utils.Database,
    *,
    watchlist: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Stored hits, newest first, with their entry and feed."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if watchlist:
        where.append("h.watchlist = ?")
        params.append(watchlist)
    if since is not None:
        where.append("h.created_at >= ?")
        params.append(since)
    cursor = db.execute(
        "SELECT h.id, h.watchlist, h.query, h.terms, h.snippet, h.created_at, h.alerted, "
        "e.title, e.link, e.published, e.text_source, f.name "
        "FROM hits h JOIN entries e ON e.id = h.entry_id JOIN feeds f ON f.id = e.feed_id "
        f"WHERE {' AND '.join(where)} ORDER BY h.created_at DESC, h.id DESC LIMIT ?",
        [*params, limit],
    )
    out = []
    for row in cursor.fetchall():
        (hid, wl, query, terms, snippet, created, alerted, title, link, published, source, feed) = row
        out.append(
            {
                "id": hid,
                "watchlist": wl,
                "query": query,
                "terms": sorted({t["term"] for t in json.loads(terms)}),
                "snippet": snippet,
                "created_at": created,
                "alerted": bool(alerted),
                "title": title,
                "link": link,
                "published": published,
                "text_source": source,
                "feed": feed,
            }
        )
    return out
