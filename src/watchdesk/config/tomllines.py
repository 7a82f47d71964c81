"""Where things are in a TOML file: the line of each table, key and array element.

tomllib gives values but no positions; config errors must name `file:line`. This scanner
walks the text once, tracking table headers, keys and (for arrays) the line where each
element starts. Paths are tuples: ("polling", "interval"), ("feed", 0, "url"),
("match", 2) for the third element of `match`.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_key(raw: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", raw)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def locate(
    text: str, strings: dict[tuple[object, ...], tuple[int, int]] | None = None
) -> dict[tuple[object, ...], int]:
    """Map each table, key and array element path to its 1-based line number; fill
    `strings`, if given, with where each string element of an array opens (line index,
    column index of its quote), for string_position."""
    where: dict[tuple[object, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[object, ...] = ()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            name = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = arrays.get(name, -1) + 1
                arrays[name] = index
                table = (*name, index)
            else:
                table = name
            where.setdefault(table, i + 1)
            i += 1
            continue
        key = _KEY.match(line)
        if not key:
            i += 1
            continue
        path = (*table, *_split_key(key.group(1)))
        where.setdefault(path, i + 1)
        i = _scan_value(lines, i, key.end(), path, where, {} if strings is None else strings)
    return where


def _scan_value(
    lines: list[str],
    i: int,
    col: int,
    path: tuple[object, ...],
    where: dict[tuple[object, ...], int],
    strings: dict[tuple[object, ...], tuple[int, int]],
) -> int:
    """Scan a value starting at lines[i][col:]; record array elements; return next line."""
    depth = 0
    element = 0
    expect_element = False
    while i < len(lines):
        line = lines[i]
        while col < len(line):
            ch = line[col]
            if ch == "#":
                break
            if ch in "\"'":
                if depth == 1 and expect_element:
                    where.setdefault((*path, element), i + 1)
                    strings.setdefault((*path, element), (i, col))
                    expect_element = False
                i, col = _skip_string(lines, i, col)
                line = lines[i] if i < len(lines) else ""
                continue
            if ch == "[":
                depth += 1
                if depth == 1:
                    expect_element = True
            elif ch == "]":
                depth -= 1
                if depth <= 0:
                    return i + 1
            elif ch == "," and depth == 1:
                element += 1
                expect_element = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif not ch.isspace() and depth == 1 and expect_element:
                where.setdefault((*path, element), i + 1)
                expect_element = False
            col += 1
        if depth <= 0:
            return i + 1
        i += 1
        col = 0
    return i


def _skip_string(lines: list[str], i: int, col: int) -> tuple[int, int]:
    """Return the position just after the string literal starting at lines[i][col]."""
    line = lines[i]
    quote = line[col]
    triple = line[col : col + 3] == quote * 3
    delim = quote * 3 if triple else quote
    pos = col + len(delim)
    while i < len(lines):
        line = lines[i]
        while pos < len(line):
            if quote == '"' and line[pos] == "\\":
                pos += 2
                continue
            if line.startswith(delim, pos):
                return i, pos + len(delim)
            pos += 1
        if not triple:
            return i, len(line)
        i += 1
        pos = 0
    return i, 0


_ESCAPE_LENGTH = {"u": 6, "U": 10}  # \uXXXX, \UXXXXXXXX; any other escape is 2 characters


def string_position(lines: list[str], i: int, col: int, index: int) -> tuple[int, int]:
    """The 1-based line and column in the file of character `index` of the value of the
    TOML string literal that opens at lines[i][col] (escapes, multi-line strings and
    line-ending backslashes undone as TOML does); the closing quote's if past the end."""
    quote = lines[i][col]
    triple = lines[i][col : col + 3] == quote * 3
    delim = quote * 3 if triple else quote
    pos = col + len(delim)
    if triple and pos == len(lines[i]) and i + 1 < len(lines):  # a newline right after """ is trimmed
        i, pos = i + 1, 0
    seen = 0
    while i < len(lines):
        line = lines[i]
        while pos < len(line):
            backslash = quote == '"' and line[pos] == "\\"
            if backslash and triple and not line[pos + 1 :].strip():  # line-ending: no characters
                i += 1
                while i < len(lines) and not lines[i].strip():
                    i += 1
                if i >= len(lines):
                    break
                line, pos = lines[i], len(lines[i]) - len(lines[i].lstrip())
                continue
            if line.startswith(delim, pos) or seen == index:
                return i + 1, pos + 1
            if backslash:
                pos += _ESCAPE_LENGTH.get(line[pos + 1 : pos + 2], 2)
            else:
                pos += 1
            seen += 1
        if not triple or i + 1 >= len(lines):
            return i + 1, len(line) + 1
        if seen == index:  # the line break itself
            return i + 1, len(line) + 1
        seen += 1
        i, pos = i + 1, 0
    return len(lines), 1
