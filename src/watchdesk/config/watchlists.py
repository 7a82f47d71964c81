"""Watchlist files: one *.toml per watchlist in the watchlists folder -> Watchlist.

Every problem is collected with its file and line; queries are parsed by query.py so a
typo is an error with its column, never a watchlist that silently matches nothing.

What the matcher compiles grows with the terms of all watchlists together (memory and
compile time: bench/watchlist_size.py), so their number is bounded per watchlist and in
all, and so is the size of their regexes (query.py bounds each query and each regex).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Protocol

from ..errors import Problem, QuerySyntaxError
from ..language import Node, Regex, Term, parse_query, walk
from ..models import Watchlist
from .tomlcheck import Check, Collector, _bool, _str, _str_list, _via, check_table, parse_delivery, read_toml

MAX_WATCHLIST_TERMS = 100_000  # words, phrases, prefixes and regexes in one watchlist's queries
MAX_TOTAL_TERMS = 250_000  # ... in all watchlists together
MAX_TOTAL_REGEX_SIZE = 100_000  # regexes of all watchlists, counted out as query.py counts one
MAX_WATCHLIST_BYTES = 4 * 2**20  # a watchlist file: bigger ones are not read at all


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
    folder: Path,
    channels: Collection[str],
    feeds: Iterable[FeedLike] = (),
    *,
    scopes: frozenset[str] | None = None,
) -> tuple[list[Watchlist], list[Problem]]:
    """Every *.toml in `folder` is one watchlist named after its file. `scopes`: the feeds'
    fold_scopes(feed_scopes(feeds)) when the caller has them (Config.scopes): a reload of
    the watchlists at 300,000 feeds then does not fold every feed's name again (0.4 s)."""
    if not folder.is_dir():
        return [], [Problem(str(folder), None, "watchlists folder does not exist")]
    known = scopes if scopes is not None else fold_scopes(feed_scopes(feeds))  # once per load
    watchlists: list[Watchlist] = []
    problems: list[Problem] = []
    terms = regex_size = 0
    for file in sorted(folder.glob("*.toml")):
        watchlist, found, size = _load_file(file, channels, known, disabled_too=False)
        problems.extend(found)
        if watchlist is None:
            continue
        over = _over_total(terms, regex_size, size)
        if over:  # this one is left out: the ones before it (in name order) stay in force
            problems.append(Problem(str(file), None, over))
            continue
        terms, regex_size = terms + size[0], regex_size + size[1]
        watchlists.append(watchlist)
    return watchlists, problems


def _over_total(terms: int, regex_size: int, size: tuple[int, int]) -> str | None:
    """What is wrong with adding a watchlist of `size` (terms, regex size) to the others."""
    if terms + size[0] > MAX_TOTAL_TERMS:
        return (
            f"with this watchlist's {size[0]:,} terms the watchlists hold {terms + size[0]:,} in all, "
            f"over the limit of {MAX_TOTAL_TERMS:,} (the watchlists before it, in name order, hold "
            f"{terms:,}): remove terms, or watchlists that are not needed"
        )
    if regex_size + size[1] > MAX_TOTAL_REGEX_SIZE:
        return (
            f"with this watchlist, the regexes of all watchlists are too large together "
            f"({regex_size + size[1]:,} items counted out, over {MAX_TOTAL_REGEX_SIZE:,}): "
            "use fewer regexes or smaller counts in them"
        )
    return None


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


def fold_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """`scopes` as a watchlist's `feeds` is compared with them: ignoring case, as the
    matcher does. Done once per load: with 100,000 feeds it costs as much as a few hundred
    watchlist files."""
    return frozenset(s.casefold() for s in scopes)


def load_watchlist_file(
    file: Path, channels: Collection[str], scopes: Collection[str], *, disabled_too: bool = False
) -> tuple[Watchlist | None, list[Problem]]:
    """One watchlist file; None (and the problems) when it has any, or is disabled (unless
    `disabled_too`: the hand-run tools try a disabled watchlist when asked by name)."""
    known = fold_scopes(scopes)
    watchlist, problems, _ = _load_file(file, channels, known, disabled_too=disabled_too)
    return watchlist, problems


