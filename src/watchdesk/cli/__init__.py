"""The command line: click commands, thin (parse arguments, call one function, render).

main (the group and the daemon/poll/feeds/hits/outbox commands), tools (check, try,
extract, search, rematch, notify-test), actions (what those tools do), feedview (what
`feeds` shows), common (shared options and config loading)."""

from .main import main

__all__ = ["main"]
