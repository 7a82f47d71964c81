"""The feeds table: configured feeds, their validators and their health."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import sqlite_utils

from .sql import batch, later, pipelining, values_of


@dataclass(frozen=True, slots=True)
class FeedRow:
    id: int
    config_url: str
    url: str
    name: str
    title: str | None
    status: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    next_check_at: float | None
    last_polled_at: float | None
    last_success_at: float | None
    consecutive_errors: int
    last_error: str | None
    last_http_status: int | None
    malformed: str | None
    created_at: float = 0.0
    failing_since: float | None = None
    last_entry_at: float | None = None
    entries_waiting: int = 0
    backfill_before: float | None = None
    effective_interval: float | None = None
    overflows: int = 0
    health_alerted: str | None = None
    leased_by: str | None = None  # the daemon ([watchdesk] node) polling it now (PostgreSQL)
    lease_until: float | None = None
    polled_by: str | None = None  # the daemon that last polled it


_COLUMNS = ", ".join(f.name for f in fields(FeedRow))


def _rows(db: sqlite_utils.Database, where: str, params: Sequence[Any] = ()) -> list[FeedRow]:
    cursor = db.execute(f"SELECT {_COLUMNS} FROM feeds WHERE {where}", list(params))
    return [FeedRow(*row) for row in cursor.fetchall()]


def sync_feeds(db: sqlite_utils.Database, feeds: Sequence[tuple[str, str]], now: float) -> None:
    """Make the table match the config: (url, name) pairs. New feeds are due now;
    feeds no longer configured are kept (with their history) but not polled."""
    wanted = dict(feeds)
    with db.atomic():
        # Only what differs is written: a restart with 100,000 unchanged feeds reads the
        # table once and writes nothing (it rewrote every row, 1.5 s, before).
        rows = db.execute("SELECT config_url, name, active FROM feeds").fetchall()
        have = {url: (name, active) for url, name, active in rows}
        stale = [(url,) for url, (_name, active) in have.items() if active and url not in wanted]
        renamed = [(name, url) for url, name in wanted.items() if url in have and have[url] != (name, 1)]
        added = [(url, url, name, now, now) for url, name in wanted.items() if url not in have]
        conn = db.conn
        conn.executemany("UPDATE feeds SET active = 0 WHERE config_url = ?", stale)
        conn.executemany("UPDATE feeds SET name = ?, active = 1 WHERE config_url = ?", renamed)
        conn.executemany(
            "INSERT INTO feeds (config_url, url, name, next_check_at, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (config_url) DO NOTHING",  # another daemon starting at once added it
            added,
        )


def reconfigure_feeds(
    db: sqlite_utils.Database,
    feeds: Sequence[tuple[str, str]],
    now: float,
    *,
    moved: Sequence[tuple[str, str]] = (),
    sooner: Sequence[tuple[str, float]] = (),
) -> None:
    """A reloaded config's feeds, in one transaction: `moved` (old URL, new URL) keep their
    row and history, their validators forgotten and due now; then sync_feeds (new feeds
    due now, removed ones kept but not polled); `sooner` (URL, interval): feeds whose
    interval got shorter are due no later than their last poll plus the new interval."""
    with db.atomic():
        for old, new in moved:
            db.execute(
                "UPDATE feeds SET config_url = ?, url = ?, etag = NULL, last_modified = NULL, body_hash = NULL, "
                "next_check_at = ? WHERE config_url = ? AND NOT EXISTS (SELECT 1 FROM feeds WHERE config_url = ?)",
                [new, new, now, old, new],
            )
        sync_feeds(db, feeds, now)
        for url, interval in sooner:
            db.execute(
                "UPDATE feeds SET next_check_at = CASE WHEN next_check_at < COALESCE(last_polled_at, 0) + ? "
                "THEN next_check_at ELSE COALESCE(last_polled_at, 0) + ? END "
                "WHERE config_url = ? AND next_check_at IS NOT NULL",
                [interval, interval, url],
            )


# Due and not held by a live lease (another daemon's poll in flight). With SQLite no
# lease is ever written: the daemon's lock makes it the only one (engine.py).
_DUE = (
    "active = 1 AND next_check_at IS NOT NULL AND next_check_at <= ? "
    "AND (lease_until IS NULL OR lease_until <= ?) AND id NOT IN ({skip})"
)


def due_feeds(
    db: sqlite_utils.Database, now: float, limit: int = 1000, *, skip: Collection[int] = ()
) -> list[FeedRow]:
    """The `limit` feeds due longest, by next_check_at (an index); `skip`: ids left out
    (polls in flight, feeds held back), passed as one parameter whatever their number."""
    subquery, param = values_of(db, skip)
    return _rows(db, _DUE.format(skip=subquery) + " ORDER BY next_check_at LIMIT ?", [now, now, param, limit])


def claim_due_feeds(
    db: sqlite_utils.Database,
    node: str,
    now: float,
    lease_until: float,
    limit: int,
    *,
    skip: Collection[int] = (),
) -> list[FeedRow]:
    """PostgreSQL: lease up to `limit` due feeds to `node` until `lease_until`, in one
    statement; rows another daemon is claiming at this instant are skipped, not waited
    for (FOR UPDATE SKIP LOCKED). The poll's own transaction releases the lease
    (pipeline._update); a lease that runs out (its daemon died) is claimed again."""
    subquery, param = values_of(db, skip)
    cursor = db.execute(
        f"UPDATE feeds SET leased_by = ?, lease_until = ? WHERE id IN (SELECT id FROM feeds WHERE "
        f"{_DUE.format(skip=subquery)} ORDER BY next_check_at LIMIT ? FOR UPDATE SKIP LOCKED) "
        f"RETURNING {_COLUMNS}",
        [node, lease_until, now, now, param, limit],
    )
    rows = [FeedRow(*row) for row in cursor.fetchall()]
    return sorted(rows, key=lambda r: (r.next_check_at or 0.0, r.id))


def renew_leases(db: sqlite_utils.Database, node: str, ids: Collection[int], lease_until: float) -> int:
    """Extend `node`'s leases of these feeds (polls still in flight); how many of them
    another daemon holds now (lost: polled past their lease). A poll that has just
    committed gave its lease back, and is not counted."""
    subquery, param = values_of(db, ids)
    db.execute(
        f"UPDATE feeds SET lease_until = ? WHERE leased_by = ? AND id IN ({subquery})",
        [lease_until, node, param],
    )
    row = db.execute(
        f"SELECT COUNT(*) FROM feeds WHERE leased_by IS NOT NULL AND leased_by != ? AND id IN ({subquery})",
        [node, param],
    ).fetchone()
    return int(row[0])


def release_leases(db: sqlite_utils.Database, node: str) -> int:
    """Give back every lease `node` holds (a clean stop: another daemon takes over now)."""
    return int(
        db.execute(
            "UPDATE feeds SET leased_by = NULL, lease_until = NULL WHERE leased_by = ?", [node]
        ).rowcount
    )


def next_due_at(
    db: sqlite_utils.Database, *, skip: Collection[int] = (), now: float | None = None
) -> float | None:
    """When the next feed (not in `skip`, nor leased by a live lease at `now`) falls due;
    None when none ever will."""
    subquery, param = values_of(db, skip)
    row = db.execute(
        "SELECT next_check_at FROM feeds WHERE active = 1 AND next_check_at IS NOT NULL "
        f"AND (lease_until IS NULL OR lease_until <= ?) AND id NOT IN ({subquery}) "
        "ORDER BY next_check_at LIMIT 1",
        [now if now is not None else float("inf"), param],
    ).fetchone()
    return row[0] if row else None


def all_feeds(db: sqlite_utils.Database) -> list[FeedRow]:
    return _rows(db, "active = 1 ORDER BY name")


def status_counts(db: sqlite_utils.Database) -> dict[str, int]:
    """How many polled (active) feeds are in each status: one aggregate query, no rows read."""
    cursor = db.execute("SELECT status, COUNT(*) FROM feeds WHERE active = 1 GROUP BY status")
    return {status: count for status, count in cursor.fetchall()}


def entries_since(db: sqlite_utils.Database, since: float) -> dict[int, int]:
    """New entries stored per feed since `since` (for `watchdesk feeds`)."""
    cursor = db.execute("SELECT feed_id, COUNT(*) FROM entries WHERE seen_at >= ? GROUP BY feed_id", [since])
    return {feed_id: count for feed_id, count in cursor.fetchall()}


def newest_published(db: sqlite_utils.Database, feed_id: int) -> float | None:
    """The newest publication time among this feed's stored entries (overflow detection)."""
    row = db.execute("SELECT MAX(published) FROM entries WHERE feed_id = ?", [feed_id]).fetchone()
    return row[0] if row else None


