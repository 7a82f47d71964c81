"""watchdesk: watch news feeds for topics and alert people when an article matches.

`entry` is the `watchdesk` script. It is here, before anything heavy is imported, so that
`watchdesk run` catches SIGTERM from its first moments: a stop during start-up is a clean
one (exit 0), not a kill.
"""

from __future__ import annotations

import signal
import sys

__version__ = "0.1.0"

_OPTIONS_WITH_VALUES = ("--config", "--log-level", "--log-format")


class EarlyStop:
    """SIGTERM/SIGINT before the daemon's own handlers exist (imports, loading the config,
    opening the store): remembered, and honoured as a clean stop once it can be."""

    def __init__(self) -> None:
        self.signal: str | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._caught)
        # A reload asked for during start-up is moot (the config is being read now), and
        # SIGHUP's default action would end the process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _caught(self, signum: int, _frame: object) -> None:
        self.signal = signal.Signals(signum).name


early_stop: EarlyStop | None = None


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (after the group's own options), if any."""
    args = iter(argv)
    for arg in args:
        if arg in _OPTIONS_WITH_VALUES:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def entry() -> None:
    global early_stop
    if command_of(sys.argv[1:]) == "run":
        early_stop = EarlyStop()
    from .cli import main

    main()


__all__ = ["EarlyStop", "__version__", "command_of", "early_stop", "entry"]
