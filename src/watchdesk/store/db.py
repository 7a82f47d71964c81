"""Open the database: WAL, busy_timeout, foreign keys, synchronous=FULL; check; migrate.

A store failure is one StoreError naming the file and what to do (explain())."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..errors import StoreError
from .sql import is_postgres

migrations = Migrations("watchdesk")


@migrations(name="0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            config_url TEXT NOT NULL UNIQUE,   -- as written in config: the feed's identity
            url TEXT NOT NULL,                 -- where it is polled now (301/308 update it)
            name TEXT NOT NULL,
            title TEXT,
            status TEXT NOT NULL DEFAULT 'new',
            active INTEGER NOT NULL DEFAULT 1, -- 0 once removed from the config
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            next_check_at REAL DEFAULT 0,      -- NULL: not polled again (410 Gone)
            last_polled_at REAL,
            last_success_at REAL,
            consecutive_errors INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_http_status INTEGER,
            malformed TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX feeds_due ON feeds(next_check_at);
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            guid TEXT,
            link TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            text TEXT NOT NULL,
            text_source TEXT NOT NULL,
            published REAL,
            seen_at REAL NOT NULL,
            alerting INTEGER NOT NULL,        -- 0 when stored outside the backfill window
            UNIQUE (feed_id, key)
        );
        CREATE INDEX entries_published ON entries(published);
        CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            watchlist TEXT NOT NULL,
            query TEXT NOT NULL,
            terms TEXT NOT NULL,              -- JSON list of {term, field, start, end}
            snippet TEXT NOT NULL,
            snippet_marks TEXT NOT NULL,      -- JSON list of [start, end]
            created_at REAL NOT NULL,
            alerted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (entry_id, watchlist)
        );
        CREATE INDEX hits_created ON hits(created_at);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            hit_id INTEGER REFERENCES hits(id) ON DELETE SET NULL,
            channel TEXT NOT NULL,
            payload TEXT NOT NULL,            -- JSON Alert
            status TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL
        );
        CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
        """
    )


@migrations(name="0002_article_text")
def _article_text(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE entries ADD COLUMN canonical_url TEXT;
        ALTER TABLE entries ADD COLUMN text_note TEXT;      -- why the page text is not used
        ALTER TABLE entries ADD COLUMN language TEXT;
        ALTER TABLE entries ADD COLUMN page_title TEXT;
        ALTER TABLE entries ADD COLUMN page_date TEXT;
        CREATE INDEX entries_canonical_url ON entries(canonical_url);
        """
    )


@migrations(name="0003_digests")
def _digests(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE outbox ADD COLUMN digest_at REAL;     -- NULL: sent on its own
        ALTER TABLE outbox ADD COLUMN digest_title TEXT;
        ALTER TABLE outbox ADD COLUMN capped INTEGER NOT NULL DEFAULT 0;  -- folded by max_per_hour
        CREATE INDEX outbox_sent ON outbox(channel, sent_at);
        """
    )


@migrations(name="0004_archive_search")
def _archive_search(db: sqlite_utils.Database) -> None:
    from ..language import fts_tokens  # the matcher's tokeniser: index and queries agree

    db.execute(
        "CREATE VIRTUAL TABLE entries_fts USING fts5(tokens, content='', tokenize='unicode61 remove_diacritics 0')"
    )
    rows = db.execute("SELECT id, title, text FROM entries").fetchall()
    db.conn.executemany(
        "INSERT INTO entries_fts (rowid, tokens) VALUES (?, ?)",
        ((entry_id, fts_tokens(title, text)) for entry_id, title, text in rows),
    )


