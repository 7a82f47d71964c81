"""The command line. Thin: parse arguments, call one function, render the result."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import Config, find_config, load_config, parse_duration
from .errors import ConfigError, WatchdeskError
from .sanitize import for_terminal, one_line
from .store import feeds as feed_store
from .store import hits as hit_store
from .store import open_db
from .store import outbox as outbox_store

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=LOG_FORMAT, force=True)
    # httpx logs full URLs at INFO, and a webhook URL is a secret.
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _load(ctx: click.Context, *, check_secrets: bool = True) -> Config:
    try:
        config = load_config(find_config(ctx.obj["config"]), check_secrets=check_secrets)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        ctx.exit(2)
    setup_logging(ctx.obj["log_level"] or config.log_level)
    return config


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return time.time() - parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


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
    from .daemon import run_daemon

    config = _load(ctx)
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
    from .runtime import Runtime

    config = _load(ctx)

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
    config = _load(ctx)
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
    config = _load(ctx, check_secrets=False)
    db = open_db(config.database)
    feed_store.sync_feeds(db, [(f.url, f.name) for f in config.feeds if f.enabled], time.time())
    rows = feed_store.all_feeds(db)
    if as_json:
        for row in rows:
            click.echo(json.dumps(asdict(row), ensure_ascii=False))
        return
    click.echo(f"{'feed':30} {'status':7} {'last poll':19} {'errors':>6} {'next check':19} last error")
    for row in rows:
        next_check = "never (410 Gone)" if row.next_check_at is None else _when(row.next_check_at)
        click.echo(
            f"{one_line(row.name)[:30]:30} {row.status:7} {_when(row.last_polled_at):19} "
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
    config = _load(ctx, check_secrets=False)
    rows = hit_store.list_hits(
        open_db(config.database), watchlist=watchlist, since=_since(since), limit=limit
    )
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        click.echo(f"{_when(row['created_at'])}  {row['watchlist']}  {one_line(row['title'])}")
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
    config = _load(ctx, check_secrets=False)
    db = open_db(config.database)
    counts = outbox_store.counts(db)
    click.echo("  ".join(f"{s}: {counts.get(s, 0)}" for s in ("pending", "sent", "dead")))
    for row in outbox_store.list_rows(db, status, limit):
        click.echo(
            f"{row.id:>6} {row.status:7} {row.channel:12} attempts={row.attempts} "
            f"{one_line(row.alert.title)[:60]}"
            + (f"  error: {one_line(row.last_error)}" if row.last_error else "")
        )


@outbox.command("retry")
@click.argument("row_id", required=False, type=int)
@click.option("--all-dead", is_flag=True, help="Retry every dead delivery.")
@click.pass_context
def outbox_retry(ctx: click.Context, row_id: int | None, all_dead: bool) -> None:
    """Put a dead delivery (ID) or every dead one (--all-dead) back in the queue."""
    if (row_id is None) == (not all_dead):
        raise click.UsageError("give one outbox ID or --all-dead")
    config = _load(ctx, check_secrets=False)
    n = outbox_store.retry(open_db(config.database), time.time(), row_id=row_id)
    if row_id is not None and n == 0:
        click.echo(f"outbox row {row_id} is not dead (see `watchdesk outbox --status dead`)", err=True)
        ctx.exit(1)
    click.echo(f"{n} deliveries queued again")


@main.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Text and metadata as one JSON object.")
@click.pass_context
def extract(ctx: click.Context, source: str, as_json: bool) -> None:
    """Show the text (and metadata) the extractor gets from a page: a FILE or an http(s) URL.

    A URL is fetched exactly as the daemon fetches article pages: the network guard,
    robots.txt, the deadline and the byte cap of the config (or the defaults).
    """
    from .extract import extract_page
    from .tools import fetch_page_once

    if source.startswith(("http://", "https://")):
        config = _load(ctx, check_secrets=False) if _has_config(ctx) else None
        page = asyncio.run(fetch_page_once(source, config))
        if page.body is None:
            click.echo(f"watchdesk: {source}: {page.reason}", err=True)
            ctx.exit(1)
        body, url = page.body, page.url
    else:
        try:
            body, url = Path(source).read_bytes(), None
        except OSError as e:
            click.echo(f"watchdesk: cannot read {source}: {e.strerror}", err=True)
            ctx.exit(1)
    result = extract_page(body, url)
    if as_json:
        click.echo(json.dumps(asdict(result), ensure_ascii=False))
        return
    for label, value in (("title", result.title), ("date", result.date), ("language", result.language)):
        click.echo(f"{label}: {one_line(value or '-')}")
    if result.truncated:
        click.echo("note: the page was over the size cap and was cut before extraction")
    if not result.text:
        click.echo(f"no text: {result.reason}", err=True)
        ctx.exit(1)
    click.echo("")
    click.echo(for_terminal(result.text))


def _has_config(ctx: click.Context) -> bool:
    try:
        find_config(ctx.obj["config"])
    except ConfigError:
        return False
    return True


@main.command("notify-test")
@click.argument("channel")
@click.pass_context
def notify_test(ctx: click.Context, channel: str) -> None:
    """Send a clearly marked test alert through CHANNEL and report the result."""
    from .models import Alert
    from .notify import ChannelNotAvailable, build_channel

    config = _load(ctx)
    if channel not in config.channels:
        click.echo(
            f"watchdesk: no channel {channel!r} (defined: {', '.join(sorted(config.channels))})", err=True
        )
        ctx.exit(2)
    now = datetime.now(UTC)
    alert = Alert(
        watchlist="notify-test",
        title=f"watchdesk test alert for channel {channel}",
        link=None,
        outlet="watchdesk",
        published=now,
        terms=("test",),
        snippet="This is a test alert sent by `watchdesk notify-test`. If you can read it, the channel works.",
        snippet_marks=((10, 14),),
        story_key=f"notify-test:{channel}",
        test=True,
    )

    async def send() -> tuple[bool, str]:
        try:
            target = build_channel(config.channels[channel])
        except ChannelNotAvailable as e:
            return False, str(e)
        try:
            result = await target.send(alert, key=f"test:{channel}:{now.timestamp():.0f}")
        finally:
            await target.aclose()
        kind = " (permanent: retrying will not help)" if result.permanent else ""
        return result.ok, result.message + kind

    ok, message = asyncio.run(send())
    if not ok:
        click.echo(f"{channel}: failed: {one_line(message)}", err=True)
        ctx.exit(1)
    click.echo(f"{channel}: test alert sent")
