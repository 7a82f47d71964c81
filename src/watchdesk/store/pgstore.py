"""The Store over PostgreSQL: a psycopg pool, several daemons on one database by leases.

Store calls run in a few threads of this store's own, each on a connection from the
pool (a connection that broke is replaced: psycopg_pool checks it before lending it).
A call that loses a deadlock or a serialisation race to another daemon's transaction is
run again (its transaction rolled back whole, so nothing of it was kept).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from . import feeds as feed_store
from . import outbox as outbox_store
from . import pg, pgschema
from .engine import DEFAULT_LEASE, Store, WriteGroups

log = logging.getLogger(__name__)

WORKERS = 4  # store threads, one pool connection each
RETRIES = 5  # a transaction that lost a deadlock or serialisation race is run again
CHECK_IDLE = 5.0  # seconds: a pool connection idle longer is checked before it is lent


class PostgresStore(Store):
    shared = True
    kind = "postgresql"

    def __init__(
        self, url: str, *, password: str | None = None, node: str = "", lease: float = DEFAULT_LEASE
    ):
        psycopg = pg._psycopg()
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as e:  # pragma: no cover - the extra installs both
            raise pg.StoreError("psycopg_pool is not installed: pip install 'watchdesk[postgresql]'") from e
        self.url = url
        self.path = None
        self.node = node
        self.lease = lease
        self.lock = None
        self.shown = pg.shown(url)
        self._used: dict[int, float] = {}  # id(connection) -> when last used
        self._psycopg = psycopg
        self._retry_on = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        # The tools' and tests' own connection; also the one that upgrades the schema.
        tools = pg.connect(url, password)
        try:
            for name in pgschema.migrate(tools):
                log.info("database_upgraded database=%s upgrade=%s", self.shown, name)
            self.pool = ConnectionPool(
                pg.conninfo(url, password),
                kwargs={"autocommit": True},
                min_size=1,
                max_size=WORKERS,
                name="watchdesk",
                check=self._check,
                open=True,
            )
        except BaseException as e:
            tools.close()
            if isinstance(e, psycopg.Error):
                raise pg.explain(url, e) from e
            raise
        self.db = cast(Any, tools)
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="store-pg")
        self._size = 0
        self.groups = WriteGroups(self._executor.submit, self._in_pool)

    def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._call(fn, args, {})

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        for attempt in range(RETRIES):
            try:
                with self.pool.connection() as conn:
                    try:
                        return fn(pg.PgDatabase(conn, self.shown), *args, **kwargs)
                    finally:
                        self._used[id(conn)] = time.monotonic()
            except self._retry_on as e:
                if attempt == RETRIES - 1:
                    raise pg.explain(self.url, e) from e
                time.sleep(0.01 * 2**attempt)
            except self._psycopg.Error as e:
                raise pg.explain(self.url, e) from e
            except self._pool_errors() as e:
                raise pg.explain(self.url, e) from e
        raise AssertionError("unreachable")

    def _check(self, conn: Any) -> None:
        """The pool's check of a connection before lending it: one idle for a while (the
        server may have restarted) is asked an empty query; one used a moment ago is lent
        as it is, saving every store call that round trip."""
        if time.monotonic() - self._used.get(id(conn), 0.0) > CHECK_IDLE:
            from psycopg_pool import ConnectionPool

            ConnectionPool.check_connection(conn)

    def _pool_errors(self) -> tuple[type[BaseException], ...]:
        from psycopg_pool import PoolTimeout

        return (PoolTimeout,)

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, args, kwargs))

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self.read(fn, *args, **kwargs)

    def size(self) -> int:
        return self._size

    async def measure(self) -> int:
        self._size = int(await self.read(_database_size))
        return self._size

    async def claim_feeds(
        self, now: float, limit: int, skip: Collection[int] = ()
    ) -> list[feed_store.FeedRow]:
        rows: list[feed_store.FeedRow] = await self.write(
            _in_transaction(feed_store.claim_due_feeds), self.node, now, now + self.lease, limit, skip=skip
        )
        return rows

    async def renew_feeds(self, ids: Collection[int], now: float) -> int:
        if not ids:
            return 0
        lost: int = await self.write(feed_store.renew_leases, self.node, list(ids), now + self.lease)
        return lost

    async def claim_channels(self, channels: Collection[str], now: float) -> set[str]:
        if not channels:
            return set()
        held: set[str] = await self.write(
            outbox_store.claim_channels, self.node, sorted(channels), now, now + self.lease
        )
        return held

    async def release(self) -> None:
        await self.write(_release, self.node)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.pool.close()
        self.db.close()


def _in_transaction(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(db: Any, *args: Any, **kwargs: Any) -> Any:
        with db.atomic():
            return fn(db, *args, **kwargs)

    return run


def _release(db: Any, node: str) -> None:
    with db.atomic():
        feed_store.release_leases(db, node)
        outbox_store.release_channels(db, node)


def _database_size(db: Any) -> int:
    return int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
