"""What the command-line modules share: loading the config, logging, parsing options."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlite_utils

from ..config import Config, find_config, load_config, parse_duration
from ..errors import ConfigError, Problem, StoreError
from ..store import open_db
from ..store.pg import is_postgres_url

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str, style: str = "logfmt", node: str | None = None) -> None:
    """Log to stderr at `level`, as `style`: logfmt or JSON lines (ops/logfmt.py), or the
    plain `text` of LOG_FORMAT (values not quoted: for a person, not a machine). `node`:
    every logfmt or JSON line names this daemon (several daemons on one PostgreSQL)."""
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=LOG_FORMAT, force=True)
    if style != "text":
        from ..ops import logfmt

        for handler in logging.getLogger().handlers:
            logfmt.install(handler, style, node)
    # httpx logs full URLs at INFO, and a webhook URL is a secret.
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


def warning(problem: Problem) -> str:
    """A warning as `file:line: warning: message` (an error is `file:line: message`)."""
    return str(replace(problem, message=f"warning: {problem.message}"))


def load(ctx: click.Context, *, check_secrets: bool = True, tool: bool = False) -> Config:
    """The config, or exit 2 listing its problems; its warnings go to stderr too (they do
    not stop anything). A hand-run `tool` goes on without the watchlist files that have
    problems, and says which it left out; it does not repeat the config's warnings (no
    feeds, an ignored file...), which are about the daemon: `check` and `run` show them."""
    try:
        config = load_config(
            find_config(ctx.obj["config"]), check_secrets=check_secrets, broken_watchlists_ok=tool
        )
    except ConfigError as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        ctx.exit(2)
    for problem in config.watchlist_problems:
        click.echo(warning(replace(problem, message=f"{problem.message} (watchlist left out)")), err=True)
    for problem in () if tool else config.warnings:
        click.echo(warning(problem), err=True)
    setup_logging(
        ctx.obj["log_level"] or config.log_level,
        ctx.obj.get("log_format") or config.log_format,
        node=config.node if is_postgres_url(config.database) else None,
    )
    ctx.obj["database"] = config.database  # named when a store error reaches the top (main.py)
    return config


def database_password(config: Config) -> str | None:
    """[watchdesk] password, resolved (a PostgreSQL database); a reference that does not
    resolve is a StoreError naming it."""
    if not config.database_password:
        return None
    from ..config import secrets

    try:
        return secrets.resolve(config.database_password)
    except secrets.SecretError as e:
        raise StoreError(f"[watchdesk] password {config.database_password}: {e}") from e


def write_db(config: Config) -> sqlite_utils.Database:
    """The database for a command that writes (prune, rematch, outbox retry): checked and
    upgraded as the daemon would."""
    from ..store.engine import open_database

    return open_database(config.database, password=database_password(config))


def read_db(config: Config) -> sqlite_utils.Database:
    """The database for a command that only reads: query_only, and read through SQLite's
    read-only mode when this user cannot write it. One that does not exist yet reads as
    empty, with a note, and is not created. PostgreSQL: a read-only session."""
    if is_postgres_url(config.database):
        from ..store.engine import open_database

        return open_database(config.database, password=database_password(config), read_only=True)
    path = Path(config.database)
    if not path.exists() and not path.is_symlink() and not path.with_name(path.name + "-wal").exists():
        click.echo(
            f"watchdesk: note: database {path} does not exist yet, so nothing is stored "
            "(`watchdesk run` or `watchdesk poll --once` creates it)",
            err=True,
        )
    return open_db(path, read_only=True)


# C1 controls, DEL, bidi marks, embeddings, overrides and isolates, line and paragraph
# separators: json.dumps escapes C0 controls itself, and ensure_ascii=False keeps the rest.
_JSON_INERT = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_line(value: Any) -> str:
    """One JSON value on one line, text as it is (not ASCII-escaped) except the characters
    that would act on a terminal, which are written as \\uXXXX escapes: shown inert, read back
    unchanged by any JSON parser."""
    return _JSON_INERT.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def since_option(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return time.time() - parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def zone(config: Config | None) -> tzinfo:
    """The zone times are shown in: [watchdesk] timezone (UTC without a config)."""
    return UTC if config is None or config.timezone == "UTC" else ZoneInfo(config.timezone)


def iso(ts: float | None, tz: tzinfo = UTC) -> str | None:
    """An epoch time as ISO 8601 with its offset, in `tz` (the --json outputs):
    2026-12-03T19:20:00+01:00, or 2026-12-03T18:20:00Z in UTC."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if tz is UTC else text


def when(ts: float | None, tz: tzinfo = UTC, *, seconds: bool = True) -> str:
    """An epoch time for a person, in `tz` with its abbreviation: 2026-12-03 19:20:00 CET."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "") + " %Z")


def has_config(ctx: click.Context) -> bool:
    try:
        find_config(ctx.obj["config"])
    except ConfigError:
        return False
    return True


def optional_config(ctx: click.Context) -> Config | None:
    """The config when one is given or found; tools that work without one take None."""
    return load(ctx, check_secrets=False, tool=True) if has_config(ctx) else None
