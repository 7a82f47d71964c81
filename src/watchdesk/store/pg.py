"""PostgreSQL as the store: several daemons on one database.

`PgDatabase` gives the store functions (sql.Database) what they use of sqlite_utils'
Database, over a psycopg 3 connection in autocommit mode: `execute` with `?`
placeholders, `atomic()` (a transaction; nested: a savepoint), `conn.executemany`.
Schema upgrades run at start inside one transaction holding an advisory lock, so
daemons starting together apply each upgrade once. psycopg is an optional extra
(`pip install 'watchdesk[postgresql]'`), imported only when a PostgreSQL URL is used.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError

MIGRATIONS_TABLE = "watchdesk_migrations"
MIGRATION_LOCK = 0x77617463  # pg_advisory_xact_lock key of schema upgrades ("watc")
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

    @property
    def conn(self) -> PgDatabase:  # db.conn.executemany / db.conn.in_transaction, as with sqlite3
        return self

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Any:
        if parameters is None or len(parameters) == 0:
            return self._conn.execute(sql)
        return self._conn.execute(translate(sql), list(parameters))

    def executemany(self, sql: str, seq_of_parameters: Any) -> Any:
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
            self._depth += 1
            name = f"wd_{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
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
        self._conn.execute("BEGIN; SET LOCAL synchronous_commit = off" if fast else "BEGIN")
        try:
            yield self
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


# ---- schema ----------------------------------------------------------------------------

# Each upgrade: (name, SQL). The same tables and columns as the SQLite store's
# migrations (db.py), in PostgreSQL's types; the search index is a tsvector.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE feeds (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            config_url TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL,
            name TEXT NOT NULL,
            title TEXT,
            status TEXT NOT NULL DEFAULT 'new',
            active INTEGER NOT NULL DEFAULT 1,
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            next_check_at DOUBLE PRECISION DEFAULT 0,
            last_polled_at DOUBLE PRECISION,
            last_success_at DOUBLE PRECISION,
            consecutive_errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_http_status INTEGER,
            malformed TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            failing_since DOUBLE PRECISION,
            last_entry_at DOUBLE PRECISION,
            entries_waiting INTEGER NOT NULL DEFAULT 0,
            backfill_before DOUBLE PRECISION,
            effective_interval DOUBLE PRECISION,
            overflows INTEGER NOT NULL DEFAULT 0,
            health_alerted TEXT,
            leased_by TEXT,
            lease_until DOUBLE PRECISION,
            polled_by TEXT
        );
        CREATE INDEX feeds_due ON feeds(next_check_at);
        CREATE TABLE stories (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            copies INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX stories_last_seen ON stories(last_seen);
        CREATE TABLE entries (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            feed_id BIGINT NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            guid TEXT,
            link TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            text TEXT NOT NULL,
            text_source TEXT NOT NULL,
            published DOUBLE PRECISION,
            seen_at DOUBLE PRECISION NOT NULL,
            alerting INTEGER NOT NULL,
            canonical_url TEXT,
            text_note TEXT,
            language TEXT,
            page_title TEXT,
            page_date TEXT,
            story_id BIGINT REFERENCES stories(id),
            UNIQUE (feed_id, key)
        );
        CREATE INDEX entries_published ON entries(published);
        CREATE INDEX entries_canonical_url ON entries(canonical_url);
        CREATE INDEX entries_feed_seen ON entries(feed_id, seen_at);
        CREATE INDEX entries_story ON entries(story_id);
        CREATE INDEX entries_seen ON entries(seen_at);
        -- The archive's search index: the matcher's own tokens (language.fts_tokens) as
        -- lexemes, no positions; NULL where they do not fit a tsvector (always a candidate).
        CREATE TABLE entries_search (
            entry_id BIGINT PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
            tokens TSVECTOR
        );
        CREATE INDEX entries_search_tokens ON entries_search USING GIN (tokens);
        CREATE TABLE hits (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            entry_id BIGINT NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            watchlist TEXT NOT NULL,
            query TEXT NOT NULL,
            terms TEXT NOT NULL,
            snippet TEXT NOT NULL,
            snippet_marks TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            alerted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (entry_id, watchlist)
        );
        CREATE INDEX hits_created ON hits(created_at);
        CREATE TABLE outbox (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            hit_id BIGINT REFERENCES hits(id) ON DELETE SET NULL,
            channel TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            sent_at DOUBLE PRECISION,
            digest_at DOUBLE PRECISION,
            digest_title TEXT,
            capped INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
        CREATE INDEX outbox_sent ON outbox(channel, sent_at);
        CREATE INDEX outbox_hit ON outbox(hit_id);
        CREATE TABLE delivery_attempts (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            outbox_id BIGINT NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
            at DOUBLE PRECISION NOT NULL,
            ok INTEGER NOT NULL,
            message TEXT NOT NULL,
            duration_ms DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id);
        CREATE TABLE story_signatures (
            entry_id BIGINT PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
            story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
            feed_id BIGINT NOT NULL,
            version INTEGER NOT NULL,
            signature BYTEA NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX story_signatures_seen ON story_signatures(seen_at);
        CREATE TABLE story_bands (
            band_key BIGINT NOT NULL,
            entry_id BIGINT NOT NULL REFERENCES story_signatures(entry_id) ON DELETE CASCADE,
            PRIMARY KEY (band_key, entry_id)
        );
        CREATE INDEX story_bands_entry ON story_bands(entry_id);
        CREATE TABLE story_titles (
            title TEXT NOT NULL,
            story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
            feed_id BIGINT NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX story_titles_title ON story_titles(title, seen_at);
        CREATE INDEX story_titles_seen ON story_titles(seen_at);
        -- Which daemon delivers a channel now (outbox claims): one at a time per channel.
        CREATE TABLE channel_leases (
            channel TEXT PRIMARY KEY,
            leased_by TEXT NOT NULL,
            lease_until DOUBLE PRECISION NOT NULL
        );
        """,
    ),
]


