"""The command line: click commands, thin (parse arguments, call one function, render).

main (the group, loading each command's module when it runs), operate (run, poll,
feeds, outbox), archive (hits, stories), tools (check, try, extract, search, rematch,
notify-test), maintenance (prune), feedlists (discover, opml), actions (what the tools
do), feedview (what `feeds` shows), common (shared options and config loading)."""

from .main import main

__all__ = ["main"]
