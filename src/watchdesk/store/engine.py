"""The store as the daemon uses it: every call runs off the event loop.

The store's operations are plain functions `fn(db, ...)` (feeds.py, entries.py, hits.py,
stories.py, outbox.py); the CLI's tools call them directly. The daemon calls them
through a Store, which runs them in threads of its own:

- `write(fn, ...)`: on the one writer thread, which owns the write connection.
  A database locked by another process (busy_timeout waits up to 30 s), a slow fsync or
  a full disk holds up that thread only: polling, delivery and the watchdog go on, and
  their writes queue behind it in order.
- `read(fn, ...)`: on a reader thread with its own connection. Under WAL a reader never
  waits for a writer (ours or another process's), so the dispatcher still finds due feeds
  while a write is stuck.

This is the one boundary between the daemon and its database: a second backend
(PostgreSQL) implements the same two calls over a connection pool.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import sqlite_utils

from . import lock as database_lock
from .db import database_size, open_db
from .lock import DatabaseLock

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path | str | None = None):
        """`db`: the writer connection (opened threaded). `path`: where a second connection
        for reads can be opened; None (or an in-memory database): reads share the writer."""
        self.db = db
        self.path = path
        self.lock: DatabaseLock | None = None  # Store.open(lock=...)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self._reader_db = db
        self._reader = self._writer
        if path is not None and str(path) != ":memory:":
            conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=ON")
            self._reader_db = sqlite_utils.Database(conn, execute_plugins=False)
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-read")

    @classmethod
    def open(cls, path: Path | str, *, lock: str | None = None) -> Store:
        """Open (creating and migrating if needed) the database at `path`. `lock`: hold
        the database's lock (store/lock.py) as `lock` ("watchdesk run") until close(),
        taken once the file is known sound and before anything is written to it."""
        held: list[DatabaseLock] = []

        def take() -> None:
            held.append(database_lock.hold(path, lock or ""))

        store = cls(open_db(path, threaded=True, before_migrate=take if lock else None), path)
        store.lock = held[0] if held else None
        return store

    def size(self) -> int:
        """Bytes of the database file and its WAL (0 in memory): a stat, no query."""
        return database_size(self.path) if self.path is not None else 0

    async def read(
        self, fn: Callable[Concatenate[sqlite_utils.Database, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._reader, functools.partial(fn, self._reader_db, *args, **kwargs)
        )

    async def write(
        self, fn: Callable[Concatenate[sqlite_utils.Database, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """fn(db, ...) on the writer thread. fn owns its transaction, as every store function
        that writes does (db.atomic(), or without_fsync where forgetting costs a repeat)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(fn, self.db, *args, **kwargs))

    def close(self) -> None:
        """Wait for queued calls (a write in progress commits), then close the connections."""
        self._writer.shutdown(wait=True)
        if self._reader is not self._writer:
            self._reader.shutdown(wait=True)
            self._reader_db.close()
        self.db.close()
        if self.lock is not None:
            self.lock.release()
