"""The outbox table: one row per alert x channel, written with the hit, drained later."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from ..models import Alert

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


def alert_to_json(alert: Alert) -> str:
    data = asdict(alert)
    data["published"] = alert.published.isoformat() if alert.published else None
    return json.dumps(data, ensure_ascii=False)


def alert_from_json(text: str) -> Alert:
    data: dict[str, Any] = json.loads(text)
    data["published"] = datetime.fromisoformat(data["published"]) if data.get("published") else None
    data["terms"] = tuple(data.get("terms", ()))
    data["snippet_marks"] = tuple(tuple(m) for m in data.get("snippet_marks", ()))
    return Alert(**data)


def enqueue(
    db: sqlite_utils.Database,
    key: str,
    channel: str,
    alert: Alert,
    *,
    hit_id: int | None,
    now: float,
) -> bool:
    """Add a delivery; False when one with this idempotency key exists already."""
    cursor = db.execute(
        "INSERT OR IGNORE INTO outbox (idempotency_key, hit_id, channel, payload, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [key, hit_id, channel, alert_to_json(alert), now, now],
    )
    return bool(cursor.rowcount)


_COLUMNS = "id, idempotency_key, channel, payload, status, attempts, next_attempt_at, last_error, created_at, sent_at"


def _rows(db: sqlite_utils.Database, where: str, params: list[Any]) -> list[OutboxRow]:
    cursor = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE {where}", params)
    return [
        OutboxRow(r[0], r[1], r[2], alert_from_json(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
        for r in cursor.fetchall()
    ]


def due(
    db: sqlite_utils.Database, now: float, limit: int = 100, *, skip_channels: Collection[str] = ()
) -> list[OutboxRow]:
    """Pending rows whose time has come, oldest first; rows of `skip_channels` wait."""
    skip = list(skip_channels)
    marks = ",".join("?" * len(skip))
    return _rows(
        db,
        f"status = 'pending' AND next_attempt_at <= ? AND channel NOT IN ({marks}) "
        "ORDER BY next_attempt_at, id LIMIT ?",
        [now, *skip, limit],
    )


def list_rows(db: sqlite_utils.Database, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
    if status:
        return _rows(db, "status = ? ORDER BY id DESC LIMIT ?", [status, limit])
    return _rows(db, "1 = 1 ORDER BY id DESC LIMIT ?", [limit])


def next_due_at(db: sqlite_utils.Database) -> float | None:
    row = db.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()
    return row[0] if row else None


def mark_sent(db: sqlite_utils.Database, row_id: int, now: float) -> None:
    with db.atomic():
        db.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL WHERE id = ?",
            [now, row_id],
        )


def mark_failed(db: sqlite_utils.Database, row_id: int, error: str, *, retry_at: float | None) -> None:
    """A failed attempt: retry at `retry_at`, or dead when it is None."""
    with db.atomic():
        if retry_at is None:
            db.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
                [error, row_id],
            )
        else:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                [error, retry_at, row_id],
            )


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


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
