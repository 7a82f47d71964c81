"""`watchdesk prune`: [retention] by hand."""

from __future__ import annotations

import time

import click

from ..config import parse_duration
from ..store import retention
from ..store.db import human_size
from ..store.engine import size_of
from ..store.sql import is_postgres
from .common import load, write_db


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@click.option(
    "--entries",
    "entries",
    metavar="DURATION",
    help="Prune entries with no hit older than this for this run (any duration, 0s included), "
    "instead of [retention] entries.",
)
@click.option(
    "--vacuum",
    is_flag=True,
    help="Also make a database from an older version give freed space back (one full VACUUM: "
    "it rewrites the file and needs as much free disk again).",
)
@click.pass_context
def prune(ctx: click.Context, dry_run: bool, entries: str | None, vacuum: bool) -> None:
    """Prune now what [retention] keeps no longer; print what went and the bytes freed.

    Entries with no hit lose their text and search-index row (a tombstone stays, so they
    never come back as new); hits and sent deliveries go after their own durations."""
    config = load(ctx, check_secrets=False, tool=True)
    keep = config.retention
    try:
        entries_for = parse_duration(entries) if entries is not None else keep.entries
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--entries") from None
    cutoffs = retention.cutoffs_at(time.time(), entries_for, keep.hits, keep.outbox)
    db = write_db(config)
    try:
        if dry_run:
            found = retention.count(db, cutoffs)
            click.echo(
                f"would prune {found.entries:,} entries (their text and index rows), {found.hits:,} hits, "
                f"{found.deliveries:,} sent deliveries; nothing changed (--dry-run)"
            )
            return
        before = size_of(db, config.database)
        done = retention.prune_all(db, cutoffs)
        converted = retention.convert_to_incremental(db) if vacuum else False
        if not is_postgres(db):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = size_of(db, config.database)
        free = retention.free_bytes(db)
    finally:
        db.close()
    click.echo(
        f"pruned {done.entries:,} entries (their text and index rows), {done.hits:,} hits, "
        f"{done.deliveries:,} sent deliveries in {done.batches} batches; freed {human_size(max(0, before - after))} "
        f"(file {human_size(before)} -> {human_size(after)})"
        + (f"; {human_size(free)} free inside the file for reuse" if free else "")
        + ("; converted to auto_vacuum=INCREMENTAL" if converted else "")
    )


MAINTENANCE_COMMANDS = (prune,)
