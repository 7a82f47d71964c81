"""The command line. Thin: parse arguments, call one function, render the result."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from typing import Any

import click

from .. import __version__
from ..errors import WatchdeskError
from ..notify.sanitize import one_line
from ..store import feeds as feed_store
from ..store import hits as hit_store
from ..store import open_db
from ..store import outbox as outbox_store
from .common import load, since_option, when
from .tools import COMMANDS


@click.group()
@click.version_option(__version__, prog_name="watchdesk")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (default: $WATCHDESK_CONFIG, ./watchdesk.toml, /etc/watchdesk/watchdesk.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override [watchdesk] log_level.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str | None) -> None:
    """watchdesk: watch news feeds for topics and alert people when an article matches."""
    ctx.obj = {"config": config_path, "log_level": log_level}


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon in the foreground (what systemd starts)."""
    from ..daemon import run_daemon

    config = load(ctx)
    try:
        asyncio.run(run_daemon(config))
    except WatchdeskError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(1)


@main.command()
@click.option("--once", is_flag=True, help="Poll every feed once, deliver, and exit (the only mode).")
@click.pass_context
def poll(ctx: click.Context, once: bool) -> None:
    """Poll every feed now, match, store, deliver; print a summary; exit."""
    from ..runtime import Runtime

    config = load(ctx)

    async def go() -> tuple[Any, Any]:
        rt = Runtime(config)
        try:
            summary = await rt.poll_feeds(rt.all_feeds())
            drained = await rt.drain()
            return summary, drained
        finally:
            await rt.aclose()

    try:
        summary, drained = asyncio.run(go())
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


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config and every watchlist; exit 2 on any problem."""
    config = load(ctx)
    click.echo(f"{config.path}: ok")
    click.echo(f"  database   {config.database}")
    click.echo(f"  feeds      {len(config.feeds)}")
    click.echo(f"  watchlists {len(config.watchlists)} in {config.watchlists_dir}")
    for w in config.watchlists:
        click.echo(f"    {w.name}: {len(w.match)} queries, notify {', '.join(w.notify)}, {w.delivery}")
    click.echo(f"  channels   {', '.join(f'{n} ({c.type})' for n, c in config.channels.items())}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed.")
@click.pass_context
def feeds(ctx: click.Context, as_json: bool) -> None:
    """Feeds with their health: status, last poll, consecutive errors, next check."""
    config = load(ctx, check_secrets=False)
    db = open_db(config.database)
    feed_store.sync_feeds(db, [(f.url, f.name) for f in config.feeds if f.enabled], time.time())
    rows = feed_store.all_feeds(db)
    if as_json:
        for row in rows:
            click.echo(json.dumps(asdict(row), ensure_ascii=False))
        return
    click.echo(f"{'feed':30} {'status':7} {'last poll':19} {'errors':>6} {'next check':19} last error")
    for row in rows:
        next_check = "never (410 Gone)" if row.next_check_at is None else when(row.next_check_at)
        click.echo(
            f"{one_line(row.name)[:30]:30} {row.status:7} {when(row.last_polled_at):19} "
            f"{row.consecutive_errors:>6} {next_check:19} {one_line(row.last_error or row.malformed or '')[:80]}"
        )


@main.command()
@click.option("--watchlist", "-w", help="Only this watchlist.")
@click.option("--since", metavar="DURATION", help="Only hits stored in this past window, e.g. 7d, 12h.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.pass_context
def hits(ctx: click.Context, watchlist: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Stored hits, newest first."""
    config = load(ctx, check_secrets=False)
    rows = hit_store.list_hits(
        open_db(config.database), watchlist=watchlist, since=since_option(since), limit=limit
    )
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        click.echo(f"{when(row['created_at'])}  {row['watchlist']}  {one_line(row['title'])}")
        click.echo(
            f"    {one_line(row['feed'])} | {one_line(row['link'] or '')} | matched {', '.join(row['terms'])}"
        )
        click.echo(f"    {one_line(row['snippet'])}")
    if not rows and not as_json:
        click.echo("no hits", err=True)


@main.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), help="Only rows in this state.")
@click.option("--limit", default=100, show_default=True)
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int) -> None:
    """Deliveries: pending, sent and dead. `outbox retry` sends dead ones again."""
    if ctx.invoked_subcommand:
        return
    config = load(ctx, check_secrets=False)
    db = open_db(config.database)
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
    db = open_db(config.database)
    row = outbox_store.get_row(db, row_id)
    if row is None:
        click.echo(f"watchdesk: no outbox row {row_id}", err=True)
        ctx.exit(1)
    click.echo(f"outbox {row.id}: {row.status}, channel {row.channel}, {row.attempts} attempts")
    click.echo(f"  {one_line(row.alert.watchlist)}: {one_line(row.alert.title)}")
    if row.digest_title:
        click.echo(f"  in digest: {one_line(row.digest_title)}")
    if row.status == "pending":
        click.echo(f"  next attempt: {when(row.next_attempt_at)}")
    for at, ok, message, ms in outbox_store.attempts_of(db, row.id):
        click.echo(f"  {when(at)}  {'ok    ' if ok else 'failed'}  {ms:7.1f} ms  {one_line(message)}")


@outbox.command("retry")
@click.argument("row_id", required=False, type=int)
@click.option("--all-dead", is_flag=True, help="Retry every dead delivery.")
@click.pass_context
def outbox_retry(ctx: click.Context, row_id: int | None, all_dead: bool) -> None:
    """Put a dead delivery (ID) or every dead one (--all-dead) back in the queue."""
    if (row_id is None) == (not all_dead):
        raise click.UsageError("give one outbox ID or --all-dead")
    config = load(ctx, check_secrets=False)
    n = outbox_store.retry(open_db(config.database), time.time(), row_id=row_id)
    if row_id is not None and n == 0:
        click.echo(f"outbox row {row_id} is not dead (see `watchdesk outbox --status dead`)", err=True)
        ctx.exit(1)
    click.echo(f"{n} deliveries queued again")


for _command in COMMANDS:
    main.add_command(_command)
