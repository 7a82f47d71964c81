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

This is the one boundary between the daemon and its database: PostgresStore (pg.py's
database) implements the same calls over a psycopg connection pool, and the same store
functions run on both (sql.py). Leases are the Store's too:

- `claim_feeds`: the due feeds this daemon polls now. PostgreSQL leases them to this
  daemon (`[watchdesk] node`) in one statement, FOR UPDATE SKIP LOCKED, so several
  daemons never poll one feed at once; the poll's own transaction releases the lease,
  `renew_feeds` extends it while a poll runs, and one whose daemon died runs out and is
  claimed by another. With SQLite the database's lock (lock.py) is the lease: one
  daemon holds every feed, so claiming is a read, and a database another process has
  locked for writing does not stop polling.
- `claim_channels`: the channels whose deliveries this daemon sends now (one daemon
  per channel at a time, the same way); with SQLite, every channel.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlite_utils

from . import feeds as feed_store
from . import lock as database_lock
from .db import database_size, open_db
from .lock import DatabaseLock

P = ParamSpec("P")
T = TypeVar("T")


DEFAULT_LEASE = 60.0  # [watchdesk] lease


class Store:
    shared = False  # several daemons on one database (PostgreSQL)
    kind = "sqlite"

    def __init__(
        self,
        db: sqlite_utils.Database,
        path: Path | str | None = None,
        *,
        node: str = "",
        lease: float = DEFAULT_LEASE,
    ):
        """`db`: the writer connection (opened threaded). `path`: where a second connection
        for reads can be opened; None (or an in-memory database): reads share the writer."""
        self.db = db
        self.path = path
        self.node = node
        self.lease = lease
        self.shown = str(path) if path is not None else ":memory:"
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
    def open(
        cls,
        path: Path | str,
        *,
        lock: str | None = None,
        password: str | None = None,
        node: str = "",
        lease: float = DEFAULT_LEASE,
    ) -> Store:
        """Open (creating and migrating if needed) the database at `path`: an SQLite file,
        or a PostgreSQL URL (`password` for it, if not in its libpq environment). `lock`:
        hold the SQLite database's lock (store/lock.py) as `lock` ("watchdesk run") until
        close(), taken once the file is known sound and before anything is written to it;
        PostgreSQL takes none (several daemons share it, by leases)."""
        from .pg import is_postgres_url

        if is_postgres_url(path):
            from .pgstore import PostgresStore

            return PostgresStore(str(path), password=password, node=node, lease=lease)
        held: list[DatabaseLock] = []

        def take() -> None:
            held.append(database_lock.hold(path, lock or ""))

        store = cls(
            open_db(path, threaded=True, before_migrate=take if lock else None), path, node=node, lease=lease
        )
        store.lock = held[0] if held else None
        return store

    def size(self) -> int:
        """Bytes of the database file and its WAL (0 in memory): a stat, no query."""
        return database_size(self.path) if self.path is not None else 0

    async def measure(self) -> int:
        """The database's size, off the loop (PostgreSQL asks the server)."""
        return self.size()

    # ---- leases (see the module's docstring) ----------------------------------------

    async def claim_feeds(
        self, now: float, limit: int, skip: Collection[int] = ()
    ) -> list[feed_store.FeedRow]:
        """Up to `limit` due feeds for this daemon to poll now, not those in `skip`."""
        return await self.read(feed_store.due_feeds, now, limit, skip=skip)

    async def renew_feeds(self, ids: Collection[int], now: float) -> int:
        """Polls of these feeds still run here: keep their leases; how many were lost to
        another daemon."""
        return 0

    async def claim_channels(self, channels: Collection[str], now: float) -> set[str]:
        """Which of these channels this daemon delivers now."""
        return set(channels)

    async def release(self) -> None:
        """A clean stop: give back every lease this daemon holds."""

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


# ---- for commands: one connection, either backend -----------------------------------


def open_database(target: Path | str, *, password: str | None = None, read_only: bool = False) -> Any:
    """A command's database (sql.Database): an SQLite file (db.open_db) or a PostgreSQL
    URL. `read_only`: never changes anything (PostgreSQL: a read-only session, refused if
    its schema is missing or not up to date); otherwise upgrades the schema first."""
    from . import pg, pgschema

    if not pg.is_postgres_url(target):
        return open_db(target, read_only=read_only)
    db = pg.connect(str(target), password, read_only=read_only)
    try:
        if read_only:
            pgschema.check_readable(db)
        else:
            pgschema.migrate(db)
    except BaseException as e:
        db.close()
        if isinstance(e, pg._psycopg().Error):
            raise pg.explain(str(target), e) from e
        raise
    return db


def size_of(db: Any, target: Path | str) -> int:
    """Bytes the database takes: its file and WAL, or PostgreSQL's pg_database_size."""
    from .sql import is_postgres

    if is_postgres(db):
        return int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    return database_size(target)


def check_database(target: Path | str, *, password: str | None = None) -> str:
    """What `watchdesk check` says of the database (db.check_db for SQLite). Raises
    StoreError for one that cannot be used."""
    from . import pg, pgschema
    from .db import check_db

    if not pg.is_postgres_url(target):
        return check_db(target)
    db = pg.connect(str(target), password, read_only=True)
    try:
        version = db.execute("SHOW server_version").fetchone()[0]
        left = pgschema.pending(db)
        if len(left) == len(pgschema.MIGRATIONS):
            state = "no watchdesk tables yet (`watchdesk run` or `watchdesk poll --once` creates them)"
        elif left:
            state = f"{len(left)} upgrades pending (the next `run` or `poll` applies them)"
        else:
            state = "schema up to date"
        return f"PostgreSQL {version}, {state}"
    finally:
        db.close()


def explain_failure(target: Path | str, error: BaseException) -> Exception:
    """A store failure (sqlite3, psycopg or StoreError) as one StoreError naming the database."""
    from . import pg
    from .db import explain

    if pg.is_postgres_url(target):
        return pg.explain(str(target), error)
    return explain(target, error)
