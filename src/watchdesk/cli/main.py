"""The command line. Thin: parse arguments, call one function, render the result."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from .. import __version__
from ..errors import WatchdeskError
from ..notify.sanitize import one_line
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
    from .. import EarlyStop
    from .. import early_stop as caught

    early_stop = caught or EarlyStop()  # `watchdesk run` caught signals before its imports

    from ..daemon import run_daemon

    config = load(ctx, check_secrets=False)
    try:
        asyncio.run(run_daemon(config, lambda: early_stop.signal))
    except WatchdeskError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(1)


@main.command()
@click.option("--once", is_flag=True, help="Poll every feed once, deliver, and exit (the only mode).")
@click.pass_context
def poll(ctx: click.Context, once: bool) -> None:
    """Poll every feed now, match, store, deliver; print a summary; exit."""
    from ..runtime import Runtime

    config = load(ctx, check_secrets=False)

    async def go() -> tuple[Any, Any]:
        rt = Runtime(config)
        try:
            summary = await rt.poll_everything()
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed (times ISO 8601 UTC).")
@click.pass_context
def feeds(ctx: click.Context, as_json: bool) -> None:
    """Feeds with their health: status, since when, entries in 7 days, interval, next check.

    Reads only: the feeds table is the running daemon's, and only `run` and `poll` make it
    match their config."""
    from .feedview import feed_views

    config = load(ctx, check_secrets=False)
    views = feed_views(open_db(config.database), config, time.time())
    if as_json:
        for view in views:
            click.echo(json.dumps(view, ensure_ascii=False))
        return
    click.echo(
        f"{'feed':28} {'status':8} {'since (UTC)':26} {'7d':>4} {'interval':>8} {'next check (UTC)':19} notes"
    )
    for v in views:
        click.echo(
            f"{one_line(v['name'])[:28]:28} {v['status']:8} {v['since_text'][:26]:26} {v['entries_7d']:>4} "
            f"{v['interval_text']:>8} {v['next_check_text']:19} {one_line(v['notes'])[:100]}"
        )


@main.command()
@click.option("--watchlist", "-w", help="Only this watchlist.")
@click.option("--feed", "feed_name", metavar="NAME", help="Only hits from this feed (its name, any case).")
@click.option(
    "--alerted/--not-alerted",
    default=None,
    help="Only hits queued to at least one channel, or only hits queued to none.",
)
@click.option("--since", metavar="DURATION", help="Only hits stored in this past window, e.g. 7d, 12h.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.pass_context
def hits(
    ctx: click.Context,
    watchlist: str | None,
    feed_name: str | None,
    alerted: bool | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Stored hits, newest first: where each was alerted (and in what state), or why not.

    Times are UTC."""
    config = load(ctx, check_secrets=False)
    rows = hit_store.list_hits(
        open_db(config.database),
        watchlist=watchlist,
        since=since_option(since),
        limit=limit,
        feed=feed_name,
        alerted=alerted,
    )
    for row in rows:
        if as_json:
            click.echo(json.dumps(_hit_json(row), ensure_ascii=False))
            continue
        click.echo(
            f"hit {row['id']}  {when(row['created_at'])} UTC  {one_line(row['watchlist'])}  {one_line(row['title'])}"
        )
        published = f"published {when(row['published'])} UTC" if row["published"] is not None else "undated"
        click.echo(
            f"    {one_line(row['feed'])} | {published} | {one_line(row['link'] or '')} | "
            f"matched {one_line(', '.join(row['terms']))}"
        )
        click.echo(f"    {_hit_fate(row)}")
        click.echo(f"    {one_line(row['snippet'])}")
    if not rows and not as_json:
        click.echo("no hits", err=True)


def _iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, e.g. 2026-12-03T18:20:00Z (`hits --json`)."""
    from datetime import UTC, datetime

    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest_json(delivery: dict[str, Any]) -> dict[str, Any] | None:
    if delivery["digest_at"] is None:
        return None
    return {"title": delivery["digest_title"], "window_end": _iso(delivery["digest_at"])}


def _hit_json(row: dict[str, Any]) -> dict[str, Any]:
    """One hit for `hits --json`: `alerted` is true when it queued at least one delivery,
    `alerted_to` lists them; times are ISO 8601 UTC."""
    alerted_to = [
        {
            "channel": d["channel"],
            "status": d["status"],
            "outbox_id": d["outbox_id"],
            "sent_at": _iso(d["sent_at"]),
            "digest": _digest_json(d),
        }
        for d in row["deliveries"]
    ]
    digests = [d["digest"] for d in alerted_to if d["digest"] is not None]
    return {
        "id": row["id"],
        "watchlist": row["watchlist"],
        "feed": row["feed"],
        "title": row["title"],
        "link": row["link"],
        "story": row["story"],
        "published": _iso(row["published"]),
        "created_at": _iso(row["created_at"]),
        "alerted": bool(alerted_to),
        "alerted_to": alerted_to,
        "duplicate_of": row["duplicate_of"],
        "duplicate_of_feed": row["duplicate_of_feed"],
        "outside_backfill": row["outside_backfill"],
        "digest": digests[0] if digests else None,
        "query": row["query"],
        "terms": row["terms"],
        "snippet": row["snippet"],
        "text_source": row["text_source"],
    }


def _hit_fate(row: dict[str, Any]) -> str:
    """`alerted: console (sent ...), slack (pending, waiting for ...)`, or why not."""
    if row["deliveries"]:
        parts = []
        for d in row["deliveries"]:
            state = d["status"]
            if d["sent_at"] is not None:
                state += f" {when(d['sent_at'])} UTC"
            if d["digest_at"] is not None:
                digest = one_line(d["digest_title"] or f"the digest of {when(d['digest_at'])} UTC")
                state += {"pending": ", waiting for ", "sent": " in "}.get(d["status"], ", in ") + digest
            parts.append(f"{one_line(d['channel'])} ({state})")
        fate = "alerted: " + ", ".join(parts)
        return fate + ("; stored outside the backfill window" if row["outside_backfill"] else "")
    reasons = []
    if row["duplicate_of"] is not None:
        reasons.append(f"duplicate of hit {row['duplicate_of']} ({one_line(row['duplicate_of_feed'])})")
    if row["outside_backfill"]:
        reasons.append("stored outside the backfill window")
    return "not alerted" + (": " + "; ".join(reasons) if reasons else "")


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
