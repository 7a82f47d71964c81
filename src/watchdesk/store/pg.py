"""PostgreSQL as the store: several daemons on one database.

`PgDatabase` gives the store functions (sql.Database) what they use of sqlite_utils'
Database, over a psycopg 3 connection in autocommit mode: `execute` with `?`
placeholders, `atomic()` (a transaction; nested: a savepoint), `conn.executemany`, and
`pipelined()`: a group commit's statements sent without waiting for each one's result
(psycopg's pipeline mode: about half the client CPU per statement, one round trip).
Schema upgrades run at start inside one transaction holding an advisory lock, so
daemons starting together apply each upgrade once. psycopg is an optional extra
(`pip install 'watchdesk[postgresql]'`), imported only when a PostgreSQL URL is used.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError

PRUNE_LOCK = 0x70727565  # one daemon prunes at a time ("prue")
STORY_LOCK = 0x73746F72  # story assignment of new entries, across daemons ("stor")
URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_PREFIXES)


def shown(url: str) -> str:
    """The URL as it may be logged or printed: any password in it replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """SQLite-style `?` placeholders -> psycopg's `%s` (a literal % doubled), outside
    quoted strings."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgDatabase:
    """A psycopg connection as the store functions use a database (sql.Database)."""

    dialect = "postgresql"

    def __init__(self, conn: Any, name: str = "postgresql"):
        self._conn = conn
        self.name = name
        self._depth = 0  # savepoints open
        self._pipeline: Any = None  # psycopg's Pipeline while pipelined()
        self._checks: list[Callable[[], None]] = []  # later(): run once the results are in
        # batch(): rows waiting to be written in one statement per key, and whose they are
        self._batches: dict[Hashable, tuple[Callable[[PgDatabase, list[Any]], None], list[Any]]] = {}
        self._batched: set[Hashable] = set()

    @property
    def conn(self) -> PgDatabase:  # db.conn.executemany / db.conn.in_transaction, as with sqlite3
        return self

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Any:
        if self._batches:  # what was batched is written before anything that may read it
            self._flush()
        if parameters is None or len(parameters) == 0:
            cursor = self._conn.execute(sql)
        else:
            cursor = self._conn.execute(translate(sql), list(parameters))
        return cursor if self._pipeline is None else _Pending(cursor, self._pipeline)

    @property
    def pipelining(self) -> bool:
        return self._pipeline is not None

    @contextmanager
    def pipelined(self) -> Iterator[PgDatabase]:
        """Statements in this block are sent without waiting for their results (psycopg's
        pipeline mode); reading a result (fetchone, rowcount) waits for it, and checks
        handed to later() run before the transaction commits. Enter it outside atomic()."""
        if self._pipeline is not None:
            yield self
            return
        with self._conn.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield self
            finally:
                self._pipeline = None
                self._checks = []
                self._batches = {}
                self._batched = set()

    def later(self, check: Callable[[], None]) -> None:
        """Run `check` (which reads results and may raise) once the statements sent so far
        have answered: now, or, while pipelined, before the enclosing atomic() block ends,
        whose transaction (or savepoint) an exception from it rolls back."""
        if self._pipeline is None:
            check()
        else:
            self._checks.append(check)

    def batch(
        self, key: Hashable, write: Callable[[PgDatabase, list[Any]], None], row: Any, ident: Hashable
    ) -> None:
        """Have write(db, rows) write `row` with the other rows batched under `key`, in one
        statement: while pipelined, sent before the next other statement or the commit
        (a second row of the same `ident`, in any batch, sends what waits first, so writes
        to one row keep their order); otherwise at once, alone. write() hands what it must
        check of the answer to later()."""
        if self._pipeline is None:
            write(self, [row])
            return
        if ident in self._batched:
            self._flush()
        self._batches.setdefault(key, (write, []))[1].append(row)
        self._batched.add(ident)

    def _flush(self) -> None:
        batches, self._batches, self._batched = self._batches, {}, set()
        for write, rows in batches.values():
            write(self, rows)

    def _settle(self) -> None:
        if self._batches:
            self._flush()
        if self._checks:
            self._pipeline.sync()
            checks, self._checks = self._checks, []
            for check in checks:
                check()

    def executemany(self, sql: str, seq_of_parameters: Any) -> Any:
        if self._batches:
            self._flush()
        cursor = self._conn.cursor()
        rows = [list(p) for p in seq_of_parameters]
        if rows:
            cursor.executemany(translate(sql), rows)
        return cursor

    def executescript(self, sql: str) -> None:
        self._conn.execute(sql)

    def atomic(self, *, fast: bool = False) -> AbstractContextManager[Any]:
        """A transaction (nested: a savepoint). `fast`: its commit does not wait for the
        WAL flush (db.without_fsync), set in the same round trip as the BEGIN."""
        return self._transaction(fast)

    @contextmanager
    def _transaction(self, fast: bool) -> Iterator[PgDatabase]:
        if self.in_transaction:
            self._settle()  # what came before the savepoint is not its to roll back, nor to refuse
            self._depth += 1
            name = f"wd_{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
                self._settle()
            except BaseException:
                if not self._conn.broken:
                    self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self._conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                self._conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._depth -= 1
            return
        if self._pipeline is not None:  # one statement per query in pipeline mode
            self._conn.execute("BEGIN")
            if fast:
                self._conn.execute("SET LOCAL synchronous_commit = off")
        else:
            self._conn.execute("BEGIN; SET LOCAL synchronous_commit = off" if fast else "BEGIN")
        try:
            yield self
            self._settle()
        except BaseException:
            if not self._conn.broken:
                self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def stream(self, sql: str, parameters: Sequence[Any], batch: int) -> Iterator[Any]:
        """A server-side cursor, `batch` rows per round trip (sql.stream)."""
        with self.atomic(), self._conn.cursor(name=f"wd_stream_{id(self):x}") as cursor:
            cursor.itersize = batch
            cursor.execute(translate(sql) if parameters else sql, list(parameters) or None)
            yield from cursor

    def table_names(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self._conn.close()


class _Pending:
    """A pipelined statement's cursor: its results arrive when the pipeline syncs, so
    reading rowcount syncs first (psycopg's own fetch methods wait by themselves); a
    count read too early would otherwise be -1."""

    __slots__ = ("_cursor", "_pipeline")

    def __init__(self, cursor: Any, pipeline: Any):
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        if self._cursor.rowcount == -1:
            self._pipeline.sync()
        return int(self._cursor.rowcount)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


# ---- connecting ------------------------------------------------------------------------


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise StoreError(
            "[watchdesk] database is a PostgreSQL URL, but psycopg is not installed: "
            "pip install 'watchdesk[postgresql]'"
        ) from e
    return psycopg


def conninfo(url: str, password: str | None = None, *, application: str = "watchdesk") -> str:
    """libpq connection string of `url` (with its own libpq environment: PGPASSWORD,
    ~/.pgpass, PGSSLMODE...), the password given separately if any."""
    psycopg = _psycopg()
    extra: dict[str, Any] = {"application_name": application, "connect_timeout": 10}
    if password is not None:
        extra["password"] = password
    return str(psycopg.conninfo.make_conninfo(url, **extra))


def connect(url: str, password: str | None = None, *, read_only: bool = False) -> PgDatabase:
    """One connection (a command's, or the one tools and tests use), autocommit."""
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(conninfo(url, password), autocommit=True)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
    except psycopg.Error as e:
        raise explain(url, e) from e
    return PgDatabase(conn, shown(url))


def explain(url: str, error: BaseException) -> StoreError:
    """A PostgreSQL failure as one clear message naming the database (never its password)."""
    if isinstance(error, StoreError):
        return error
    where = shown(url)
    detail = " ".join(str(error).split()) or type(error).__name__
    try:
        psycopg = _psycopg()
    except StoreError as e:
        return e
    sqlstate = getattr(error, "sqlstate", None) or ""
    if isinstance(error, psycopg.OperationalError) and not sqlstate:
        return StoreError(
            f"database {where} cannot be reached ({detail}): check that PostgreSQL runs there, "
            "and the URL's host, port, user and password ([watchdesk] password or PGPASSWORD)"
        )
    if sqlstate in ("28P01", "28000"):
        return StoreError(f"database {where}: authentication failed ({detail}): check the user and password")
    if sqlstate == "3D000":
        return StoreError(f"database {where} does not exist ({detail}): create it (createdb) first")
    if sqlstate == "42501":
        return StoreError(f"database {where}: permission denied ({detail}): grant this user its tables")
    if sqlstate in ("53100",):
        return StoreError(f"database {where}: the disk is full ({detail}): free some space and try again")
    return StoreError(f"database {where}: {detail}")


_TSQUERY_QUOTE = re.compile(r"['\\]")


def lexeme(token: str) -> str:
    """One token as a quoted tsquery/tsvector lexeme."""
    return "'" + _TSQUERY_QUOTE.sub(lambda m: "\\" + m.group(), token) + "'"
