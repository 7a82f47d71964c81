"""The stories tables: which story each entry belongs to, and what finds a copy of it.

A story's `key` is the alert identity (idempotency keys, email threads): the canonical
URL of its first copy, else that entry's feed key, as it was before stories existed, so
alerts queued before the upgrade still dedupe. Signatures, LSH band keys and teaser
titles are kept only for the [stories] window and pruned after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from .pg import STORY_LOCK
from .sql import is_postgres, row_id


@dataclass(frozen=True, slots=True)
class Story:
    id: int
    key: str


@dataclass(frozen=True, slots=True)
class Candidate:
    entry_id: int
    story: Story
    signature: bytes


def serialise(db: sqlite_utils.Database) -> None:
    """Story assignment of new entries, one transaction at a time across daemons
    (PostgreSQL: an advisory lock held to the commit): two daemons storing copies of one
    wire story at once each see the other's story and join it, rather than starting two
    and alerting twice. SQLite's single writer already does this."""
    if is_postgres(db):
        db.execute("SELECT pg_advisory_xact_lock(?)", [STORY_LOCK])


def by_url(db: sqlite_utils.Database, canonical: str, entry_id: int) -> Story | None:
    """The story of another entry with this canonical URL (any feed, any time)."""
    row = db.execute(
        "SELECT s.id, s.key FROM entries e JOIN stories s ON s.id = e.story_id "
        "WHERE e.canonical_url = ? AND e.id != ? ORDER BY e.id LIMIT 1",
        [canonical, entry_id],
    ).fetchone()
    return Story(*row) if row else None


def by_title(db: sqlite_utils.Database, title: str, since: float, feed_id: int) -> Story | None:
    """A story another feed carried under exactly this (normalised) title since `since`."""
    row = db.execute(
        "SELECT s.id, s.key FROM story_titles t JOIN stories s ON s.id = t.story_id "
        "WHERE t.title = ? AND t.seen_at >= ? AND t.feed_id != ? ORDER BY t.seen_at LIMIT 1",
        [title, since, feed_id],
    ).fetchone()
    return Story(*row) if row else None


def candidates(
    db: sqlite_utils.Database, band_keys: Sequence[int], version: int, since: float, feed_id: int
) -> list[Candidate]:
    """Other feeds' entries in the window sharing at least one LSH band with a signature
    (one office's releases from one template are not one story: a feed's own entries
    never join each other by content)."""
    if not band_keys:
        return []
    marks = ",".join("?" * len(band_keys))
    cursor = db.execute(
        "SELECT g.entry_id, s.id, s.key, g.signature FROM story_signatures g "
        "JOIN stories s ON s.id = g.story_id "
        f"WHERE g.entry_id IN (SELECT DISTINCT entry_id FROM story_bands WHERE band_key IN ({marks})) "
        "AND g.version = ? AND g.seen_at >= ? AND g.feed_id != ? ORDER BY g.entry_id",
        [*band_keys, version, since, feed_id],
    )
    return [Candidate(entry_id, Story(sid, key), sig) for entry_id, sid, key, sig in cursor.fetchall()]


def new_story(db: sqlite_utils.Database, key: str, title: str, now: float) -> Story:
    """A story starting with this entry; an existing one when the key is taken (an entry
    stored before stories existed had this URL, or the same entry key came back)."""
    db.execute(
        "INSERT INTO stories (key, title, first_seen, last_seen, copies) VALUES (?, ?, ?, ?, 0) "
        "ON CONFLICT(key) DO NOTHING",
        [key, title, now, now],
    )
    row = db.execute("SELECT id, key FROM stories WHERE key = ?", [key]).fetchone()
    return Story(*row)