def get_feed(db: sqlite_utils.Database, feed_id: int) -> FeedRow:
    return _rows(db, "id = ?", [feed_id])[0]


class LeaseLost(Exception):
    """The poll's feed is leased to another daemon now (this one's lease ran out while it
    polled): its outcome is not written, and its transaction rolls back whole."""


def update_feed(
    db: sqlite_utils.Database, feed_id: int, changes: dict[str, Any], *, holder: str | None = None
) -> None:
    """Write changed columns; call inside the poll's transaction. `holder`: the daemon
    whose poll this is; the row is written only while no other daemon holds its lease
    (LeaseLost otherwise). With SQLite no lease is ever held: always written."""
    allowed = {f.name for f in fields(FeedRow)} - {"id", "config_url", "created_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not feed columns: {sorted(unknown)}")
    if holder is not None and pipelining(db):
        # a group commit on PostgreSQL: one UPDATE for the group's feeds (of these columns)
        columns = tuple(changes)
        batch(
            db,
            ("feeds", *columns),
            partial(_update_feeds, columns),
            (feed_id, holder, *changes.values()),
            feed_id,
        )
        return
    sets = ", ".join(f"{k} = ?" for k in changes)
    if holder is None:
        db.execute(f"UPDATE feeds SET {sets} WHERE id = ?", [*changes.values(), feed_id])
        return
    cursor = db.execute(
        f"UPDATE feeds SET {sets} WHERE id = ? AND (leased_by IS NULL OR leased_by = ?)",
        [*changes.values(), feed_id, holder],
    )

    def check() -> None:
        if cursor.rowcount == 0 and db.execute("SELECT 1 FROM feeds WHERE id = ?", [feed_id]).fetchone():
            raise LeaseLost(f"feed {feed_id} is leased to another daemon")

    later(db, check)  # in a group commit's pipeline (PostgreSQL): before the group commits


