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

Group commit: `write_grouped(fn, ...)` is for the many small writes that may share a
transaction (a feed's state after a poll that found nothing new). Calls that arrive
while a group is being written wait for the next group, which runs them all in one
transaction (without fsync: db.without_fsync), so a busy daemon pays one commit, one
thread hand-off and one loop wake-up per group, not per poll; an idle one runs each at
once. On PostgreSQL a group's statements are pipelined (sql.pipelined): sent without
waiting for each one's answer, so a group costs one round trip. If anything in a group
fails, the group is rolled back and each call runs alone in its own transaction, so one
refusal (a lost lease, a bad row) is its caller's only.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlite_utils

from . import feeds as feed_store
from . import lock as database_lock
from .db import database_size, open_db, without_fsync
from .lock import DatabaseLock
from .sql import pipelined

P = ParamSpec("P")
T = TypeVar("T")


DEFAULT_LEASE = 60.0  # [watchdesk] lease

Call = Callable[[Any], Any]  # a grouped write: fn(db) inside a transaction it does not own
Outcome = tuple[bool, Any]  # (True, its result) or (False, the exception it raised)


class WriteGroups:
    """The queue behind Store.write_grouped: one group is written at a time; calls that
    arrive meanwhile form the next one. `run(fn, *args)` runs fn(db, *args) in the store's
    threads (the backend's own, with its retries); it is called from those threads."""

    def __init__(self, submit: Callable[[Callable[[], None]], object], run: Callable[..., Any]):
        self._submit = submit
        self._run = run
        self._lock = threading.Lock()
        self._queued: list[tuple[Call, asyncio.Future[Any]]] = []
        self._busy = False
        self.groups = 0  # groups written (for tests and benchmarks)
        self.calls = 0  # calls written in them

    async def call(self, call: Call) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queued.append((call, future))
            start, self._busy = not self._busy, True
        if start:
            self._next(loop)
        return await future

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have a store thread write the queued calls; if the store is closed, they fail."""
        try:
            self._submit(functools.partial(self._write, loop))
        except RuntimeError as e:  # the store's threads are shut down
            with self._lock:
                queued, self._queued = self._queued, []
                self._busy = False
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(
                    _settle, [future for _call, future in queued], [(False, e)] * len(queued)
                )

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a store thread: the queued calls, one transaction; then hand the outcomes
        to the loop in one wake-up, and queue the next group if calls arrived."""
        with self._lock:
            queued, self._queued = self._queued, []
        outcomes: list[Outcome] = []
        try:
            outcomes = self._outcomes([call for call, _future in queued])
        except BaseException as e:  # not even the calls alone could run (KeyboardInterrupt...)
            outcomes = [(False, e)] * len(queued)
            raise
        finally:
            self.groups += 1
            self.calls += len(queued)
            with self._lock:
                more = bool(self._queued)
                self._busy = more
            with suppress(RuntimeError):  # the loop is closed: nobody waits for these any more
                loop.call_soon_threadsafe(_settle, [future for _call, future in queued], outcomes)
            if more:
                self._next(loop)

    def _outcomes(self, calls: list[Call]) -> list[Outcome]:
        if len(calls) > 1:
            try:
                return [(True, result) for result in self._run(_together, calls)]
            except Exception:  # one of them (or the commit) failed: the group wrote nothing
                pass
        outcomes: list[Outcome] = []
        for call in calls:
            try:
                outcomes.append((True, self._run(_together, [call])[0]))
            except Exception as e:
                outcomes.append((False, e))
        return outcomes


def _together(db: Any, calls: list[Call]) -> list[Any]:
    with pipelined(db), without_fsync(db):
        return [call(db) for call in calls]


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


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
        self.groups = WriteGroups(self._writer.submit, self._on_writer)

    def _on_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.db, *args)

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

    async def write_grouped(
        self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """fn(db, ...) in a transaction the store owns and may share with other grouped
        writes (group commit; see the module's docstring), committed without fsync: for
        writes where forgetting costs a repeat, never a loss. fn must not commit, and may
        run twice (in a group that failed and was rolled back, then alone)."""
        result: T = await self.groups.call(functools.partial(_bind, fn, args, kwargs))
        return result

    def close(self) -> None:
        """Wait for queued calls (a write in progress commits), then close the connections."""
        self._writer.shutdown(wait=True)
        if self._reader is not self._writer:
            self._reader.shutdown(wait=True)
            self._reader_db.close()
        self.db.close()
        if self.lock is not None:
            self.lock.release()


def _bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], db: Any) -> Any:
    return fn(db, *args, **kwargs)


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
