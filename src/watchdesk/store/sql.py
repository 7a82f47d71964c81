"""The SQL both stores speak, and the few places where it differs.

The store's functions (feeds.py, entries.py, ...) take a `Database` and write SQL that
SQLite and PostgreSQL both run: `?` placeholders (pg.py turns them into psycopg's),
`INSERT ... ON CONFLICT`, `RETURNING`, CASE instead of SQLite's two-argument MIN/MAX.
Where the two differ (a list of ids as one parameter, the search index, physical row
ids, streaming a large result) they ask here, by `is_postgres(db)`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...
    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any: ...


class Database(Protocol):
    """What the store functions use of a database: sqlite_utils.Database has it, and
    pg.PgDatabase gives the same over a psycopg connection."""

    @property
    def conn(self) -> Any: ...
    def execute(self, sql: str, parameters: Any = ...) -> Any: ...
    def executescript(self, sql: str) -> Any: ...
    def atomic(self) -> AbstractContextManager[Any]: ...
    def close(self) -> None: ...


def is_postgres(db: object) -> bool:
    return getattr(db, "dialect", "sqlite") == "postgresql"


def pipelined(db: Any) -> AbstractContextManager[Any]:
    """A block whose statements need not wait for each other's results (PostgreSQL's
    pipeline mode, for a group commit's many small writes; SQLite runs in-process and has
    nothing to wait for). Store functions that read a count a later statement does not
    need hand the check to later()."""
    return db.pipelined() if is_postgres(db) else nullcontext(db)


def pipelining(db: Any) -> bool:
    """Inside pipelined() on PostgreSQL: writes may wait in batch() for the group's commit."""
    return bool(is_postgres(db) and db.pipelining)


def batch(db: Any, key: Hashable, write: Callable[[Any, list[Any]], None], row: Any, ident: Hashable) -> None:
    """write(db, rows) of `row` together with the other rows batched under `key`, in one
    statement before the next other statement or the commit (pg.PgDatabase.batch); a
    write to one `ident` twice keeps its order. Outside pipelined(): at once, alone."""
    if pipelining(db):
        db.batch(key, write, row, ident)
    else:
        write(db, [row])


def later(db: Any, check: Callable[[], None]) -> None:
    """Run `check` once the statements sent so far have their results: at once, or
    inside pipelined() before the enclosing transaction commits (its exception rolls
    that transaction back, as if raised at once)."""
    if is_postgres(db):
        db.later(check)
    else:
        check()


def values_of(db: object, values: Collection[int] | Collection[str], *, kind: str = "int") -> tuple[str, Any]:
    """A subquery giving these values, as ONE parameter whatever their number:
    `column IN ({sql})` / `NOT IN`. SQLite reads a JSON array (json_each), PostgreSQL an
    array. `kind`: "int" or "text"."""
    items = sorted(values)
    if is_postgres(db):
        return (f"SELECT unnest(?::{'bigint' if kind == 'int' else 'text'}[])", list(items))
    return "SELECT value FROM json_each(?)", json.dumps(items)


def row_id(db: object) -> str:
    """The physical row id of a table without a key of its own: SQLite's rowid, PostgreSQL's ctid."""
    return "ctid" if is_postgres(db) else "rowid"


def stream(db: Any, sql: str, params: Sequence[Any] | None = None, batch: int = 500) -> Iterator[Any]:
    """Rows of a query that may be large (the whole archive), `batch` at a time: SQLite
    steps its cursor; PostgreSQL uses a server-side cursor, so a client never holds the
    whole result at once."""
    if is_postgres(db):
        yield from db.stream(sql, params or [], batch)
        return
    cursor = db.execute(sql, params or [])
    while rows := cursor.fetchmany(batch):
        yield from rows
