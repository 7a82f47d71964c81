"""The exception tree. Third-party exceptions are wrapped at stage boundaries.

WatchdeskError
├── ConfigError          config or watchlist files have problems (all of them listed)
├── QuerySyntaxError     a watchlist query does not parse (column and hint)
├── SecretError          a secret reference cannot be resolved
├── FetchError           a request failed (carries the FetchFailed outcome)
├── ParseError           bytes that are not a feed at all
└── StoreError           the database cannot be used: one message naming the file and what to do
"""

from __future__ import annotations

from dataclasses import dataclass


class WatchdeskError(Exception):
    """Base of every error watchdesk raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a config or watchlist file, printed as `file:line: message`."""

    file: str
    line: int | None
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ConfigError(WatchdeskError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class QuerySyntaxError(WatchdeskError):
    """`column` is 1-based within the query string; `hint` says how to fix it."""

    def __init__(self, message: str, column: int, hint: str = ""):
        self.message = message
        self.column = column
        self.hint = hint
        super().__init__(f"column {column}: {message}" + (f" ({hint})" if hint else ""))


class SecretError(WatchdeskError):
    pass


class FetchError(WatchdeskError):
    pass


class ParseError(WatchdeskError):
    pass


class StoreError(WatchdeskError):
    pass
