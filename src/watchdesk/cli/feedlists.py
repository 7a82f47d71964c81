"""`watchdesk discover URL`: the feeds a site advertises, as [[feed]] tables to paste."""

from __future__ import annotations

import asyncio

import click

from ..config import NetworkConfig
from .common import optional_config


@click.command()
@click.argument("url")
@click.pass_context
def discover(ctx: click.Context, url: str) -> None:
    """Find the feeds a page advertises (<link rel="alternate"> RSS, Atom, JSON Feed; else
    the usual /feed, /rss.xml... paths), check each by fetching and parsing it through the
    network guard, and print the good ones as [[feed]] tables ready to paste. Problems go
    to stderr; exit 1 when no feed is found."""
    from ..ingest import Discovered, HttpPool, Limits, feeds_toml, problem_lines
    from ..ingest import discover as find

    config = optional_config(ctx)
    net = config.network if config is not None else NetworkConfig()
    pool = HttpPool(concurrency=2, per_host=1, user_agent=net.user_agent, allow=net.allow)
    limits = Limits(timeout=net.timeout, max_bytes=net.max_page_bytes, max_redirects=net.max_redirects)

    async def go() -> list[Discovered]:
        try:
            return await find(pool, url, limits)
        finally:
            await pool.aclose()

    results = asyncio.run(go())
    taken = {f.name for f in config.feeds} if config is not None else set()
    for line in problem_lines(results):
        click.echo(f"watchdesk: {line}", err=True)
    text = feeds_toml(results, taken_names=taken)
    if not text:
        click.echo(f"watchdesk: no feed found at {url}", err=True)
        ctx.exit(1)
    click.echo(text)


FEEDLIST_COMMANDS = (discover,)