@migrations(name="0005_delivery_attempts")
def _delivery_attempts(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE delivery_attempts (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
            at REAL NOT NULL,
            ok INTEGER NOT NULL,
            message TEXT NOT NULL,            -- the channel's answer (secrets redacted)
            duration_ms REAL NOT NULL
        );
        CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id);
        """
    )


@migrations(name="0006_feed_health")
def _feed_health(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE feeds ADD COLUMN failing_since REAL;       -- first failure of the current run of errors
        ALTER TABLE feeds ADD COLUMN last_entry_at REAL;       -- when the last new entry was stored
        ALTER TABLE feeds ADD COLUMN entries_waiting INTEGER NOT NULL DEFAULT 0;  -- new, over max_entries
        ALTER TABLE feeds ADD COLUMN backfill_before REAL;     -- a first poll's backlog: older entries don't alert
        ALTER TABLE feeds ADD COLUMN effective_interval REAL;  -- NULL: the configured one; less while overflowing
        ALTER TABLE feeds ADD COLUMN overflows INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE feeds ADD COLUMN health_alerted TEXT;      -- the incident a health alert went out for
        UPDATE feeds SET status = 'failing' WHERE status = 'error';
        UPDATE feeds SET failing_since = COALESCE(last_success_at, created_at) WHERE status = 'failing';
        CREATE INDEX entries_feed_seen ON entries(feed_id, seen_at);
        UPDATE feeds SET last_entry_at = (SELECT MAX(seen_at) FROM entries WHERE entries.feed_id = feeds.id);
        -- Validators were once saved from bodies that did not parse (a page that is no
        -- feed then answered 304 and looked ok): forget them all; each feed is fetched
        -- in full once more and parsed, its entries deduplicated as always.
        UPDATE feeds SET etag = NULL, last_modified = NULL, body_hash = NULL;
        CREATE INDEX outbox_hit ON outbox(hit_id);
        """
    )


