"""The outbox table: one row per alert x channel, written with the hit, drained later.

A row with `digest_at` set is a digest item: it goes out with the other items of its
channel and window, as one message, at `digest_at`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlite_utils

from ..models import Alert
from .db import without_fsync
from .sql import values_of

PENDING, SENT, DEAD = "pending", "sent", "dead"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    idempotency_key: str
    channel: str
    alert: Alert
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    sent_at: float | None
    digest_at: float | None = None
    digest_title: str | None = None
    capped: bool = False


_ALERT_FIELDS = tuple(f.name for f in fields(Alert))


def alert_to_json(alert: Alert) -> str:
    data = {name: getattr(alert, name) for name in _ALERT_FIELDS}  # shallow: asdict deep-copies
    data["published"] = alert.published.isoformat() if alert.published else None
    return json.dumps(data, ensure_ascii=False)


def alert_from_json(text: str) -> Alert:
    data: dict[str, Any] = json.loads(text)
    data["published"] = datetime.fromisoformat(data["published"]) if data.get("published") else None
    data["terms"] = tuple(data.get("terms", ()))
    data["snippet_marks"] = tuple(tuple(m) for m in data.get("snippet_marks", ()))
    data["also_in"] = tuple(data.get("also_in", ()))
    return Alert(**data)


def enqueue(
    db: sqlite_utils.Database,
    key: str,
    channel: str,
    alert: Alert,
    *,
    hit_id: int | None,
    now: float,
    digest_at: float | None = None,
    digest_title: str | None = None,
) -> bool:
    """Add a delivery; False when one with this idempotency key exists already."""
    cursor = db.execute(
        "INSERT INTO outbox (idempotency_key, hit_id, channel, payload, next_attempt_at, created_at, "
        "digest_at, digest_title) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [key, hit_id, channel, alert_to_json(alert), digest_at or now, now, digest_at, digest_title],
    )
    return bool(cursor.rowcount)


_COLUMNS = (
    "id, idempotency_key, channel, payload, status, attempts, next_attempt_at, last_error, created_at, sent_at, "
    "digest_at, digest_title, capped"
)


def _rows(db: sqlite_utils.Database, where: str, params: Sequence[Any]) -> list[OutboxRow]:
    cursor = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {where}", list(params))
    return [
        OutboxRow(
            id=r[0],
            idempotency_key=r[1],
            channel=r[2],
            alert=alert_from_json(r[3]),
            status=r[4],
            attempts=r[5],
            next_attempt_at=r[6],
            last_error=r[7],
            created_at=r[8],
            sent_at=r[9],
            digest_at=r[10],
            digest_title=r[11],
            capped=bool(r[12]),
        )
        for r in cursor.fetchall()
    ]


def _not_in(db: sqlite_utils.Database, skip: Collection[str]) -> tuple[str, list[Any]]:
    subquery, param = values_of(db, list(skip), kind="text")
    return subquery, [param]


def due(
    db: sqlite_utils.Database, now: float, limit: int = 100, *, skip_channels: Collection[str] = ()
) -> list[OutboxRow]:
    """Single alerts whose time has come, oldest first; rows of `skip_channels` wait."""
    marks, skip = _not_in(db, skip_channels)
    return _rows(
        db,
        f"status = 'pending' AND digest_at IS NULL AND next_attempt_at <= ? AND channel NOT IN ({marks}) "
        "ORDER BY next_attempt_at, id LIMIT ?",
        [now, *skip, limit],
    )


def due_digests(
    db: sqlite_utils.Database, now: float, *, skip_channels: Collection[str] = ()
) -> list[list[OutboxRow]]:
    """Digests whose time has come: the pending items of each (channel, window), newest first."""
    marks, skip = _not_in(db, skip_channels)
    groups = db.execute(
        "SELECT channel, digest_at FROM outbox WHERE status = 'pending' AND digest_at IS NOT NULL "
        f"AND next_attempt_at <= ? AND channel NOT IN ({marks}) GROUP BY channel, digest_at ORDER BY digest_at",
        [now, *skip],
    ).fetchall()
    return [
        _rows(
            db,
            "status = 'pending' AND channel = ? AND digest_at = ? ORDER BY created_at DESC, id DESC",
            [channel, digest_at],
        )
        for channel, digest_at in groups
    ]


def messages_sent_since(db: sqlite_utils.Database, channel: str, since: float) -> int:
    """Messages (a digest counts once) this channel delivered since `since`."""
    row = db.execute(
        "SELECT COUNT(*) FILTER (WHERE digest_at IS NULL) + COUNT(DISTINCT digest_at) "
        "FROM outbox WHERE channel = ? AND status = 'sent' AND sent_at >= ?",
        [channel, since],
    ).fetchone()
    return int(row[0]) if row else 0


def fold_into_digest(db: sqlite_utils.Database, row_id: int, digest_at: float, title: str) -> None:
    """Hold a single alert back for a digest (the channel reached its max_per_hour)."""
    with db.atomic():
        db.execute(
            "UPDATE outbox SET digest_at = ?, digest_title = ?, capped = 1, next_attempt_at = ? WHERE id = ?",
            [digest_at, title, digest_at, row_id],
        )


def list_rows(db: sqlite_utils.Database, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
    if status:
        return _rows(db, "status = ? ORDER BY id DESC LIMIT ?", [status, limit])
    return _rows(db, "1 = 1 ORDER BY id DESC LIMIT ?", [limit])


def _ids(row_ids: Sequence[int]) -> tuple[str, list[int]]:
    return ",".join("?" * len(row_ids)), list(row_ids)


def _record(
    db: sqlite_utils.Database, ids: list[int], now: float, ok: bool, message: str, duration_ms: float
) -> None:
    db.conn.executemany(
        "INSERT INTO delivery_attempts (outbox_id, at, ok, message, duration_ms) VALUES (?, ?, ?, ?, ?)",
        [(row_id, now, int(ok), message, duration_ms) for row_id in ids],
    )


def mark_sent(
    db: sqlite_utils.Database,
    row_ids: Sequence[int],
    now: float,
    *,
    message: str = "",
    duration_ms: float = 0.0,
) -> None:
    """A delivery the channel accepted; the attempt is recorded with it."""
    marks, ids = _ids(row_ids)
    with without_fsync(db):
        db.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL "
            f"WHERE id IN ({marks})",
            [now, *ids],
        )
        _record(db, ids, now, True, message or "delivered", duration_ms)


def mark_failed(
    db: sqlite_utils.Database,
    row_ids: Sequence[int],
    error: str,
    *,
    retry_at: float | None,
    now: float,
    duration_ms: float = 0.0,
) -> None:
    """A failed attempt: retry at `retry_at`, or dead when it is None; recorded either way."""
    marks, ids = _ids(row_ids)
    with without_fsync(db):
        if retry_at is None:
            db.execute(
                f"UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ? WHERE id IN ({marks})",
                [error, *ids],
            )
        else:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                f"WHERE id IN ({marks})",
                [error, retry_at, *ids],
            )
        _record(db, ids, now, False, error, duration_ms)


def attempts_of(db: sqlite_utils.Database, row_id: int) -> list[tuple[float, bool, str, float]]:
    """Every recorded attempt of one outbox row, oldest first: (at, ok, message, ms)."""
    rows = db.execute(
        "SELECT at, ok, message, duration_ms FROM delivery_attempts WHERE outbox_id = ? ORDER BY id", [row_id]
    ).fetchall()
    return [(at, bool(ok), message, ms) for at, ok, message, ms in rows]


def get_row(db: sqlite_utils.Database, row_id: int) -> OutboxRow | None:
    found = _rows(db, "id = ?", [row_id])
    return found[0] if found else None


def retry(db: sqlite_utils.Database, now: float, *, row_id: int | None = None) -> int:
    """Put dead rows (one, or all) back to pending, due now. Returns how many."""
    with db.atomic():
        if row_id is None:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? WHERE status = 'dead'",
                [now],
            )
        else:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                "WHERE id = ? AND status = 'dead'",
                [now, row_id],
            )
    return cursor.rowcount


def pending_age(db: sqlite_utils.Database, now: float) -> tuple[int, float | None]:
    """How many deliveries are pending, and how long the oldest that is due has waited
    (since it was queued, or since its digest was due; None when none is due yet)."""
    count, oldest = db.execute(
        "SELECT COUNT(*), MIN(CASE WHEN COALESCE(digest_at, created_at) <= ? "
        "THEN COALESCE(digest_at, created_at) END) FROM outbox WHERE status = 'pending'",
        [now],
    ).fetchone()
    return count, None if oldest is None else now - oldest


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())


def claim_channels(
    db: sqlite_utils.Database, node: str, channels: Sequence[str], now: float, lease_until: float
) -> set[str]:
    """PostgreSQL: which of these channels `node` delivers now, leased (or renewed) until
    `lease_until`; a channel another daemon holds by a live lease is not. One daemon at a
    time per channel: its order, its max_per_hour and its digests stay one daemon's."""
    held: set[str] = set()
    with db.atomic():
        for channel in sorted(channels):
            row = db.execute(
                "INSERT INTO channel_leases (channel, leased_by, lease_until) VALUES (?, ?, ?) "
                "ON CONFLICT (channel) DO UPDATE SET leased_by = excluded.leased_by, "
                "lease_until = excluded.lease_until "
                "WHERE channel_leases.leased_by = excluded.leased_by OR channel_leases.lease_until <= ? "
                "RETURNING channel",
                [channel, node, lease_until, now],
            ).fetchone()
            if row:
                held.add(row[0])
    return held


def release_channels(db: sqlite_utils.Database, node: str) -> int:
    """Give back `node`'s channel leases (a clean stop)."""
    return int(db.execute("DELETE FROM channel_leases WHERE leased_by = ?", [node]).rowcount)


def channel_holders(db: sqlite_utils.Database, now: float) -> dict[str, str]:
    """Channel -> the daemon holding it by a live lease."""
    rows = db.execute("SELECT channel, leased_by FROM channel_leases WHERE lease_until > ?", [now]).fetchall()
    return {channel: node for channel, node in rows}
