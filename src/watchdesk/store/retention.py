"""Retention: what `[retention]` keeps, pruned in small batches.

- entries with no hit, seen before the cutoff, lose their text and their search-index
  row; their identity (feed, key, guid, link, dates, story) stays as a small tombstone,
  so a pruned entry is still known: it never comes back as new and never alerts again;
- hits created before their cutoff go (`hits = "forever"` by default); their entries
  then prune like any other;
- sent deliveries (and their attempts) sent before their cutoff go; pending and dead
  ones always stay.

Each batch is one short transaction sized to hold the write lock for about
TARGET_BATCH_SECONDS, so polls' commits go in between. Freed pages are reused by SQLite
(the file stops growing); with auto_vacuum=INCREMENTAL they are also given back to the
file system in steps, and `convert_to_incremental` makes a file so (one full VACUUM).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from ..language import fts_tokens
from . import search
from .db import without_fsync
from .engine import Store
from .pg import PRUNE_LOCK
from .sql import is_postgres

IDLE_PER_BUSY = 9  # the daemon's prune holds the writer at most a tenth of the time
TARGET_BATCH_SECONDS = 0.05  # well under the ~100 ms a batch may hold the write lock
MIN_BATCH, MAX_BATCH = 20, 5000
VACUUM_PAGES = 2000  # pages given back per incremental step (8 MB at 4 KB pages)
PRUNED = "pruned"  # entries.text_source of a tombstone


@dataclass
class Cutoffs:
    """Instants (epoch seconds): older than these goes; None keeps everything."""

    entries: float | None = None
    hits: float | None = None
    outbox: float | None = None


@dataclass
class Pruned:
    entries: int = 0
    hits: int = 0
    deliveries: int = 0
    bytes_freed: int = 0
    batches: int = 0
    longest_batch: float = 0.0  # seconds one batch held the write lock

    def add(self, other: Pruned) -> None:
        self.entries += other.entries
        self.hits += other.hits
        self.deliveries += other.deliveries
        self.bytes_freed += other.bytes_freed
        self.batches += other.batches
        self.longest_batch = max(self.longest_batch, other.longest_batch)

    @property
    def any(self) -> bool:
        return bool(self.entries or self.hits or self.deliveries)


def count(db: sqlite_utils.Database, cutoffs: Cutoffs) -> Pruned:
    """What a prune would remove now (`--dry-run`). Entries whose hits would go first are
    counted too."""
    found = Pruned()
    if cutoffs.hits is not None:
        found.hits = _one(db, "SELECT COUNT(*) FROM hits WHERE created_at < ?", [cutoffs.hits])
    if cutoffs.entries is not None:
        hit_cutoff = cutoffs.hits if cutoffs.hits is not None else float("-inf")
        found.entries = _one(
            db,
            "SELECT COUNT(*) FROM entries e WHERE e.seen_at < ? AND e.text_source != ? AND NOT EXISTS "
            "(SELECT 1 FROM hits h WHERE h.entry_id = e.id AND h.created_at >= ?)",
            [cutoffs.entries, PRUNED, hit_cutoff],
        )
    if cutoffs.outbox is not None:
        found.deliveries = _one(
            db, "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND sent_at < ?", [cutoffs.outbox]
        )
    return found


def prune_batch(db: sqlite_utils.Database, cutoffs: Cutoffs, size: int) -> Pruned:
    """One transaction removing up to `size` rows of each kind; run it again while it
    removes something."""
    started = time.perf_counter()
    done = Pruned(batches=1)
    with without_fsync(db):  # a batch forgotten by a power cut is simply pruned again
        if is_postgres(db) and not _one(db, "SELECT pg_try_advisory_xact_lock(?)", [PRUNE_LOCK]):
            return done  # another daemon is pruning this instant: its batches do the work
        if cutoffs.hits is not None:
            done.hits = db.execute(
                "DELETE FROM hits WHERE id IN (SELECT id FROM hits WHERE created_at < ? LIMIT ?)",
                [cutoffs.hits, size],
            ).rowcount
        if cutoffs.entries is not None:
            done.entries = _tombstone(db, cutoffs.entries, size)
        if cutoffs.outbox is not None:
            done.deliveries = db.execute(
                "DELETE FROM outbox WHERE id IN "
                "(SELECT id FROM outbox WHERE status = 'sent' AND sent_at < ? LIMIT ?)",
                [cutoffs.outbox, size],
            ).rowcount
    done.longest_batch = time.perf_counter() - started
    return done


def _tombstone(db: sqlite_utils.Database, before: float, size: int) -> int:
    rows = db.execute(
        "SELECT e.id, e.title, e.text FROM entries e WHERE e.seen_at < ? AND e.text_source != ? "
        "AND NOT EXISTS (SELECT 1 FROM hits h WHERE h.entry_id = e.id) ORDER BY e.seen_at LIMIT ?",
        [before, PRUNED, size],
    ).fetchall()
    if not rows:
        return 0
    # Indexed with the matcher's tokens of the stored title and text: FTS5 (contentless)
    # deletes a row by being given those again.
    search.forget(db, [(entry_id, fts_tokens(title, text)) for entry_id, title, text in rows])
    ids = [(entry_id,) for entry_id, _title, _text in rows]
    db.conn.executemany(
        "UPDATE entries SET title = '', summary = '', text = '', text_source = ?, text_note = NULL, "
        "language = NULL, page_title = NULL, page_date = NULL WHERE id = ?",
        [(PRUNED, entry_id) for (entry_id,) in ids],
    )
    db.conn.executemany("DELETE FROM story_signatures WHERE entry_id = ?", ids)
    return len(rows)


def next_size(size: int, took: float) -> int:
    """The next batch's size, aiming at TARGET_BATCH_SECONDS of write lock."""
    if took > 1.6 * TARGET_BATCH_SECONDS:
        return max(MIN_BATCH, size // 2)
    if took < 0.4 * TARGET_BATCH_SECONDS:
        return min(MAX_BATCH, size * 2)
    return size


def file_bytes(db: sqlite_utils.Database) -> int:
    """The database's size as SQLite sees it (pages x page size; the WAL not counted)."""
    if is_postgres(db):
        return _one(db, "SELECT pg_database_size(current_database())", [])
    pages = _one(db, "PRAGMA page_count", [])
    return pages * _one(db, "PRAGMA page_size", [])


def give_back(db: sqlite_utils.Database, pages: int = VACUUM_PAGES) -> int:
    """With auto_vacuum=INCREMENTAL, return up to `pages` free pages to the file system;
    the bytes given back (0 in other modes: SQLite reuses the free pages; PostgreSQL's
    autovacuum does this itself)."""
    if is_postgres(db) or _one(db, "PRAGMA auto_vacuum", []) != 2:
        return 0
    before = file_bytes(db)
    db.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
    return before - file_bytes(db)


def free_bytes(db: sqlite_utils.Database) -> int:
    if is_postgres(db):
        return 0
    return _one(db, "PRAGMA freelist_count", []) * _one(db, "PRAGMA page_size", [])


def convert_to_incremental(db: sqlite_utils.Database) -> bool:
    """Make the file auto_vacuum=INCREMENTAL (one full VACUUM: it rewrites the file and
    needs as much free disk again). False when it was already (or PostgreSQL)."""
    if is_postgres(db) or _one(db, "PRAGMA auto_vacuum", []) == 2:
        return False
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("VACUUM")
    return True


def _one(db: sqlite_utils.Database, sql: str, params: list[object]) -> int:
    row = db.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def prune_all(db: sqlite_utils.Database, cutoffs: Cutoffs, size: int = 500) -> Pruned:
    """Every batch until nothing is left, then the freed pages given back (`watchdesk
    prune`, on the caller's thread; the daemon runs the same batches through its store)."""
    total = Pruned()
    while True:
        done = prune_batch(db, cutoffs, size)
        total.add(done)
        size = next_size(size, done.longest_batch)
        if not done.any:
            break
    while (given := give_back(db)) > 0:
        total.bytes_freed += given
    return total


async def prune_through(
    store: Store, cutoffs: Cutoffs, stop: Callable[[], bool] = lambda: False, size: int = 500
) -> Pruned:
    """The daemon's prune: the same batches, each its own call on the store's writer
    thread, so polls' commits queue in between; stops early when `stop()` says so."""
    total = Pruned()
    while not stop():
        done = await store.write(prune_batch, cutoffs, size)
        total.add(done)
        size = next_size(size, done.longest_batch)
        if not done.any:
            break
        await asyncio.sleep(done.longest_batch * IDLE_PER_BUSY)  # polls' commits go first
    while not stop() and (given := await store.write(give_back)) > 0:
        total.bytes_freed += given
        await asyncio.sleep(0.05)
    return total


def cutoffs_at(now: float, entries: float | None, hits: float | None, outbox: float | None) -> Cutoffs:
    """Cutoffs from retention durations (None: kept for ever)."""
    return Cutoffs(
        entries=None if entries is None else now - entries,
        hits=None if hits is None else now - hits,
        outbox=None if outbox is None else now - outbox,
    )