@migrations(name="0007_stories")
def _stories(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,          -- alert identity: the first copy's canonical URL (else feed#entry)
            title TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            copies INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX stories_last_seen ON stories(last_seen);
        ALTER TABLE entries ADD COLUMN story_id INTEGER REFERENCES stories(id);
        CREATE INDEX entries_story ON entries(story_id);
        -- Within the [stories] window only (pruned): what finds a copy by its content.
        CREATE TABLE story_signatures (
            entry_id INTEGER PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
            story_id INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
            feed_id INTEGER NOT NULL,          -- a feed's own entries never join each other by content
            version INTEGER NOT NULL,          -- signature parameters: never compare two versions
            signature BLOB NOT NULL,
            seen_at REAL NOT NULL
        );
        CREATE INDEX story_signatures_seen ON story_signatures(seen_at);
        CREATE TABLE story_bands (             -- LSH: one key per band, the band index folded in
            band_key INTEGER NOT NULL,
            entry_id INTEGER NOT NULL REFERENCES story_signatures(entry_id) ON DELETE CASCADE,
            PRIMARY KEY (band_key, entry_id)
        ) WITHOUT ROWID;
        CREATE INDEX story_bands_entry ON story_bands(entry_id);
        CREATE TABLE story_titles (            -- teasers join by an exact normalised title (48 h)
            title TEXT NOT NULL,
            story_id INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
            feed_id INTEGER NOT NULL,          -- nor by title (a feed's recurring headlines)
            seen_at REAL NOT NULL
        );
        CREATE INDEX story_titles_title ON story_titles(title, seen_at);
        CREATE INDEX story_titles_seen ON story_titles(seen_at);
        """
    )


@migrations(name="0008_retention")
def _retention(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- Retention prunes the oldest entries first; the archive lists newest first.
        CREATE INDEX entries_seen ON entries(seen_at);
        """
    )


@migrations(name="0009_leases")
def _leases(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- Leases are PostgreSQL's (several daemons); the columns are here too, so the
        -- store functions are one SQL for both (SQLite's daemon lock is its lease).
        ALTER TABLE feeds ADD COLUMN leased_by TEXT;
        ALTER TABLE feeds ADD COLUMN lease_until REAL;
        ALTER TABLE feeds ADD COLUMN polled_by TEXT;
        CREATE TABLE channel_leases (
            channel TEXT PRIMARY KEY,
            leased_by TEXT NOT NULL,
            lease_until REAL NOT NULL
        );
        """
    )


@contextmanager
def without_fsync(db: sqlite_utils.Database) -> Iterator[None]:
    """A transaction whose commit does not wait for fsync (WAL, synchronous=NORMAL).

    A killed process loses no committed transaction either way; only a power cut could
    forget such a commit. Used where forgetting costs a repeat, never a loss: a feed's
    state after an unchanged poll (it is polled again), a delivery attempt's record (the
    alert is sent again). Entries, hits and outbox rows commit under synchronous=FULL.
    """
    if db.conn.in_transaction:  # inside a larger transaction: it commits as that one does
        with db.atomic():
            yield
        return
    if is_postgres(db):  # this transaction's commit does not wait for the WAL flush
        with db.atomic(fast=True):  # type: ignore[call-arg]
            yield
        return
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        with db.atomic():
            yield
    finally:
        db.execute("PRAGMA synchronous=FULL")


READ_COMMANDS = "feeds, hits, search, outbox, stories"
QUICK_CHECK_SHOWN = 3  # problems named in the message (quick_check stops after 100)


def open_db(
    path: Path | str,
    *,
    threaded: bool = True,
    read_only: bool = False,
    before_migrate: Callable[[], object] | None = None,
) -> sqlite_utils.Database:
    """Open (creating only when nothing is at `path`), check and migrate the database.

    A file there that is not a sound watchdesk database is refused, never taken as a new
    one: an empty file, a directory, garbage, a damaged file (`PRAGMA quick_check`), an
    SQLite file of something else. Every failure is a StoreError saying which file and
    what to do (explain()).

    The damage check (quick_check: about 0.5 s per GB, cached) runs when opening for writing (the
    daemon's start, `poll`, `prune`): never write into a damaged file. A reading command
    skips it (it cannot make things worse, and a page it reads that is damaged is still a
    StoreError); `watchdesk check` runs it on demand.

    `read_only`: for a command that only reads. The connection is query_only; a file
    this user cannot write (or whose directory it cannot write) is read through SQLite's
    read-only mode, or as immutable when SQLite cannot share it read-only and no `-wal`
    file holds changes; a database that does not exist yet reads as an empty one and no
    file is created. Otherwise the database must be writable, checked at once (a write
    rolled back), so a daemon never starts on a database it cannot write.

    A reading command never changes the file: a database an older watchdesk made, with
    upgrades pending, is a StoreError saying so (a daemon of the older version may still
    be running on it). `before_migrate`: called once the file is known to be a sound
    watchdesk database and before any upgrade is written (the daemon's lock, store/lock.py).

    `threaded`: the connection is handed to one store thread (store/engine.py) and used
    only there; sqlite3's same-thread check would refuse that hand-over."""
    if str(path) == ":memory:":
        return _prepared(_connect(":memory:", threaded), path, migrate=True, verify=False)
    path = Path(path)
    try:
        _refuse_what_is_no_database(path)
        if read_only and not path.exists():
            db = _prepared(_connect(":memory:", threaded), path, migrate=True, verify=False)
            db.execute("PRAGMA query_only=ON")
            return db
        if read_only:
            db = _readable(path, threaded, migrate=False, verify=False)[0]
            pending = migrations.pending(db)
            if pending:
                db.close()
                raise StoreError(
                    f"database {path} was made by an older watchdesk ({len(pending)} upgrades pending), "
                    "which a command that only reads does not apply: restart the daemon with this "
                    "version (or run `watchdesk poll --once`), then try again"
                )
            return db
        path.parent.mkdir(parents=True, exist_ok=True)
        return _writable(path, threaded, before_migrate)
    except (sqlite3.Error, OSError) as e:
        raise explain(path, e) from e


def database_size(path: Path | str) -> int:
    """Bytes the database takes on disk: its file and its `-wal` (0 in memory or missing)."""
    if str(path) == ":memory:":
        return 0
    total = 0
    for part in (Path(path), _wal(Path(path))):
        with suppress(OSError):
            total += part.stat().st_size
    return total


def human_size(n: float) -> str:
    """Bytes for a person: 812 B, 3.4 MB, 1.2 GB (binary multiples)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def check_db(path: Path | str) -> str:
    """What `watchdesk check` says of the database: its quick_check passed, and whether it
    can be written and is up to date; nothing is created or migrated. Raises StoreError
    (explain()) for a database that cannot be used."""
    path = Path(path)
    _refuse_what_is_no_database(path)
    if not path.exists():
        return "does not exist yet: `watchdesk run` or `watchdesk poll --once` creates it"
    try:
        db, writable = _readable(path, threaded=False, migrate=False, verify=True)
        with closing(db):
            notes = ["quick_check ok"]
            if not writable:
                notes.append("read-only for this user (`run` and `poll` need write access)")
            if "entries_fts" in db.table_names():
                if writable:
                    _check_search_index(db, path)
                    notes[0] += ", search index ok"
                else:
                    notes.append("search index not checked (that needs write access)")
            pending = migrations.pending(db)
            if pending:
                notes.append(f"{len(pending)} upgrades pending (the next `run` or `poll` applies them)")
            return "; ".join(notes)
    except (sqlite3.Error, OSError) as e:
        raise explain(path, e) from e


def _check_search_index(db: sqlite_utils.Database, path: Path) -> None:
    """FTS5's own integrity check of the search index (quick_check sees only that its
    pages are sound b-tree pages). It is run as a write, so in a savepoint rolled back."""
    db.execute("PRAGMA query_only=OFF")
    db.execute("SAVEPOINT watchdesk_fts_check")
    try:
        db.execute("INSERT INTO entries_fts(entries_fts) VALUES ('integrity-check')")
    except sqlite3.DatabaseError as e:
        if not (getattr(e, "sqlite_errorname", None) or "").startswith("SQLITE_CORRUPT"):
            raise
        raise StoreError(
            f"database {path}: its search index is damaged (sqlite: {e}): `watchdesk search` and "
            "`watchdesk rematch` fail or miss entries; restore the database from a backup "
            "(alerting and the rest of the archive still work)"
        ) from e
    finally:
        db.execute("ROLLBACK TO watchdesk_fts_check")
        db.execute("RELEASE watchdesk_fts_check")
        db.execute("PRAGMA query_only=ON")


def explain(path: Path | str, error: BaseException) -> StoreError:
    """A failure of the database at `path` as one clear message: which file, what is
    wrong with it, and what to do. For sqlite3 errors (by their SQLite code) and OSError."""
    if isinstance(error, StoreError):
        return error
    path = Path(path)
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorname", None) or ""
        detail = f"sqlite: {error}"
        if _read_only_error(error) and not code.startswith("SQLITE_CANTOPEN"):
            return StoreError(_read_only(path, detail))
        if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return StoreError(_damaged(path, detail))
        if code.startswith("SQLITE_CANTOPEN") and not _may_write(path):
            return StoreError(_read_only(path, detail))
        if code.startswith("SQLITE_CANTOPEN"):
            return StoreError(
                f"database {path} cannot be opened ({detail}): check that it and its directory "
                "exist and that this user may read and write them"
            )
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(
                f"database {path} is locked by another process ({detail}; waited 30 s): "
                "try again once it is done (is another watchdesk writing it?)"
            )
        if code.startswith("SQLITE_FULL"):
            return StoreError(f"database {path}: the disk is full ({detail}): free some space and try again")
        if code.startswith("SQLITE_IOERR"):
            return StoreError(
                f"database {path}: input/output error ({detail}): check the disk and its file "
                "system; if it goes on, restore the database from a backup"
            )
        return StoreError(f"database {path}: {detail}")
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
        if error.errno in (errno.EACCES, errno.EPERM):
            return StoreError(
                f"database {path}: permission denied{where}: run watchdesk as the user that "
                "owns it, or fix the permissions of the file and its directory"
            )
        if error.errno == errno.EROFS:
            return StoreError(_read_only(path, f"{reason}{where}"))
        if error.errno == errno.ENOSPC:
            return StoreError(f"database {path}: the disk is full{where}: free some space and try again")
        return StoreError(f"database {path}: {reason}{where}")
    return StoreError(f"database {path}: {error}")


def quick_check(db: sqlite_utils.Database) -> list[str]:
    """What `PRAGMA quick_check` finds wrong (at most 100 problems); [] when nothing."""
    rows = [" ".join(str(row[0]).split()) for row in db.execute("PRAGMA quick_check(100)").fetchall()]
    return [] if rows == ["ok"] else [row.removeprefix("*** in database main *** ") for row in rows]


# ---- the pieces of open_db ---------------------------------------------------------------


def _connect(path: Path | str, threaded: bool) -> sqlite3.Connection:
    new = str(path) == ":memory:" or not Path(path).exists()
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=not threaded)
    try:
        # A new file gives freed pages back in steps (retention); an existing file keeps
        # its mode (changing it takes a full VACUUM: `watchdesk prune` offers it). Only
        # for a new one: on an existing file the pragma commits a header write at every
        # open, even a reading command's, even into a damaged file before it is found so.
        if new:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


def _writable(
    path: Path, threaded: bool, before_migrate: Callable[[], object] | None
) -> sqlite_utils.Database:
    conn = _connect(path, threaded)

    def writable_then_hold() -> None:  # a read-only file is said as such before any lock file
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [migrations.migrations_table])
        if found.fetchone():  # (a new file has nothing to probe with, and is writable: just made)
            _probe_write(conn)
        if before_migrate is not None:
            before_migrate()

    try:
        db = _prepared(conn, path, migrate=True, verify=True, before_migrate=writable_then_hold)
    except BaseException:
        conn.close()
        raise
    return db


def _readable(
    path: Path, threaded: bool, *, migrate: bool, verify: bool
) -> tuple[sqlite_utils.Database, bool]:
    """The database, and whether this user can write it: opened as usual when it can (and
    migrated when `migrate`; without, probed for write access), else read-only (see
    _connect_read_only). query_only either way."""
    conn: sqlite3.Connection | None = None
    writable = True
    try:
        try:
            conn = _connect(path, threaded)
            db = _prepared(
                conn, path, migrate=migrate, verify=verify, wal=migrate
            )  # check_db changes nothing
            if not migrate:  # nothing written yet that would have shown it
                _probe_write(conn)
        except sqlite3.Error as e:
            if not _read_only_error(e):
                raise
            if conn is not None:
                conn.close()
            conn = _connect_read_only(path, threaded, e)
            db = _prepared(conn, path, migrate=False, verify=verify, wal=False)
            writable = False
            if migrate and migrations.pending(db):
                raise StoreError(
                    f"database {path} must be upgraded for this version of watchdesk, which needs "
                    f"write access (sqlite: {e}): run `watchdesk poll --once` once as the user "
                    "that owns it"
                ) from e
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    db.execute("PRAGMA query_only=ON")
    return db, writable


def _connect_read_only(path: Path, threaded: bool, cause: sqlite3.Error) -> sqlite3.Connection:
    """SQLite's read-only mode; immutable when that cannot work (SQLite needs to create the
    `-shm` file, in a directory this user cannot write) and no `-wal` file holds changes
    an immutable reading would miss."""
    uri = path.resolve().as_uri()
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + query, uri=True, timeout=30.0, check_same_thread=not threaded)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            conn.close()
            if "immutable" in query or not _read_only_error(e):
                raise
            wal = _wal(path)
            if wal.exists() and wal.stat().st_size:
                raise StoreError(
                    f"database {path} cannot be read by this user: its {wal.name} file holds "
                    "recent changes, which SQLite reads only with write access to the directory "
                    f"{path.parent} (sqlite: {cause}): run watchdesk as the user that owns it, or "
                    "fix the permissions"
                ) from e
    raise AssertionError("not reached")


def _prepared(
    conn: sqlite3.Connection,
    path: Path | str,
    *,
    migrate: bool,
    verify: bool,
    wal: bool = True,
    before_migrate: Callable[[], object] | None = None,
) -> sqlite_utils.Database:
    """The connection as a Database: refused unless it is watchdesk's (or empty) and sound;
    then in WAL mode (unless a read-only connection) and migrated when `migrate`. WAL is
    set only after the checks: it is written to the file's header, and a file refused is
    left as it was."""
    db = sqlite_utils.Database(conn, execute_plugins=False)
    tables = [name for name in db.table_names() if not name.startswith("sqlite_")]
    ours = migrations.migrations_table in tables and bool(migrations.applied(db))
    if not ours and set(tables) - {migrations.migrations_table}:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"database {path} is an SQLite database but not watchdesk's (its tables: {shown}): "
            "point [watchdesk] database at watchdesk's own file, or at a new path to start afresh"
        )
    problems = quick_check(db) if verify else []
    if problems:
        more = len(problems) - QUICK_CHECK_SHOWN
        shown = "; ".join(problems[:QUICK_CHECK_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise StoreError(_damaged(path, f"quick_check: {shown}"))
    if before_migrate is not None:
        before_migrate()
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    if migrate:
        migrations.apply(db)
    return db


def _probe_write(conn: sqlite3.Connection) -> None:
    """Raise now (SQLITE_READONLY...) if this connection cannot write: a statement that
    writes nothing still takes the write lock, and SQLite checks there. Rolled back."""
    conn.execute("SAVEPOINT watchdesk_write_probe")
    try:
        conn.execute(f"DELETE FROM {migrations.migrations_table} WHERE 0")
    finally:
        conn.execute("ROLLBACK TO watchdesk_write_probe")
        conn.execute("RELEASE watchdesk_write_probe")


def _refuse_what_is_no_database(path: Path) -> None:
    """What is at `path` cannot be a database (or it is a missing one whose recent changes
    are still there): refused before SQLite would take it as a new, empty database."""
    wal = _wal(path)
    if not path.exists():
        if path.is_symlink():
            raise StoreError(f"database {path} is a dangling symbolic link: fix the link or remove it")
        if wal.exists() and wal.stat().st_size:
            raise StoreError(
                f"database {path} does not exist but its {wal.name} file does (recent changes "
                "without their database): put the database file back (and its -shm file), or "
                f"move {wal.name} away to start afresh"
            )
        return
    if path.is_dir():
        raise StoreError(
            f"database {path} is a directory, not a database file: point [watchdesk] database "
            f"at a file (e.g. {path / 'watchdesk.db'})"
        )
    if not stat.S_ISREG(path.stat().st_mode):
        raise StoreError(f"database {path} is not a regular file: point [watchdesk] database at a file")
    try:
        with path.open("rb") as f:
            f.read(100)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise StoreError(
                f"database {path} cannot be read (permission denied): run watchdesk as the user "
                "that owns it, or fix its permissions"
            ) from e
        raise explain(path, e) from e
    if path.stat().st_size == 0:
        raise StoreError(
            f"database {path} is an empty file (0 bytes), not a watchdesk database, and is not "
            "taken as a new one: restore it from a backup, or delete it if nothing was ever "
            "stored there (watchdesk then creates a new database)"
        )


def _may_write(path: Path) -> bool:
    """This user may write the file (when it exists) and its directory (for the -wal and
    -shm files), as far as the permissions say."""
    existing = not path.exists() or os.access(path, os.W_OK)
    return existing and os.access(path.parent, os.W_OK | os.X_OK)


def _read_only_error(error: sqlite3.Error) -> bool:
    """An error saying this connection cannot write (the file, its directory or its -shm)."""
    code = getattr(error, "sqlite_errorname", None) or ""
    return code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))


def _read_only(path: Path | str, detail: str) -> str:
    return (
        f"database {path} is read-only (permission denied writing it or its directory "
        f"{Path(path).parent}; {detail}): fix the permissions, or run watchdesk as the user that "
        f"owns it; the commands that only read ({READ_COMMANDS}) may still read it"
    )


def _damaged(path: Path | str, detail: str) -> str:
    return (
        f"database {path} is not a watchdesk database or is damaged ({detail}): restore it "
        "from a backup or move it away to start afresh (`sqlite3 FILE .recover` may salvage "
        "what is left)"
    )


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")
