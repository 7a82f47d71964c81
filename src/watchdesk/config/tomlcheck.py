"""Checking TOML files: read with positions, and validate values, collecting problems.

Every checker raises ValueError with a message fit for `file:line: message`; the
_Collector turns them into Problems carrying the line of the offending key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable
from email.headerregistry import AddressHeader, HeaderRegistry
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit  # noqa: F401  (re-exported for config)
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import Problem
from ..web import lower_scheme, url_problem
from . import secrets, tomlchunks
from .tomllines import locate, string_position

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (604800, 86400, 3600, 60, 1)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
}
_DAILY = re.compile(r"^daily ([01]\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h30m', '2d' -> seconds. Raises ValueError naming the accepted forms."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration (write e.g. '90s', '15m', '1h', '1h30m', '2d')")
    return float(sum(int(g or 0) * unit for g, unit in zip(m.groups(), _UNITS, strict=True)))


def parse_backfill(text: str) -> float | None:
    """'24h' -> seconds; 'none' -> 0 (alert nothing on a first poll); 'all' -> None."""
    if text == "all":
        return None
    if text == "none":
        return 0.0
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a backfill: write a duration like '24h', 'none' or 'all'"
        ) from None


def parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a size (write e.g. 10485760, '10MiB', '500KB')")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def parse_delivery(text: str) -> str:
    if text in ("immediate", "hourly") or _DAILY.match(text):
        return text
    raise ValueError(f"{text!r} is not a delivery: write 'immediate', 'hourly' or 'daily HH:MM'")


# ---- the schema: every key the contract accepts, with its checker -------------------

Check = Callable[[Any], Any]


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def _nonempty_str(v: Any) -> str:
    if not _str(v).strip():
        raise ValueError("must not be empty")
    return str(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {type(v).__name__}")
    return v


def _int(low: int) -> Check:
    def check(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"expected a whole number >= {low}, got {v!r}")
        return v

    return check


def _fraction(v: Any) -> float:
    """A number strictly between 0 and 1, e.g. a similarity threshold."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
        raise ValueError(f"expected a number between 0 and 1, e.g. 0.6, got {v!r}")
    return float(v)


def _str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return tuple(v)


def _cidr_list(v: Any) -> tuple[str, ...]:
    items = _str_list(v)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a CIDR range (write e.g. '10.1.2.0/24')") from None
    return items


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"{v!r} is not one of {', '.join(map(repr, choices))}")
        return str(v)

    return check


def _via(fn: Callable[[str], Any]) -> Check:
    return lambda v: fn(_str(v))


def _secret(v: Any) -> str:
    ref = _str(v)
    if not secrets.is_reference(ref):
        raise ValueError(
            "secrets are never written inline: use 'env:NAME' or 'credential:NAME' "
            "(a file in $CREDENTIALS_DIRECTORY)"
        )
    return ref


_HEADERS = HeaderRegistry()


def _email_address(v: Any) -> str:
    """One email address, bare or with a display name: `desk@example.org`,
    `Metro Desk <desk@example.org>`, `"Desk, Metro" <desk@example.org>` (what the email
    channel takes; non-ASCII names too). Parsed as an address header by the standard
    library, and as the channel reads it (email.utils.parseaddr): both must agree."""
    text = _str(v)
    problem = _address_problem(text)
    if problem:
        raise ValueError(
            f"{text!r} is not an email address: {problem} "
            "(write e.g. 'desk@example.org' or 'Metro Desk <desk@example.org>')"
        )
    return text


