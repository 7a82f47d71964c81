"""The store: the embedded SQLite database, the one place state lives.

In: what the pipeline and the drainer record. Out: feeds due, entries known, hits, outbox
rows. open_db runs the migrations (db); one module per table (feeds, entries, hits, outbox)."""

from .db import open_db, without_fsync

__all__ = ["open_db", "without_fsync"]