def _load_file(
    file: Path, channels: Collection[str], known_scopes: frozenset[str], *, disabled_too: bool
) -> tuple[Watchlist | None, list[Problem], tuple[int, int]]:
    """load_watchlist_file, and the watchlist's size: its terms, and its regexes' size.
    `known_scopes`: the feed names and tags, casefolded (fold_scopes)."""
    problems: list[Problem] = []
    terms = regex_size = 0
    try:
        size = file.stat().st_size
    except OSError:
        size = 0  # read_toml says why it cannot be read
    if size > MAX_WATCHLIST_BYTES:  # reading it would cost more than any watchlist in force may
        message = (
            f"watchlist file is {size / 2**20:.1f} MiB, over the limit of {MAX_WATCHLIST_BYTES // 2**20} MiB: "
            "split it into smaller watchlists, or keep the terms that matter"
        )
        return None, [Problem(str(file), None, message)], (0, 0)
    read = read_toml(file, problems)
    if read is None:
        return None, problems, (0, 0)
    data, text = read
    c = Collector(file, text)
    values = check_table(c, data, WATCHLIST_KEYS, (), "watchlist")
    if "match" not in data:
        c.add((), "a watchlist needs match = [...] (one query per string)")
    elif "match" in values and not values["match"]:
        c.add(("match",), "match is empty: add at least one query")
    sensitive = values.get("case_sensitive_terms", ())
    count = len(values.get("match", ())) + len(values.get("exclude", ()))
    parse = count <= MAX_WATCHLIST_TERMS  # else over the limit whatever they hold: not worth parsing
    terms = 0 if parse else count
    queries = (
        [(k, i, q) for k in ("match", "exclude") for i, q in enumerate(values.get(k, ()))] if parse else []
    )
    for key, i, q in queries:
        node, problem = _parse(q, sensitive)
        for sub in walk(node) if node is not None else ():
            terms += isinstance(sub, Term | Regex)
            regex_size += sub.size if isinstance(sub, Regex) else 0
        if problem:
            message, column = problem
            shown = q if len(q) <= 200 else q[:120] + " … " + q[-40:]  # the line and column say where
            where = c.in_string((key, i), column - 1)  # file:line:column of the error itself
            if where is None:
                c.add((key, i), f"{key} query {shown!r}, column {column}: {message}")
            else:
                c.problems.append(Problem(c.file, where[0], f"{key} query {shown!r}: {message}", where[1]))
    if terms > MAX_WATCHLIST_TERMS:
        what = "terms (words, phrases, prefixes and regexes)" if parse else "queries, each a term at least"
        c.add(
            ("match",),
            f"this watchlist has {terms:,} {what}, over the limit of {MAX_WATCHLIST_TERMS:,} terms: "
            "split it into smaller watchlists, or keep the terms that matter",
        )
    elif regex_size > MAX_TOTAL_REGEX_SIZE:
        c.add(
            ("match",),
            f"this watchlist's regexes are too large together ({regex_size:,} items counted out, over "
            f"{MAX_TOTAL_REGEX_SIZE:,}): use fewer regexes or smaller counts in them",
        )
    for i, chan in enumerate(values.get("notify", ())):
        if chan not in channels:
            known = ", ".join(sorted(channels))
            c.add(("notify", i), f"notify names unknown channel {chan!r} (defined: {known})")
    for i, scope in enumerate(values.get("feeds", ())):
        if scope.casefold() not in known_scopes:
            c.add(("feeds", i), f"feeds names {scope!r}, which is no feed name or tag")
    problems.extend(c.problems)
    if c.problems or not (disabled_too or values.get("enabled", True)):
        return None, problems, (terms, regex_size)
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
        (terms, regex_size),
    )


def _parse(query: str, case_sensitive: tuple[str, ...]) -> tuple[Node | None, tuple[str, int] | None]:
    """The query's tree, or its problem (message and column)."""
    try:
        return parse_query(query, case_sensitive_terms=case_sensitive), None
    except QuerySyntaxError as e:
        return None, (e.message + (f"; {e.hint}" if e.hint else ""), e.column)