def _address_problem(text: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "it holds a control character"
    try:
        header = _HEADERS("to", text)
    except Exception:  # the parser has bugs on some malformed input (e.g. 'a@': IndexError)
        return "it does not parse as an address"
    if not isinstance(header, AddressHeader):  # what "to" always gives; for mypy
        return "it does not parse as an address"
    if any(group.display_name is not None for group in header.groups):
        return "a group ('name: ...;') is not one address"
    mailboxes = header.addresses
    if len(mailboxes) > 1:
        return f"it holds {len(mailboxes)} addresses; write one per string"
    if not mailboxes or not mailboxes[0].username or not mailboxes[0].domain:
        return "it has no user@domain"
    if header.defects:
        return str(header.defects[0])
    spec = mailboxes[0].addr_spec
    if parseaddr(text)[1] != spec or any(c.isspace() for c in spec):
        return "it does not read as one plain user@domain"
    return None


def _url(*schemes: str) -> Check:
    """A URL of one of `schemes` (in any case: `HTTP://` is read as `http://`) with a host
    and, if any, a port from 1 to 65535: what the network layer would refuse at every
    request is refused here, at its line."""

    def check(v: Any) -> str:
        written = _str(v)
        url = lower_scheme(written)
        if not any(url.startswith(s + "://") for s in schemes):
            raise ValueError(f"{written!r} must start with {' or '.join(s + '://' for s in schemes)}")
        problem = url_problem(written)
        if problem is not None:
            raise ValueError(problem)
        return url

    return check


def _timezone(v: Any) -> str:
    name = _nonempty_str(v)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone (write e.g. 'UTC', 'Europe/Berlin', 'America/Chicago')"
        ) from None
    return name


class Collector:
    """The problems of one file, each at the line of its key. Where keys are (tomllines'
    scan, as costly as parsing the file) is worked out only when first asked: a valid file
    of 100,000 [[feed]] tables is never scanned (issue 15)."""

    def __init__(self, file: Path, text: str):
        self.file = str(file)
        self._text = text
        self._lines: dict[tuple[object, ...], int] | None = None
        self._strings: dict[tuple[object, ...], tuple[int, int]] = {}
        self._text_lines: list[str] = []
        self.problems: list[Problem] = []

    @property
    def lines(self) -> dict[tuple[object, ...], int]:
        """Each table, key and array element path -> its line (tomllines.locate)."""
        if self._lines is None:
            self._lines = locate(self._text, self._strings)
            self._text_lines = self._text.splitlines()
        return self._lines

    def in_string(self, path: tuple[object, ...], index: int) -> tuple[int, int] | None:
        """File line and column of character `index` of the string array element at `path`."""
        _ = self.lines  # fills self._strings
        start = self._strings.get(path)
        return None if start is None else string_position(self._text_lines, *start, index)

    def line(self, *path: object) -> int | None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def add(self, path: tuple[object, ...], message: str, column: int | None = None) -> None:
        self.problems.append(Problem(self.file, self.line(*path), message, column))


def read_toml(path: Path, problems: list[Problem]) -> tuple[dict[str, Any], str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(str(path), None, f"cannot read: {e}"))
        return None
    try:
        # rtoml (compiled) reads 100,000 [[feed]] tables in 0.6 s, tomllib in 2.3 s; for
        # valid TOML they give the same (a canary test). Whatever rtoml refuses, tomllib
        # reads again: its message and position are the ones reported, as always. A long
        # run of [[feed]] tables is read in pieces (tomlchunks: a lower peak of memory).
        return tomlchunks.loads(text), text
    except Exception:  # noqa: BLE001 - rtoml's own error, or anything: tomllib decides
        pass
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        if "at end of document" in str(e):
            msg = msg.replace(" (at end of document)", "") + " (at end of file)"
            line = max(1, len(text.splitlines()))
        problems.append(Problem(str(path), line, f"not valid TOML: {msg}", col))
        return None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        # the line where [ and { (outside quotes and comments) first nest 100 deep, if any
        depth, line = 0, None
        for number, row in enumerate(text.splitlines(), 1):
            for token in re.findall(r"""\#.*|"(?:\\.|[^"\\])*"|'[^']*'|[\[\]{}]""", row):
                depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(token, 0)
                line = number if depth >= 100 and line is None else line
        problems.append(Problem(str(path), line, "TOML nested too deeply"))
        return None


def check_table(
    c: Collector, data: Any, schema: dict[str, Check], path: tuple[object, ...], what: str
) -> dict[str, Any]:
    """Validate one table against its schema; return the converted values present."""
    if not isinstance(data, dict):
        c.add(path, f"[{what}] must be a table")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        check = schema.get(key)
        if check is None:
            known = ", ".join(sorted(schema)) or "none"
            c.add((*path, key), f"unknown key {key!r} in [{what}] (known keys: {known})")
            continue
        try:
            out[key] = check(value)
        except ValueError as e:
            c.add((*path, key), f"{what}.{key}: {e}")
    return out
