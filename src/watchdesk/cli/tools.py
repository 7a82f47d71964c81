"""Hand-run tools: extract a page, try a query, rematch, search the archive, test a channel."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import click

from ..errors import QuerySyntaxError, StoreError
from ..models import Article, Hit
from ..notify.render import marked
from ..notify.sanitize import for_terminal, one_line
from ..store.engine import check_database
from .common import (
    database_password,
    iso,
    json_line,
    load,
    optional_config,
    read_db,
    since_option,
    write_db,
    zone,
)


@click.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Text and metadata as one JSON object.")
@click.pass_context
def extract(ctx: click.Context, source: str, as_json: bool) -> None:
    """Show the text (and metadata) the extractor gets from a page: a FILE or an http(s) URL.

    A URL is fetched exactly as the daemon fetches article pages: the network guard,
    robots.txt, the deadline and the byte cap of the config (or the defaults).
    """
    from ..ingest import extract_page
    from .actions import fetch_page_once

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
        click.echo(json_line(asdict(result)))
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
    import contextlib

    from ..config.secrets import Redactor, SecretError, is_reference, resolve
    from ..models import Alert
    from ..notify import ChannelNotAvailable, build_channel

    config = load(ctx, tool=True)
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

    # The channel scrubs what it returns; this shows nothing of its secrets either way
    # (every resolved secret reference, and any URL in its options, in every form).
    scrub, whole = Redactor(), config.channels[channel].type == "apprise"  # its URLs: secret throughout
    for value in config.channels[channel].options.values():
        if isinstance(value, str) and is_reference(value):
            with contextlib.suppress(SecretError):  # build_channel says which one, below
                scrub.add_url(resolve(value), whole=whole)
        elif isinstance(value, str) and "://" in value:
            scrub.add_url(value)

    async def send() -> tuple[bool, str]:
        try:
            target = build_channel(config.channels[channel])
        except ChannelNotAvailable as e:
            return False, str(e)
        try:
            result = await target.send(alert, key=f"test:{channel}:{now.timestamp():.0f}")
        except Exception as e:  # a channel's bug: say what, without a traceback of its secrets
            return False, f"{type(e).__name__}: {e}"
        finally:
            await target.aclose()
        kind = " (permanent: retrying will not help)" if result.permanent else ""
        return result.ok, result.message + kind

    ok, message = asyncio.run(send())
    if not ok:
        click.echo(f"{channel}: failed: {one_line(scrub(message))}", err=True)
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
@click.option("--title", default=None, help="A title to match with --text.")
@click.option(
    "--feed", "feed", metavar="NAME", help="Match as if from this configured feed (its name and tags)."
)
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def try_(
    ctx: click.Context,
    query_or_watchlist: str,
    text: str | None,
    file: str | None,
    url: str | None,
    title: str | None,
    feed: str | None,
    as_json: bool,
) -> None:
    """Dry run: does a query (or a watchlist, by name or file) match, where, and why.

    A watchlist limited to some feeds is tried as if the text came from one of them,
    unless --feed names the feed. Exit status: 0 when it matches, 1 when it does not,
    2 on an error.
    """
    from ..ingest import extract_page
    from ..language import parse_query
    from ..matching import compile_matcher
    from .actions import article_from_extraction, fetch_page_once, reason_for_no_hit, watchlist_for

    if sum(x is not None for x in (text, file, url)) != 1:
        raise click.UsageError("give exactly one of --text, --file, --url")
    if title is not None and text is None:
        raise click.UsageError("--title goes with --text (a page's title is its own)")
    config = optional_config(ctx)
    try:
        chosen = watchlist_for(config, query_or_watchlist)
        if chosen.is_query:  # the rules check applies (the matcher leaves out the backtracking one)
            parse_query(query_or_watchlist)
        watchlist = chosen.watchlist
        matcher = compile_matcher([watchlist])
    except ValueError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(2)
    except QuerySyntaxError as e:
        _query_error(ctx, query_or_watchlist, e)
    notes = list(chosen.notes)
    feed_name: str = ""
    feed_tags: tuple[str, ...] = ()
    if feed is not None:
        found = [f for f in config.feeds if f.name.casefold() == feed.casefold()] if config else []
        if not found:
            known = ", ".join(f.name for f in config.feeds) if config else "no config"
            click.echo(f"watchdesk: no feed {feed!r} (configured: {known or 'none'})", err=True)
            ctx.exit(2)
        feed_name, feed_tags = found[0].name, found[0].tags
    elif watchlist.feeds:
        notes.append(
            f"watchlist {watchlist.name!r} applies only to feeds {', '.join(watchlist.feeds)}; "
            "tried as if from one of them (--feed NAME tries a given feed)"
        )
        watchlist = replace(watchlist, feeds=())
        matcher = compile_matcher([watchlist])
    if text is not None:
        article = Article(title=title or "", text=text)
    else:
        if file is not None:
            try:
                body, page_url = Path(file).read_bytes(), None
            except OSError as e:
                click.echo(f"watchdesk: cannot read {file}: {e.strerror}", err=True)
                ctx.exit(2)
        else:
            assert url is not None
            page = asyncio.run(fetch_page_once(url, config))
            if page.body is None:
                click.echo(f"watchdesk: {url}: {page.reason}", err=True)
                ctx.exit(2)
            body, page_url = page.body, page.url
        extraction = extract_page(body, page_url)
        if not extraction.text:
            notes.append(f"no text extracted ({extraction.reason}); only the page's title was matched")
        article = article_from_extraction(extraction, page_url)
    for note in notes:
        click.echo(f"note: {one_line(note)}", err=True)
    hits = matcher.match(article, feed_name=feed_name, feed_tags=feed_tags)
    name = watchlist.name if not chosen.is_query else query_or_watchlist
    reason = None if hits else reason_for_no_hit(watchlist, article, feed_name, feed_tags)
    if as_json:
        result = {"matches": bool(hits), "hits": [_hit_json(h, article) for h in hits], "notes": notes}
        click.echo(json_line({**result, "why_not": reason}))
    elif not hits:
        click.echo(f"no match for {one_line(name)}" + (f": {one_line(reason)}" if reason else ""))
    for hit in [] if as_json else hits:
        click.echo(f"match: {hit.watchlist}: {one_line(hit.query)}")
        for term in hit.terms:
            found_text = (article.title if term.field == "title" else article.text)[term.start : term.end]
            click.echo(
                f"  {term.field} {term.start}-{term.end}: {one_line(found_text)!r} ({one_line(term.term)})"
            )
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
    from ..store import entries as entry_store
    from .actions import candidates_query, watchlist_for
    from .actions import rematch as run_rematch

    config = load(ctx, check_secrets=False, tool=True)
    try:
        picked = watchlist_for(config, watchlist)
    except ValueError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(2)
    if picked.disabled:
        click.echo(
            f"watchdesk: watchlist {watchlist!r} is disabled (enabled = false); enable it first", err=True
        )
        ctx.exit(2)
    if picked.is_query:
        known = ", ".join(w.name for w in config.watchlists) or "none"
        click.echo(
            f"watchdesk: no watchlist {watchlist!r} (configured: {known}; or give a .toml file)", err=True
        )
        ctx.exit(2)
    for note in picked.notes:
        click.echo(f"note: {one_line(note)}", err=True)
    chosen = picked.watchlist
    db = write_db(config)
    window = since_option(since)
    candidates = entry_store.count_entries(db, fts=candidates_query(chosen), since=window)
    with click.progressbar(length=candidates, label="rematch", file=sys.stderr) as bar:
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
@click.option(
    "--all-copies", is_flag=True, help="Each copy of a story on its own (default: under its story)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per result (times ISO 8601, with offset)."
)
@click.pass_context
def search(
    ctx: click.Context, query: str, since: str | None, limit: int, all_copies: bool, as_json: bool
) -> None:
    """Search the stored archive with the watchlist language, most recently stored first.

    Exit status: 0 when something matches, 1 when nothing does, 2 on an error.
    """
    from ..language import parse_query
    from .actions import search as run_search

    config = load(ctx, check_secrets=False, tool=True)
    try:
        parse_query(query)
    except QuerySyntaxError as e:
        _query_error(ctx, query, e)
    results = list(run_search(read_db(config), query, since=since_option(since), limit=limit))
    copies: dict[int, list[str]] = {}  # story id -> the other outlets' copies found
    shown = []
    for stored, hit in results:
        if not all_copies and stored.story_id is not None and stored.story_id in copies:
            copies[stored.story_id].append(stored.feed_name)
            continue
        if stored.story_id is not None:
            copies.setdefault(stored.story_id, [])
        shown.append((stored, hit))
    found = len(results)
    for stored, hit in shown:
        a = stored.article
        also = (
            [n for n in copies.get(stored.story_id, []) if n != stored.feed_name] if stored.story_id else []
        )
        if as_json:
            row = {"title": a.title, "link": a.url, "feed": stored.feed_name, **_hit_json(hit, a)}
            row["published"] = iso(a.published.timestamp(), zone(config)) if a.published else None
            row["story"] = stored.story
            row["also_in"] = list(dict.fromkeys(also))
            click.echo(json_line(row))
            continue
        published = a.published.strftime("%Y-%m-%d") if a.published else "undated"
        click.echo(f"{published}  {one_line(stored.feed_name)}  {one_line(a.title)}")
        click.echo(f"    {one_line(a.url or '')}")
        click.echo(f"    {one_line(marked(hit.snippet, hit.snippet_marks, '[', ']'))}")
        if also:
            click.echo(f"    also in: {one_line(', '.join(dict.fromkeys(also)))}")
    if not found:
        if not as_json:
            click.echo("no matches", err=True)
        ctx.exit(1)


@click.command()
@click.option(
    "--no-secrets",
    is_flag=True,
    help="Do not resolve secret references (only check how they are written): a check run "
    "by someone who cannot read them.",
)
@click.pass_context
def check(ctx: click.Context, no_secrets: bool) -> None:
    """Validate the config, every watchlist and the database.

    Each problem is printed as `file:line: message` and makes the exit status 2; a
    warning (`file:line: warning: message`: no feeds, no watchlist in force, a file in
    the watchlists folder that is not read) does not: exit 0. A secret reference that
    does not resolve is a problem, unless --no-secrets. The database, when it exists,
    gets `PRAGMA quick_check` (nothing is created, migrated or changed); one that is
    damaged, unreadable or not watchdesk's is a problem too.
    """
    config = load(ctx, check_secrets=not no_secrets)
    try:
        if no_secrets and config.database_password:
            database = "not checked (--no-secrets: connecting needs [watchdesk] password)"
        else:
            database = check_database(config.database, password=database_password(config))
    except StoreError as e:
        click.echo(f"watchdesk: {e}", err=True)
        ctx.exit(2)
    n = len(config.warnings)
    click.echo(f"{config.path}: ok" + (f" ({n} warning{'' if n == 1 else 's'})" if n else ""))
    click.echo(f"  database   {config.database}: {database}")
    click.echo(f"  feeds      {len(config.feeds)}")
    click.echo(f"  watchlists {len(config.watchlists)} in {config.watchlists_dir}")
    for w in config.watchlists:
        click.echo(f"    {w.name}: {len(w.match)} queries, notify {', '.join(w.notify)}, {w.delivery}")
    click.echo(f"  channels   {', '.join(f'{n} ({c.type})' for n, c in config.channels.items())}")
    if no_secrets:
        click.echo("  secrets    not resolved (--no-secrets)")


COMMANDS = (extract, notify_test, try_, rematch, search, check)
