"""The commands that run watchdesk or look at its state: run, poll, feeds, outbox."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from ..errors import StoreError, WatchdeskError
from ..notify.sanitize import one_line
from ..store import outbox as outbox_store
from ..store.db import human_size
from ..store.engine import size_of
from ..store.pg import shown
from .common import json_line, load, read_db, when, write_db, zone


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon in the foreground (what systemd starts)."""
    from .. import EarlyStop
    from .. import early_stop as caught

    early_stop = caught or EarlyStop()  # `watchdesk run` caught signals before its imports

    from ..daemon import run_daemon

    config = load(ctx, check_secrets=False)
    try:
        asyncio.run(run_daemon(config, lambda: early_stop.signal))
    except StoreError:
        raise  # Watchdesk.invoke: exit 2
    except WatchdeskError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(1)


@click.command()
@click.option("--once", is_flag=True, help="Poll every feed once, deliver, and exit (the only mode).")
@click.pass_context
def poll(ctx: click.Context, once: bool) -> None:
    """Poll every feed now, match, store, deliver; print a summary; exit."""
    from ..runtime import Runtime

    config = load(ctx, check_secrets=False)

    async def go() -> tuple[Any, Any]:
        rt = Runtime(config, lock="watchdesk poll --once")  # not beside a daemon on this database
        try:
            summary = await rt.poll_everything()
            drained = await rt.drain()
            return summary, drained
        finally:
            await rt.aclose()

    try:
        summary, drained = asyncio.run(go())
    except StoreError:
        raise  # Watchdesk.invoke: exit 2
    except WatchdeskError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(1)
    click.echo(
        f"polled {summary.feeds} feeds: {summary.fetched} changed, {summary.not_modified} not modified, "
        f"{summary.unchanged} unchanged, {summary.failed} failed; {summary.new_entries} new entries, "
        f"{summary.hits} hits, {summary.alerts_queued} alerts queued; delivered {drained.sent}, "
        f"retrying {drained.retrying}, dead {drained.dead}",
        err=True,
    )
    for error in summary.errors:
        click.echo(f"  failed: {one_line(error)}", err=True)


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per feed (times ISO 8601, with offset)."
)
@click.pass_context
def feeds(ctx: click.Context, as_json: bool) -> None:
    """Feeds with their health: status, since when, entries in 7 days, interval, next check.

    Reads only: the feeds table is the running daemon's, and only `run` and `poll` make it
    match their config."""
    from .feedview import feed_views

    config = load(ctx, check_secrets=False)
    db = read_db(config)
    views = feed_views(db, config, time.time())
    size = size_of(db, config.database)
    if as_json:
        for view in views:
            click.echo(json_line(view))
        return
    # Several daemons (PostgreSQL): which one polls each feed now, else which polled it last.
    nodes = len({v["polled_by"] for v in views if v["polled_by"]}) > 1 or any(
        v["polling_now_by"] for v in views
    )
    node_head = f" {'node':16}" if nodes else ""
    click.echo(
        f"{'feed':28} {'status':8} {'since':26} {'7d':>4} {'interval':>8} {'next check':22}{node_head} notes"
    )
    for v in views:
        node = ""
        if nodes:
            node = f" {one_line(v['polling_now_by'] + ' (now)' if v['polling_now_by'] else v['polled_by'] or '-')[:16]:16}"
        click.echo(
            f"{one_line(v['name'])[:28]:28} {v['status']:8} {v['since_text'][:26]:26} {v['entries_7d']:>4} "
            f"{v['interval_text']:>8} {v['next_check_text']:22}{node} {one_line(v['notes'])[:100]}"
        )
    click.echo(f"database {shown(str(config.database))}: {human_size(size)}")


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), help="Only rows in this state.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int) -> None:
    """Deliveries: pending, sent and dead. `outbox retry` sends dead ones again."""
    if ctx.invoked_subcommand:
        return
    config = load(ctx, check_secrets=False)
    db = read_db(config)
    counts = outbox_store.counts(db)
    click.echo("  ".join(f"{s}: {counts.get(s, 0)}" for s in ("pending", "sent", "dead")))
    for row in outbox_store.list_rows(db, status, limit):
        click.echo(
            f"{row.id:>6} {row.status:7} {row.channel:12} attempts={row.attempts} "
            f"{one_line(row.alert.title)[:60]}"
            + (f"  error: {one_line(row.last_error)}" if row.last_error else "")
        )


@outbox.command("show")
@click.argument("row_id", type=int)
@click.pass_context
def outbox_show(ctx: click.Context, row_id: int) -> None:
    """One delivery: its alert, its state, and every attempt made."""
    config = load(ctx, check_secrets=False)
    tz = zone(config)
    db = read_db(config)
    row = outbox_store.get_row(db, row_id)
    if row is None:
        click.echo(f"watchdesk: no outbox row {row_id}", err=True)
        ctx.exit(1)
    click.echo(f"outbox {row.id}: {row.status}, channel {row.channel}, {row.attempts} attempts")
    click.echo(f"  {one_line(row.alert.watchlist)}: {one_line(row.alert.title)}")
    if row.digest_title:
        click.echo(f"  in digest: {one_line(row.digest_title)}")
    if row.status == "pending":
        click.echo(f"  next attempt: {when(row.next_attempt_at, tz)}")
    for at, ok, message, ms in outbox_store.attempts_of(db, row.id):
        click.echo(f"  {when(at, tz)}  {'ok    ' if ok else 'failed'}  {ms:7.1f} ms  {one_line(message)}")


@outbox.command("retry")
@click.argument("row_id", required=False, type=int)
@click.option("--all-dead", is_flag=True, help="Retry every dead delivery.")
@click.pass_context
def outbox_retry(ctx: click.Context, row_id: int | None, all_dead: bool) -> None:
    """Put a dead delivery (ID) or every dead one (--all-dead) back in the queue."""
    if (row_id is None) == (not all_dead):
        raise click.UsageError("give one outbox ID or --all-dead")
    config = load(ctx, check_secrets=False)
    n = outbox_store.retry(write_db(config), time.time(), row_id=row_id)
    if row_id is not None and n == 0:
        click.echo(f"outbox row {row_id} is not dead (see `watchdesk outbox --status dead`)", err=True)
        ctx.exit(1)
    click.echo(f"{n} deliveries queued again")


OPERATE_COMMANDS = (run, poll, feeds, outbox)