def pending(db: PgDatabase) -> list[str]:
    if MIGRATIONS_TABLE not in db.table_names():
        return [name for name, _sql in MIGRATIONS]
    applied = {r[0] for r in db.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()}
    return [name for name, _sql in MIGRATIONS if name not in applied]


def migrate(db: PgDatabase, *, clock: Callable[[], float] = time.time) -> list[str]:
    """Apply pending upgrades in one transaction under an advisory lock: a daemon
    starting beside another waits for its upgrade, then finds nothing left to do."""
    done: list[str] = []
    with db.atomic():
        db.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        theirs = [t for t in db.table_names() if t != MIGRATIONS_TABLE]
        applied = {r[0] for r in db.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()}
        if theirs and not applied:
            raise StoreError(
                f"database {db.name} has tables but not watchdesk's ({', '.join(theirs[:5])}): "
                "point [watchdesk] database at a database of watchdesk's own"
            )
        for name, sql in MIGRATIONS:
            if name not in applied:
                db.executescript(sql)
                db.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)", [name, clock()]
                )
                done.append(name)
    return done


def check_readable(db: PgDatabase) -> None:
    """A reading command's database: made by watchdesk and up to date (it never upgrades)."""
    left = pending(db)
    if len(left) == len(MIGRATIONS):
        raise StoreError(
            f"database {db.name} has no watchdesk tables yet: `watchdesk run` or `watchdesk poll --once` creates them"
        )
    if left:
        raise StoreError(
            f"database {db.name} was made by an older watchdesk ({len(left)} upgrades pending), "
            "which a command that only reads does not apply: restart the daemon with this version, then try again"
        )


_TSQUERY_QUOTE = re.compile(r"['\\]")


def lexeme(token: str) -> str:
    """One token as a quoted tsquery/tsvector lexeme."""
    return "'" + _TSQUERY_QUOTE.sub(lambda m: "\\" + m.group(), token) + "'"
