"""Feed lists: `watchdesk discover URL` (the feeds a site advertises, as [[feed]] tables to
paste) and `watchdesk opml import|export`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from ..config import NetworkConfig
from .common import load, optional_config


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


@click.group()
def opml() -> None:
    """Feeds in and out as OPML (what every feed reader exports and imports)."""


@opml.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tag", help="A tag for every imported feed (besides the file's folders).")
@click.option(
    "--into",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the [[feed]] tables to this feeds file (created if missing, appended to if not) "
    "instead of the main config; it should be matched by [watchdesk] feeds.",
)
@click.pass_context
def opml_import(ctx: click.Context, file: Path, tag: str | None, into: Path | None) -> None:
    """Add the feeds of an OPML FILE to watchdesk.toml (or, with --into, to a feeds file)
    as [[feed]] tables: folders become tags, titles names; feeds already configured (in any
    file) are skipped and counted; outlines that cannot be imported are reported by line.
    A running daemon takes them over at once."""
    from ..config import feeds_files, import_opml_file, render_feeds_toml

    config = load(ctx, check_secrets=False, tool=True)
    result = import_opml_file(
        file,
        configured_urls=[f.url for f in config.feeds],
        configured_names=[f.name for f in config.feeds],
        tag=tag,
    )
    for problem in result.problems:
        click.echo(f"{file}:{problem.line or 1}: {problem.message}", err=True)
    if result.fatal:
        click.echo(f"watchdesk: nothing imported from {file}", err=True)
        ctx.exit(2)
    skipped = f"skipped {result.already_configured} already configured, {result.repeated} listed twice"
    if not result.feeds:
        click.echo(f"nothing new to import from {file} ({skipped})")
        return
    target = config.path if into is None else into
    if target.is_dir():
        click.echo(
            f"watchdesk: {target} is a folder: name a file such as {target / 'imported.toml'}", err=True
        )
        ctx.exit(2)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        text = target.read_text() if target.exists() else ""
        addition = render_feeds_toml(result.feeds, comment=f"imported from {file.name}")
        separator = "" if not text else ("" if text.endswith("\n") else "\n") + "\n"
        target.write_text(text + separator + addition)
    except OSError as e:
        click.echo(f"watchdesk: cannot write {target}: {e.strerror or e}", err=True)
        ctx.exit(2)
    left_out = f"; {len(result.problems)} outlines not imported, see above" if result.problems else ""
    click.echo(f"imported {len(result.feeds)} feeds into {target} ({skipped}{left_out})")
    read = {f.resolve() for f in (config.path, *feeds_files(config))}
    if into is not None and into.resolve() not in read:
        pattern = json.dumps(_pattern_for(into, config.path))
        click.echo(
            f"watchdesk: warning: the daemon will not read {into}: no [watchdesk] feeds pattern in "
            f"{config.path} matches it; add {pattern} to that list (e.g. feeds = [{pattern}])",
            err=True,
        )


def _pattern_for(file: Path, config: Path) -> str:
    """A [watchdesk] feeds pattern matching `file`: relative to the config's folder when
    the file is under it, else absolute (glob characters in the name escaped)."""
    import glob

    resolved, base = file.resolve(), config.resolve().parent
    name = resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(resolved)
    return glob.escape(name)


@opml.command("export")
@click.option("--tag", help="Only the feeds with this tag.")
@click.pass_context
def opml_export(ctx: click.Context, tag: str | None) -> None:
    """The configured feeds as OPML 2.0 on stdout, tags as folders (import reads it back)."""
    from ..config import export_opml

    config = load(ctx, check_secrets=False, tool=True)
    if tag is not None and not any(tag in f.tags for f in config.feeds):
        click.echo(f"watchdesk: no feed is tagged {tag!r}", err=True)
        ctx.exit(1)
    click.echo(export_opml(config.feeds, tag), nl=False)


FEEDLIST_COMMANDS = (discover, opml)
