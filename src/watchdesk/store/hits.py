"""The hits table: every watchlist match ever stored, alerted or not."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from ..models import Hit
from ..web import canonical_url
from .sql import values_of


def insert_hit(
    db: sqlite_utils.Database, entry_id: int, hit: Hit, *, alerted: bool, now: float
) -> int | None:
    """Store a hit; None when this entry already has a hit for this watchlist."""
    cursor = db.execute(
        "INSERT INTO hits (entry_id, watchlist, query, terms, snippet, snippet_marks, created_at, alerted) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
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
    row = cursor.fetchone()
    return int(row[0]) if row else None


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
    feed: str | None = None,
    alerted: bool | None = None,
) -> list[dict[str, Any]]:
    """Stored hits, newest first, with their entry, feed and what became of them.

    Derived from the data, not from the hits.alerted flag: `deliveries` are the outbox rows
    this hit queued (channel, status, digest); `outside_backfill` says its entry was stored
    outside the backfill window; `duplicate_of` is, for a hit that queued nothing, the
    earlier hit of the same watchlist that queued the same story (another feed's copy: the
    outbox's key is the story's). `feed` is a feed name, any case; `alerted` keeps only hits
    that queued at least one delivery (True) or none (False). Four queries, whatever the
    number of hits; times are epoch seconds.
    """
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if watchlist:
        where.append("h.watchlist = ?")
        params.append(watchlist)
    if since is not None:
        where.append("h.created_at >= ?")
        params.append(since)
    if feed is not None:
        wanted = feed.casefold()  # not SQL's NOCASE, which folds ASCII only
        ids = [
            fid
            for fid, name in db.execute("SELECT id, name FROM feeds").fetchall()
            if name.casefold() == wanted
        ]
        subquery, param = values_of(db, ids)
        where.append(f"e.feed_id IN ({subquery})")
        params.append(param)
    if alerted is not None:
        queued = "h.id IN (SELECT hit_id FROM outbox WHERE hit_id IS NOT NULL)"
        where.append(queued if alerted else f"NOT {queued}")
    cursor = db.execute(
        "SELECT h.id, h.watchlist, h.query, h.terms, h.snippet, h.created_at, e.title, e.link, e.published, "
        "e.text_source, e.alerting, e.canonical_url, e.key, f.config_url, f.name, e.story_id, s.key "
        "FROM hits h JOIN entries e ON e.id = h.entry_id JOIN feeds f ON f.id = e.feed_id "
        "LEFT JOIN stories s ON s.id = e.story_id "
        f"WHERE {' AND '.join(where)} ORDER BY h.created_at DESC, h.id DESC LIMIT ?",
        [*params, limit],
    )
    out: list[dict[str, Any]] = []
    urls: dict[int, str] = {}  # canonical URLs: a story's key across feeds (before stories existed)
    story_ids: dict[int, int] = {}
    for hid, wl, query, terms, snippet, created, title, link, published, *rest in cursor.fetchall():
        source, alerting, url, key, feed_url, name, story_id, story = rest
        url = url or (canonical_url(link) if link else None)
        out.append(
            {
                "id": hid,
                "watchlist": wl,
                "query": query,
                "terms": sorted({t["term"] for t in json.loads(terms)}),
                "snippet": snippet,
                "created_at": created,
                "title": title,
                "link": link,
                "published": published,
                "text_source": source,
                "feed": name,
                "story": story or url or f"{feed_url}#{key}",  # the alerts' story key
                "deliveries": [],
                "outside_backfill": not alerting,
                "duplicate_of": None,
                "duplicate_of_feed": None,
            }
        )
        if story_id is not None:
            story_ids[hid] = story_id
        elif url:
            urls[hid] = url
    _add_deliveries(db, out)
    _add_duplicates(db, out, urls, "e.canonical_url")
    _add_duplicates(db, out, story_ids, "e.story_id")
    return out


def group_copies(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per watchlist and story, where the story first appeared: the hit that
    alerted (else the earliest), with the others as its `copies` (newest first)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for hit in hits:
        groups.setdefault((hit["watchlist"], hit["story"]), []).append(hit)
    out = []
    for members in groups.values():
        lead = min(members, key=lambda h: (not h["deliveries"], h["duplicate_of"] is not None, h["id"]))
        out.append({**lead, "copies": [h for h in members if h is not lead]})
    return out


def _add_deliveries(db: sqlite_utils.Database, hits: list[dict[str, Any]]) -> None:
    """Each hit's outbox rows, oldest first (one query)."""
    by_id = {hit["id"]: hit for hit in hits}
    subquery, param = values_of(db, by_id)
    cursor = db.execute(
        "SELECT hit_id, id, channel, status, sent_at, digest_at, digest_title FROM outbox "
        f"WHERE hit_id IN ({subquery}) ORDER BY id",
        [param],
    )
    for hit_id, row_id, channel, status, sent_at, digest_at, digest_title in cursor.fetchall():
        by_id[hit_id]["deliveries"].append(
            {
                "outbox_id": row_id,
                "channel": channel,
                "status": status,
                "sent_at": sent_at,
                "digest_at": digest_at,
                "digest_title": digest_title,
            }
        )


def _add_duplicates(
    db: sqlite_utils.Database, hits: list[dict[str, Any]], urls: dict[int, Any], column: str
) -> None:
    """For each hit that queued nothing, the hit of its watchlist that had already queued
    the same story through another entry (one query): the same story (`e.story_id`), or
    for entries stored before stories existed the same canonical URL."""
    idle = [hit for hit in hits if not hit["deliveries"] and hit["id"] in urls]
    if not idle:
        return
    wanted = {urls[hit["id"]] for hit in idle}
    subquery, param = values_of(db, wanted, kind="int" if column == "e.story_id" else "text")
    cursor = db.execute(
        f"SELECT {column}, h.watchlist, h.id, f.name, MIN(o.created_at) AS queued_at "
        "FROM entries e JOIN hits h ON h.entry_id = e.id JOIN feeds f ON f.id = e.feed_id "
        "JOIN outbox o ON o.hit_id = h.id "
        f"WHERE {column} IN ({subquery}) "
        f"GROUP BY h.id, {column}, h.watchlist, f.name ORDER BY queued_at, h.id",
        [param],
    )
    queued: dict[tuple[Any, str], list[tuple[int, str, float]]] = {}
    for url, watchlist, hit_id, feed, queued_at in cursor.fetchall():
        queued.setdefault((url, watchlist), []).append((hit_id, feed, queued_at))
    for hit in idle:
        for hit_id, feed, queued_at in queued.get((urls[hit["id"]], hit["watchlist"]), []):
            if hit_id != hit["id"] and queued_at <= hit["created_at"]:  # already alerted when stored
                hit["duplicate_of"], hit["duplicate_of_feed"] = hit_id, feed
                break
