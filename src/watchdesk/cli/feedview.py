"""`watchdesk feeds`: each feed's health as a plain dict, from the database and the config.

Reads only. A feed configured here but not in the database yet is shown as `new`; a row
the database has that this config does not name is shown and marked (another config's
feed, or one removed from this one: the daemon with this config does not poll it).
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import sqlite_utils

from ..config import Config
from ..schedule import ago
from ..store import feeds as feed_store
from .common import iso, when, zone

WEEK = 7 * 86400.0


def feed_views(db: sqlite_utils.Database, config: Config, now: float) -> list[dict[str, Any]]:
    tz = zone(config)
    configured = {f.url: f for f in config.feeds if f.enabled}
    counts = feed_store.entries_since(db, now - WEEK)
    views = []
    seen: set[str] = set()
    for row in feed_store.all_feeds(db):
        seen.add(row.config_url)
        feed = configured.get(row.config_url)
        interval = (feed.interval if feed and feed.interval else None) or config.polling.interval
        views.append(_view(row, interval, counts.get(row.id, 0), feed is not None, now, tz))
    for url, feed in configured.items():
        if url not in seen:
            views.append(_not_yet(url, feed.name, feed.interval or config.polling.interval, now, tz))
    return sorted(views, key=lambda v: v["name"].casefold())


def _since(row: feed_store.FeedRow, now: float) -> str:
    if row.status in ("failing", "gone") and row.failing_since is not None:
        return f"failing for {ago(now - row.failing_since)}"
    if row.last_entry_at is not None:
        return f"last entry {ago(now - row.last_entry_at)} ago"
    if row.last_success_at is None:
        return "not polled yet" if row.last_polled_at is None else "never parsed"
    return "no entry yet"


def _view(
    row: feed_store.FeedRow, interval: float, week: int, in_config: bool, now: float, tz: tzinfo
) -> dict[str, Any]:
    effective = row.effective_interval or interval
    notes = []
    if not in_config:
        notes.append("not in this config: not polled by it")
    if row.entries_waiting:
        notes.append(f"{row.entries_waiting} new entries waiting (next poll soon)")
    if row.overflows:
        notes.append(f"overflowed {row.overflows}x (entries scrolled past between polls)")
    if row.last_error:
        notes.append(row.last_error)
    elif row.malformed:
        notes.append(f"malformed: {row.malformed}")
    next_text = (
        "never (410 Gone)" if row.next_check_at is None else when(row.next_check_at, tz, seconds=False)
    )
    return {
        "name": row.name,
        "url": row.url,
        "config_url": row.config_url,
        "in_config": in_config,
        "status": row.status,
        "failing_since": iso(row.failing_since, tz),
        "consecutive_errors": row.consecutive_errors,
        "last_error": row.last_error,
        "malformed": row.malformed,
        "last_http_status": row.last_http_status,
        "last_polled_at": iso(row.last_polled_at, tz),
        "last_success_at": iso(row.last_success_at, tz),
        "last_entry_at": iso(row.last_entry_at, tz),
        "entries_7d": week,
        "entries_waiting": row.entries_waiting,
        "overflows": row.overflows,
        "interval": interval,
        "effective_interval": effective,
        "next_check_at": iso(row.next_check_at, tz),
        "health_alerted": row.health_alerted,
        "since_text": _since(row, now),
        "interval_text": ago(effective) + ("*" if effective < interval else ""),
        "next_check_text": next_text,
        "notes": "; ".join(notes),
        # Several daemons on one PostgreSQL: which one polls it now (a live lease), and
        # which one polled it last ([watchdesk] node).
        "polling_now_by": row.leased_by if row.leased_by and (row.lease_until or 0) > now else None,
        "polled_by": row.polled_by,
    }


def _not_yet(url: str, name: str, interval: float, now: float, tz: tzinfo) -> dict[str, Any]:
    """A feed this config names that the database has no row for yet."""
    row = feed_store.FeedRow(0, url, url, name, None, "new", *(None,) * 6, 0, None, None, None)
    return {
        **_view(row, interval, 0, True, now, tz),
        "since_text": "not in the database yet",
        "next_check_text": "when run starts",
        "notes": "added to the config: `watchdesk run` (or a restart) starts polling it",
    }