def join(
    db: sqlite_utils.Database,
    entry_id: int,
    feed_id: int,
    story: Story,
    now: float,
    *,
    signature: tuple[int, bytes, Iterable[int]] | None = None,
    title: str | None = None,
) -> None:
    """Record that `entry_id` belongs to `story`, with what will find later copies."""
    db.execute("UPDATE entries SET story_id = ? WHERE id = ?", [story.id, entry_id])
    db.execute(
        "UPDATE stories SET copies = copies + 1, last_seen = CASE WHEN last_seen > ? THEN last_seen ELSE ? END "
        "WHERE id = ?",
        [now, now, story.id],
    )
    if signature is not None:
        version, sig, keys = signature
        db.execute(
            "INSERT INTO story_signatures (entry_id, story_id, feed_id, version, signature, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id) DO UPDATE SET story_id = excluded.story_id, "
            "feed_id = excluded.feed_id, version = excluded.version, signature = excluded.signature, "
            "seen_at = excluded.seen_at",
            [entry_id, story.id, feed_id, version, sig, now],
        )
        db.conn.executemany(
            "INSERT INTO story_bands (band_key, entry_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(key, entry_id) for key in keys],
        )
    if title:
        db.execute(
            "INSERT INTO story_titles (title, story_id, feed_id, seen_at) VALUES (?, ?, ?, ?)",
            [title, story.id, feed_id, now],
        )


def prune(db: sqlite_utils.Database, signatures_before: float, titles_before: float, batch: int = 500) -> int:
    """Drop what finds copies once it is older than the window: a bounded batch per call."""
    cursor = db.execute(
        "DELETE FROM story_signatures WHERE entry_id IN "
        "(SELECT entry_id FROM story_signatures WHERE seen_at < ? LIMIT ?)",
        [signatures_before, batch],
    )
    removed = cursor.rowcount
    rid = row_id(db)
    cursor = db.execute(
        f"DELETE FROM story_titles WHERE {rid} IN (SELECT {rid} FROM story_titles WHERE seen_at < ? LIMIT ?)",
        [titles_before, batch],
    )
    return removed + cursor.rowcount


def outlets(db: sqlite_utils.Database, keys: Iterable[str]) -> dict[str, list[str]]:
    """Each story's outlets (feed names), in the order they carried it."""
    wanted = sorted(set(keys))
    found: dict[str, list[str]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = db.execute(
            "SELECT s.key, f.name FROM stories s JOIN entries e ON e.story_id = s.id "
            f"JOIN feeds f ON f.id = e.feed_id WHERE s.key IN ({marks}) ORDER BY e.id",
            chunk,
        )
        for key, name in cursor.fetchall():
            names = found.setdefault(key, [])
            if name not in names:
                names.append(name)
    return found


def list_stories(
    db: sqlite_utils.Database, *, since: float | None, watchlist: str | None, limit: int
) -> list[dict[str, Any]]:
    """Stories seen since `since` (those a watchlist hit, if given), most recent first."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if since is not None:
        where.append("s.last_seen >= ?")
        params.append(since)
    if watchlist:
        where.append(
            "s.id IN (SELECT e.story_id FROM hits h JOIN entries e ON e.id = h.entry_id WHERE h.watchlist = ?)"
        )
        params.append(watchlist)
    cursor = db.execute(
        "SELECT s.id, s.key, s.title, s.first_seen, s.last_seen, s.copies FROM stories s "
        f"WHERE {' AND '.join(where)} ORDER BY s.last_seen DESC, s.id DESC LIMIT ?",
        [*params, limit],
    )
    rows = cursor.fetchall()
    names = outlets(db, [r[1] for r in rows])
    watchlists: dict[int, list[str]] = {}
    ids = [r[0] for r in rows]
    if ids:
        marks = ",".join("?" * len(ids))
        for story_id, wl in db.execute(
            "SELECT DISTINCT e.story_id, h.watchlist FROM hits h JOIN entries e ON e.id = h.entry_id "
            f"WHERE e.story_id IN ({marks}) ORDER BY h.watchlist",
            ids,
        ).fetchall():
            watchlists.setdefault(story_id, []).append(wl)
    return [
        {
            "id": sid,
            "key": key,
            "title": title,
            "first_seen": first,
            "last_seen": last,
            "copies": copies,
            "outlets": names.get(key, []),
            "watchlists": watchlists.get(sid, []),
        }
        for sid, key, title, first, last, copies in rows
    ]
