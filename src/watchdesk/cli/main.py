"""The command line. Thin: parse arguments, call one function, render the result.

The group imports a command's module only when that command runs (or is asked for its
own --help): `watchdesk --help` and a mistyped command import click and nothing else, and
`search` none of the network code. COMMANDS says where each command lives, with the
short help the group's --help lists (a test keeps them equal to the commands' own)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__
from ..errors import StoreError

STORE_FAILURE_EXIT = 2  # as for a config with problems (common.load)

# name -> (module in watchdesk.cli, attribute, short help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("operate", "run", "Run the daemon in the foreground (what systemd starts)."),
    "poll": ("operate", "poll", "Poll every feed now, match, store, deliver; print a summary; exit."),
    "feeds": (
        "operate",
        "feeds",
        "Feeds with their health: status, since when, entries in 7 days, interval, next check.",
    ),
    "outbox": ("operate", "outbox", "Deliveries: pending, sent and dead."),
    "hits": (
        "archive",
        "hits",
        "Stored hits, newest first: where each was alerted (and in what state), or why not.",
    ),
    "stories": (
        "archive",
        "stories",
        "Stories (one story across its outlets' copies), most recently seen first.",
    ),
    "search": (
        "tools",
        "search",
        "Search the stored archive with the watchlist language, most recently stored first.",
    ),
    "check": ("tools", "check", "Validate the config, every watchlist and the database."),
    "try": (
        "tools",
        "try_",
        "Dry run: does a query (or a watchlist, by name or file) match, where, and why.",
    ),
    "extract": (
        "tools",
        "extract",
        "Show the text (and metadata) the extractor gets from a page: a FILE or an http(s) URL.",
    ),
    "rematch": (
        "tools",
        "rematch",
        "Apply a (new or edited) watchlist to stored articles and store its hits.",
    ),
    "notify-test": (
        "tools",
        "notify_test",
        "Send a clearly marked test alert through CHANNEL and report the result.",
    ),
    "prune": (
        "maintenance",
        "prune",
        "Prune now what [retention] keeps no longer; print what went and the bytes freed.",
    ),
    "discover": (
        "feedlists",
        "discover",
        'Find the feeds a page advertises (<link rel="alternate"> RSS, Atom, JSON Feed; else the usual '
        "/feed, /rss.xml... paths), check each by fetching and parsing it through the network guard, and "
        "print the good ones as [[feed]] tables ready to paste.",
    ),
    "opml": ("feedlists", "opml", "Feeds in and out as OPML (what every feed reader exports and imports)."),
}


class Watchdesk(click.Group):
    """The group: a store failure in any command, when the database is opened or later
    (a damaged page met by a query, a disk that fills), ends it with one message naming
    the file and what to do, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attribute, _help = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, from COMMANDS: nothing imported to show it."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, _shortened(COMMANDS[name][2], limit)) for name in names if name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as e:
            # not imported for nothing: a command that failed so used them
            sqlite3, psycopg = sys.modules.get("sqlite3"), sys.modules.get("psycopg")
            if not (
                isinstance(e, StoreError)
                or (sqlite3 and isinstance(e, sqlite3.Error))
                or (psycopg and isinstance(e, psycopg.Error))
            ):
                raise
            import logging

            from ..store.engine import explain_failure

            logging.getLogger("watchdesk.cli").debug("store failure", exc_info=True)
            database = (ctx.obj or {}).get("database") or "(unknown)"
            click.echo(f"watchdesk: {explain_failure(database, e)}", err=True)
            ctx.exit(STORE_FAILURE_EXIT)


def _shortened(text: str, limit: int) -> str:
    """As click shortens a command's help for its group's list: whole words, then '...'."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 3)].rsplit(" ", 1)[0] + "..."


@click.group(cls=Watchdesk)
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
@click.option(
    "--log-format",
    type=click.Choice(["logfmt", "json", "text"]),
    default=None,
    help="Override [watchdesk] log_format (logfmt: key=value, values quoted; json: one object a line).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_level: str | None, log_format: str | None) -> None:
    """watchdesk: watch news feeds for topics and alert people when an article matches."""
    ctx.obj = {"config": config_path, "log_level": log_level, "log_format": log_format}