# PostgreSQL's array type and the Python type of each feed column (the annotations' first word)
_ARRAYS = {
    f.name: {"int": ("bigint[]", int), "float": ("float8[]", float)}.get(
        str(f.type).split()[0], ("text[]", str)
    )
    for f in fields(FeedRow)
}


def _update_feeds(columns: tuple[str, ...], db: Any, rows: list[tuple[Any, ...]]) -> None:
    """update_feed of several feeds, the same columns, in one statement (PostgreSQL: the
    rows as arrays, unnest()). A feed another daemon holds is not written, and LeaseLost is
    raised before the transaction commits (a group is then rolled back and each save runs
    alone, so the refusal is that feed's)."""
    kinds = [("bigint[]", int), ("text[]", str), *(_ARRAYS[c] for c in columns)]
    arrays = [
        [None if row[k] is None else convert(row[k]) for row in rows] for k, (_t, convert) in enumerate(kinds)
    ]
    names = ", ".join(("id", "holder", *columns))
    cursor = db.execute(
        f"UPDATE feeds SET {', '.join(f'{c} = x.{c}' for c in columns)} "
        f"FROM unnest({', '.join(f'?::{t}' for t, _c in kinds)}) AS x({names}) "
        "WHERE feeds.id = x.id AND (feeds.leased_by IS NULL OR feeds.leased_by = x.holder) RETURNING feeds.id",
        arrays,
    )

    def check() -> None:
        written = {r[0] for r in cursor.fetchall()}
        missed = [row[0] for row in rows if row[0] not in written]
        if missed:
            subquery, param = values_of(db, missed)
            held = db.execute(f"SELECT id FROM feeds WHERE id IN ({subquery})", [param]).fetchone()
            if held:
                raise LeaseLost(f"feed {held[0]} is leased to another daemon")

    later(db, check)


def lease_ends_at(db: sqlite_utils.Database, now: float) -> float | None:
    """When the first live lease of a due feed runs out (its daemon may have died): the
    dispatcher looks again then (PostgreSQL)."""
    row = db.execute(
        "SELECT MIN(lease_until) FROM feeds WHERE lease_until > ? AND active = 1 "
        "AND next_check_at IS NOT NULL AND next_check_at <= lease_until",
        [now],
    ).fetchone()
    return row[0] if row else None
