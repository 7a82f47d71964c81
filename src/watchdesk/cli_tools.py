"""Hand-run tools: extract a page, try a query, rematch, search the archive, test a channel."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from .cli_common import load, optional_config, since_option
from .errors import QuerySyntaxError
from .models import Article, Hit
from .notify.render import marked
from .sanitize import for_terminal, one_line
from .store import open_db


@click.command()
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
        config = optional_config(ctx)
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


@click.command("notify-test")
@click.argument("channel")
@click.pass_context
def notify_test(ctx: click.Context, channel: str) -> None:
    """Send a clearly marked test alert through CHANNEL and report the result."""
    from .models import Alert
    from .notify import ChannelNotAvailable, build_channel

    config = load(ctx)
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


def _query_error(ctx: click.Context, query: str, e: QuerySyntaxError) -> None:
    click.echo(f"watchdesk: query, column {e.column}: {e.message}", err=True)
    click.echo(f"  {query}", err=True)
    click.echo(f"  {' ' * (e.column - 1)}^" + (f"  {e.hint}" if e.hint else ""), err=True)
    ctx.exit(2)


@click.command("try")
@click.argument("query_or_watchlist")
@click.option("--text", "text", help="Match this text.")
@click.option("--file", "file", type=click.Path(dir_okay=False), help="Match this HTML page, extracted.")
@click.option("--url", "url", help="Fetch this page as the daemon would, extract it and match it.")
@click.option("--title", default="", help="A title to match with --text.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def try_(
    ctx: click.Context,
    query_or_watchlist: str,
    text: str | None,
    file: str | None,
    url: str | None,
    title: str,
    as_json: bool,
) -> None:
    """Dry run: does a query (or a watchlist, by name or file) match, where, and why.

    Exit status: 0 when it matches, 1 when it does not, 2 on an error.
    """
    from .match import compile_matcher
    from .models import Article
    from .tools import fetch_page_once, page_article, watchlist_for

    if sum(x is not None for x in (text, file, url)) != 1:
        raise click.UsageError("give exactly one of --text, --file, --url")
    config = optional_config(ctx)
    try:
        watchlist = watchlist_for(config, query_or_watchlist)
        matcher = compile_matcher([watchlist])
    except ValueError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(2)
    except QuerySyntaxError as e:
        _query_error(ctx, query_or_watchlist, e)
    if text is not None:
        article = Article(title=title, text=text)
    elif file is not None:
        try:
            article = page_article(Path(file).read_bytes(), None)
        except OSError as e:
            click.echo(f"watchdesk: cannot read {file}: {e.strerror}", err=True)
            ctx.exit(2)
    else:
        assert url is not None
        page = asyncio.run(fetch_page_once(url, config))
        if page.body is None:
            click.echo(f"watchdesk: {url}: {page.reason}", err=True)
            ctx.exit(2)
        article = page_article(page.body, page.url)
    hits = matcher.match(article)
    if as_json:
        click.echo(
            json.dumps(
                {"matches": bool(hits), "hits": [_hit_json(h, article) for h in hits]}, ensure_ascii=False
            )
        )
    elif not hits:
        click.echo(
            f"no match for {one_line(watchlist.name if watchlist.name != 'query' else query_or_watchlist)}"
        )
    for hit in [] if as_json else hits:
        click.echo(f"match: {hit.watchlist}: {one_line(hit.query)}")
        for term in hit.terms:
            found = (article.title if term.field == "title" else article.text)[term.start : term.end]
            click.echo(f"  {term.field} {term.start}-{term.end}: {one_line(found)!r} ({one_line(term.term)})")
        click.echo(f"  snippet: {one_line(marked(hit.snippet, hit.snippet_marks, '[', ']'))}")
    ctx.exit(0 if hits else 1)


def _hit_json(hit: Hit, article: Article) -> dict[str, object]:
    return {
        "watchlist": hit.watchlist,
        "query": hit.query,
        "terms": [
            {
                "term": t.term,
                "field": t.field,
                "start": t.start,
                "end": t.end,
                "text": (article.title if t.field == "title" else article.text)[t.start : t.end],
            }
            for t in hit.terms
        ],
        "snippet": hit.snippet,
        "snippet_marks": [list(m) for m in hit.snippet_marks],
    }


@click.command()
@click.argument("watchlist")
@click.option("--since", metavar="DURATION", help="Only entries stored in this past window, e.g. 30d.")
@click.option("--notify", is_flag=True, help="Also alert new hits (never twice for a story already alerted).")
@click.pass_context
def rematch(ctx: click.Context, watchlist: str, since: str | None, notify: bool) -> None:
    """Apply a (new or edited) watchlist to stored articles and store its hits."""
    from .store import entries as entry_store
    from .tools import rematch as run_rematch
    from .tools import watchlist_for

    config = load(ctx, check_secrets=False)
    try:
        chosen = watchlist_for(config, watchlist)
    except ValueError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(2)
    if chosen.name == "query":
        known = ", ".join(w.name for w in config.watchlists) or "none"
        click.echo(
            f"watchdesk: no watchlist {watchlist!r} (configured: {known}; or give a .toml file)", err=True
        )
        ctx.exit(2)
    db = open_db(config.database)
    window = since_option(since)
    with click.progressbar(
        length=entry_store.count_entries(db, since=window), label="rematch", file=sys.stderr
    ) as bar:
        summary = run_rematch(
            db, config, chosen, since=window, notify=notify, now=time.time(), progress=bar.update
        )
    click.echo(
        f"{chosen.name}: {summary.scanned} candidate entries, {summary.hits} new hits, "
        f"{summary.already} already stored, {summary.alerts_queued} alerts queued"
        + ("" if notify else " (use --notify to alert them)")
    )


@click.command()
@click.argument("query")
@click.option("--since", metavar="DURATION", help="Only entries stored in this past window, e.g. 7d.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per result.")
@click.pass_context
def search(ctx: click.Context, query: str, since: str | None, limit: int, as_json: bool) -> None:
    """Search the stored archive with the watchlist language, newest first."""
    from .query import parse_query
    from .tools import search as run_search

    config = load(ctx, check_secrets=False)
    try:
        parse_query(query)
    except QuerySyntaxError as e:
        _query_error(ctx, query, e)
    found = 0
    for stored, hit in run_search(open_db(config.database), query, since=since_option(since), limit=limit):
        found += 1
        a = stored.article
        if as_json:
            row = {"title": a.title, "link": a.url, "feed": stored.feed_name, **_hit_json(hit, a)}
            row["published"] = a.published.isoformat() if a.published else None
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        published = a.published.strftime("%Y-%m-%d") if a.published else "undated"
        click.echo(f"{published}  {one_line(stored.feed_name)}  {one_line(a.title)}")
        click.echo(f"    {one_line(a.url or '')}")
        click.echo(f"    {one_line(marked(hit.snippet, hit.snippet_marks, '[', ']'))}")
    if not found and not as_json:
        click.echo("no matches", err=True)


COMMANDS = (extract, notify_test, try_, rematch, search)
