"""The embedded SQLite store: open_db() and the migrations; one module per table."""

from .db import open_db

__all__ = ["open_db"]
