"""Watchlist files: one *.toml per watchlist in the watchlists folder -> Watchlist.

Every problem is collected with its file and line; queries are parsed by query.py so a
typo is an error with its column, never a watchlist that silently matches nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Protocol

from ..errors import Problem, QuerySyntaxError
from ..language import parse_query
from ..models import Watchlist
from .tomlcheck import Check, Collector, _bool, _str, _str_list, _via, check_table, parse_delivery, read_toml


class FeedLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...]: ...


WATCHLIST_KEYS: dict[str, Check] = {
    "description": _str,
    "match": _str_list,
    "exclude": _str_list,
    "notify": _str_list,
    "feeds": _str_list,
    "delivery": _via(parse_delivery),
    "case_sensitive_terms": _str_list,
    "enabled": _bool,
}


def load_watchlists(
    folder: Path, channels: Collection[str], feeds: Iterable[FeedLike]
) -> tuple[list[Watchlist], list[Problem]]:
    """Every *.toml in `folder` is one watchlist named after its file."""
    if not folder.is_dir():
        return [], [Problem(str(folder), None, "watchlists folder does not exist")]
    scopes = feed_scopes(feeds)
    watchlists: list[Watchlist] = []
    problems: list[Problem] = []
    for file in sorted(folder.glob("*.toml")):
        watchlist, found = load_watchlist_file(file, channels, scopes)
        problems.extend(found)
        if watchlist is not None:
            watchlists.append(watchlist)
    return watchlists, problems


def folder_warnings(folder: Path, loaded: int, problems: bool) -> list[Problem]:
    """What a user should know about the watchlists folder, though nothing is wrong:
    each entry in it that is not read (any name but `*.toml`, and folders: a file
    `opioids.TOML` or `opioids.toml.bak` silently does nothing otherwise), and that no
    watchlist is in force (`loaded` were read and enabled; none when `problems`).

    Hidden entries (`.git`, vim's `.opioids.toml.swp`, emacs' `.#opioids.toml`) and
    editor backups (`opioids.toml~`, `#opioids.toml#`) are passed over in silence."""
    if not folder.is_dir():
        return []
    read = set(folder.glob("*.toml"))
    warnings: list[Problem] = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry in read or name.startswith(".") or name.endswith("~") or name[:1] == name[-1:] == "#":
            continue
        if entry.is_dir():
            message = (
                f"ignored: a folder (watchlists are read from {folder.name}/ itself, not from folders in it)"
            )
        elif name.lower().endswith(".toml"):
            message = f"ignored: only names ending in .toml (lower case) are watchlists; rename it {entry.stem}.toml"
        else:
            message = "ignored: only files named *.toml in the watchlists folder are watchlists"
        warnings.append(Problem(str(entry), None, message))
    if not loaded and not problems:
        if read:
            message = "every watchlist here has enabled = false: nothing is matched or alerted"
        else:
            message = "no watchlist files (*.toml) in the watchlists folder: nothing is matched or alerted"
        warnings.append(Problem(str(folder), None, message))
    return warnings


def feed_scopes(feeds: Iterable[FeedLike]) -> set[str]:
    """What a watchlist's `feeds` may name: feed names and tags."""
    return {scope for f in feeds for scope in (f.name, *f.tags)}


def load_watchlist_file(
    file: Path, channels: Collection[str], scopes: Collection[str], *, disabled_too: bool = False
) -> tuple[Watchlist | None, list[Problem]]:
    """One watchlist file; None (and the problems) when it has any, or is disabled (unless
    `disabled_too`: the hand-run tools try a disabled watchlist when asked by name)."""
    problems: list[Problem] = []
    read = read_toml(file, problems)
    if read is None:
        return None, problems
    data, text = read
    c = Collector(file, text)
    values = check_table(c, data, WATCHLIST_KEYS, (), "watchlist")
    if "match" not in data:
        c.add((), "a watchlist needs match = [...] (one query per string)")
    elif "match" in values and not values["match"]:
        c.add(("match",), "match is empty: add at least one query")
    sensitive = values.get("case_sensitive_terms", ())
    for key in ("match", "exclude"):
        for i, q in enumerate(values.get(key, ())):
            problem = _query_problem(q, sensitive)
            if problem:
                message, column = problem
                where = c.in_string((key, i), column - 1)  # file:line:column of the error itself
                if where is None:
                    c.add((key, i), f"{key} query {q!r}, column {column}: {message}")
                else:
                    c.problems.append(Problem(c.file, where[0], f"{key} query {q!r}: {message}", where[1]))
    for i, chan in enumerate(values.get("notify", ())):
        if chan not in channels:
            known = ", ".join(sorted(channels))
            c.add(("notify", i), f"notify names unknown channel {chan!r} (defined: {known})")
    known_scopes = {s.casefold() for s in scopes}  # the matcher ignores case here too
    for i, scope in enumerate(values.get("feeds", ())):
        if scope.casefold() not in known_scopes:
            c.add(("feeds", i), f"feeds names {scope!r}, which is no feed name or tag")
    problems.extend(c.problems)
    if c.problems or not (disabled_too or values.get("enabled", True)):
        return None, problems
    return (
        Watchlist(
            name=file.stem,
            match=values["match"],
            exclude=values.get("exclude", ()),
            notify=values.get("notify", ("console",)),
            description=values.get("description", ""),
            feeds=values.get("feeds", ()),
            delivery=values.get("delivery", "immediate"),
            case_sensitive_terms=sensitive,
            source=str(file),
            lines=tuple(c.line("match", i) or 0 for i in range(len(values["match"]))),
        ),
        problems,
    )


def _query_problem(query: str, case_sensitive: tuple[str, ...]) -> tuple[str, int] | None:
    try:
        parse_query(query, case_sensitive_terms=case_sensitive)
    except QuerySyntaxError as e:
        return (e.message + (f"; {e.hint}" if e.hint else ""), e.column)
    return None
