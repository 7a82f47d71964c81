"""Open the database: WAL, busy_timeout, foreign keys, synchronous=FULL; migrate."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ..errors import StoreError

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
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        with db.atomic():
            yield
    finally:
        db.execute("PRAGMA synchronous=FULL")


def open_db(path: Path | str, *, threaded: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) and migrate the database at `path`.

    `threaded`: the connection is handed to one store thread (store/engine.py) and used
    only there; sqlite3's same-thread check would refuse that hand-over."""
    try:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=not threaded)
        # A new file gives freed pages back in steps (retention); an existing file keeps
        # its mode (changing it takes a full VACUUM).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        db = sqlite_utils.Database(conn, execute_plugins=False)
        migrations.apply(db)
    except (sqlite3.Error, OSError) as e:
        raise StoreError(f"cannot open database {path}: {e}") from e
    return db
