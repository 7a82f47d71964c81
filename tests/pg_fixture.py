"""A throwaway PostgreSQL database per test, on the server WATCHDESK_TEST_POSTGRES names
(postgresql://postgres@127.0.0.1:PORT/postgres). .ci/run starts one with .ci/postgres; by
hand: `.ci/postgres start DIR`, export the URL it prints, `.ci/postgres stop DIR` after.

    from pg_fixture import pg_url  # noqa: F401   (a fresh, empty database per test)
    from pg_fixture import requires_postgres       (skip a test when there is no server)

Without the variable, PostgreSQL tests skip; with it, they run (and fail if they cannot
connect). psycopg is imported only when a database is made, so this module imports
without it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

PG_URL = os.environ.get("WATCHDESK_TEST_POSTGRES")

NO_SERVER = (
    "WATCHDESK_TEST_POSTGRES is not set: no PostgreSQL server to test against "
    "(.ci/run starts one; `.ci/postgres start DIR` by hand)"
)

requires_postgres = pytest.mark.skipif(not PG_URL, reason=NO_SERVER)

# Only databases with this prefix are ever created or dropped here.
PREFIX = "wd_test_"


def _server_url() -> str:
    if not PG_URL:
        raise RuntimeError(NO_SERVER)
    return PG_URL


def with_database(url: str, name: str) -> str:
    """url (same scheme, user, host, port, query) naming database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def fresh_database() -> str:
    """Create a new, empty database (wd_test_<hex>) on the test server; return its URL."""
    import psycopg
    from psycopg import sql

    server = _server_url()
    name = PREFIX + uuid.uuid4().hex
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        # template0, not template1: CREATE DATABASE fails while anyone else is connected to
        # its template, and tests running side by side would be.
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return with_database(server, name)


def drop_database(url: str) -> None:
    """Drop the database fresh_database() made (closing any connection still open to it)."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a test database ({PREFIX}...)")
    # Connect to the server's own database (one cannot drop the database one is in).
    server = PG_URL or with_database(url, "postgres")
    with psycopg.connect(server, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test; skips without a server."""
    if not PG_URL:
        pytest.skip(NO_SERVER)
    url = fresh_database()
    try:
        yield url
    finally:
        drop_database(url)
