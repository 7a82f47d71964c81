"""TOML config and watchlist files -> frozen dataclasses.

Every problem is collected, not just the first, each as `file:line: message`;
`load_config` raises ConfigError listing them all. Secrets are only ever references
(`env:NAME`, `credential:NAME`); they are resolved by `secrets.resolve` when used.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import secrets
from .errors import ConfigError, Problem, QuerySyntaxError
from .models import Watchlist
from .tomllines import locate

DEFAULT_LOCATIONS = ("./watchdesk.toml", "/etc/watchdesk/watchdesk.toml")

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
FETCH_ARTICLE = ("auto", "always", "never")


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


def _url(*schemes: str) -> Check:
    def check(v: Any) -> str:
        url = _str(v)
        if not any(url.startswith(s + "://") for s in schemes):
            raise ValueError(f"{url!r} must start with {' or '.join(s + '://' for s in schemes)}")
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


SCHEMA: dict[str, dict[str, Check]] = {
    "watchdesk": {
        "database": _nonempty_str,
        "watchlists": _nonempty_str,
        "timezone": _timezone,
        "log_level": _one_of("debug", "info", "warning", "error"),
    },
    "polling": {
        "interval": _via(parse_duration),
        "backfill": _via(parse_backfill),
        "max_entries": _int(1),
        "max_backoff": _via(parse_duration),
        "fetch_article": _one_of(*FETCH_ARTICLE),
        "extract_timeout": _via(parse_duration),
    },
    "network": {
        "allow": _cidr_list,
        "trust_config_feeds": _bool,
        "timeout": _via(parse_duration),
        "max_feed_bytes": parse_size,
        "max_page_bytes": parse_size,
        "concurrency": _int(1),
        "per_host": _int(1),
        "per_host_delay": _via(parse_duration),
        "max_redirects": _int(0),
        "robots": _bool,
        "user_agent": _nonempty_str,
    },
    "feed": {
        "url": _url("http", "https"),
        "name": _nonempty_str,
        "tags": _str_list,
        "interval": _via(parse_duration),
        "backfill": _via(parse_backfill),
        "fetch_article": _one_of(*FETCH_ARTICLE),
        "enabled": _bool,
    },
}
CHANNEL_COMMON: dict[str, Check] = {
    "type": _one_of("console", "email", "slack", "webhook", "apprise"),
    "max_per_hour": _int(1),
}
CHANNEL_TYPES: dict[str, dict[str, Check]] = {
    "console": {},
    "email": {
        "smtp": _url("smtp", "smtps"),
        "from": _nonempty_str,
        "to": _str_list,
        "username": _nonempty_str,
        "password": _secret,
        "tls": _one_of("starttls", "implicit", "none"),
    },
    "slack": {"webhook": _secret},
    "webhook": {"url": _url("http", "https"), "secret": _secret},
    "apprise": {"urls": _secret},
}
CHANNEL_REQUIRED = {
    "email": ("smtp", "from", "to"),
    "slack": ("webhook",),
    "webhook": ("url",),
    "apprise": ("urls",),
}
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


# ---- the resulting objects ------------------------------------------------------------


@dataclass(frozen=True)
class PollingConfig:
    interval: float = 900.0
    backfill: float | None = 86400.0  # seconds; 0 = none, None = all
    max_entries: int = 100
    max_backoff: float = 6 * 3600.0
    fetch_article: str = "auto"
    extract_timeout: float = 20.0


@dataclass(frozen=True)
class NetworkConfig:
    allow: tuple[str, ...] = ()
    trust_config_feeds: bool = False
    timeout: float = 30.0
    max_feed_bytes: int = 10 * 2**20
    max_page_bytes: int = 2 * 2**20
    concurrency: int = 20
    per_host: int = 2
    per_host_delay: float = 1.0
    max_redirects: int = 5
    robots: bool = True
    user_agent: str = ""


@dataclass(frozen=True)
class FeedConfig:
    url: str
    name: str
    tags: tuple[str, ...] = ()
    interval: float | None = None
    backfill: float | None = None
    backfill_set: bool = False  # True when the feed sets its own backfill (None = "all")
    fetch_article: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    max_per_hour: int | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    watchlists_dir: Path
    timezone: str = "UTC"
    log_level: str = "info"
    polling: PollingConfig = PollingConfig()
    network: NetworkConfig = NetworkConfig()
    feeds: tuple[FeedConfig, ...] = ()
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    watchlists: tuple[Watchlist, ...] = ()


# ---- loading --------------------------------------------------------------------------


class _Collector:
    def __init__(self, file: Path, text: str):
        self.file = str(file)
        self.lines = locate(text)
        self.problems: list[Problem] = []

    def line(self, *path: object) -> int | None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None

    def add(self, path: tuple[object, ...], message: str, column: int | None = None) -> None:
        self.problems.append(Problem(self.file, self.line(*path), message, column))


def _read_toml(path: Path, problems: list[Problem]) -> tuple[dict[str, Any], str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(str(path), None, f"cannot read: {e}"))
        return None
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


def _check_table(
    c: _Collector, data: Any, schema: dict[str, Check], path: tuple[object, ...], what: str
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


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("WATCHDESK_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_LOCATIONS:
        if Path(candidate).is_file():
            return Path(candidate)
    tried = ", ".join(("$WATCHDESK_CONFIG", *DEFAULT_LOCATIONS))
    raise ConfigError(
        [Problem("watchdesk", None, f"no config file found (looked at {tried}); pass --config PATH")]
    )


def load_config(path: Path, *, check_secrets: bool = True) -> Config:
    """Read the main file and every watchlist; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    read = _read_toml(path, problems)
    if read is None:
        raise ConfigError(problems)
    data, text = read
    c = _Collector(path, text)
    base = path.resolve().parent

    for key in data:
        if key not in (*SCHEMA, "channel") or key == "feed" and not isinstance(data[key], list):
            c.add((key,), f"unknown table [{key}] (known: watchdesk, polling, network, feed, channel)")
    top = _check_table(c, data.get("watchdesk", {}), SCHEMA["watchdesk"], ("watchdesk",), "watchdesk")
    polling = PollingConfig(
        **_check_table(c, data.get("polling", {}), SCHEMA["polling"], ("polling",), "polling")
    )
    net = _check_table(c, data.get("network", {}), SCHEMA["network"], ("network",), "network")
    network = NetworkConfig(**net)

    feeds = _load_feeds(c, data.get("feed", []))
    channels = _load_channels(c, data.get("channel", {}), check_secrets)

    watch_dir = base / top.get("watchlists", "watchlists/")
    watchlists, wl_problems = load_watchlists(watch_dir, channels, feeds)
    problems = c.problems + wl_problems
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return Config(
        path=path,
        database=base / top.get("database", "watchdesk.db"),
        watchlists_dir=watch_dir,
        timezone=top.get("timezone", "UTC"),
        log_level=top.get("log_level", "info"),
        polling=polling,
        network=network,
        feeds=tuple(feeds),
        channels=channels,
        watchlists=tuple(watchlists),
    )


def _load_feeds(c: _Collector, raw: Any) -> list[FeedConfig]:
    if not isinstance(raw, list):
        return []
    feeds: list[FeedConfig] = []
    seen_urls: dict[str, int] = {}
    seen_names: set[str] = set()
    for i, item in enumerate(raw):
        values = _check_table(c, item, SCHEMA["feed"], ("feed", i), "feed")
        if "url" not in values:
            if isinstance(item, dict) and "url" not in item:
                c.add(("feed", i), "[[feed]] needs a url")
            continue
        url = values["url"]
        name = values.get("name") or url.split("://", 1)[1].split("/", 1)[0]
        if url in seen_urls:
            c.add(("feed", i, "url"), f"feed {url} is listed twice (also feed #{seen_urls[url] + 1})")
            continue
        if name in seen_names:
            c.add(("feed", i, "name"), f"two feeds are named {name!r}: feed names must be unique")
            continue
        seen_urls[url] = i
        seen_names.add(name)
        feeds.append(
            FeedConfig(
                url=url,
                name=name,
                tags=values.get("tags", ()),
                interval=values.get("interval"),
                backfill=values.get("backfill"),
                backfill_set="backfill" in values,
                fetch_article=values.get("fetch_article"),
                enabled=values.get("enabled", True),
            )
        )
    return feeds


def _load_channels(c: _Collector, raw: Any, check_secrets: bool) -> dict[str, ChannelConfig]:
    channels: dict[str, ChannelConfig] = {"console": ChannelConfig("console", "console")}
    if not isinstance(raw, dict):
        c.add(("channel",), "[channel] must hold named tables like [channel.desk]")
        return channels
    for name, table in raw.items():
        path = ("channel", name)
        if not isinstance(table, dict):
            c.add(path, f"channel {name!r} must be a table")
            continue
        ctype = table.get("type")
        if ctype not in CHANNEL_TYPES:
            c.add((*path, "type"), f"channel {name!r} needs type = one of {', '.join(CHANNEL_TYPES)}")
            continue
        schema = {**CHANNEL_COMMON, **CHANNEL_TYPES[ctype]}
        values = _check_table(c, table, schema, path, f"channel.{name}")
        for key in CHANNEL_REQUIRED.get(ctype, ()):
            if key not in table:
                c.add(path, f"channel {name!r} (type {ctype}) needs {key!r}")
        if ctype == "email" and values.get("tls") == "none":
            host = urlsplit(values.get("smtp", "")).hostname
            if host not in ("localhost", "127.0.0.1", "::1"):
                c.add(
                    (*path, "tls"),
                    f"channel {name!r}: tls = 'none' is only allowed for a relay on loopback",
                )
        if check_secrets:
            for key, check in schema.items():
                if check is _secret and key in values:
                    try:
                        secrets.resolve(values[key])
                    except secrets.SecretError as e:
                        c.add((*path, key), f"channel {name!r}: {key}: {e}")
        options = {k: v for k, v in values.items() if k not in CHANNEL_COMMON}
        channels[name] = ChannelConfig(name, ctype, options, values.get("max_per_hour"))
    return channels


def load_watchlists(
    folder: Path,
    channels: dict[str, ChannelConfig],
    feeds: list[FeedConfig] | tuple[FeedConfig, ...],
) -> tuple[list[Watchlist], list[Problem]]:
    """Every *.toml in `folder` is one watchlist named after its file."""
    problems: list[Problem] = []
    if not folder.is_dir():
        return [], [Problem(str(folder), None, "watchlists folder does not exist")]
    scopes = {f.name for f in feeds} | {t for f in feeds for t in f.tags}
    watchlists = []
    for file in sorted(folder.glob("*.toml")):
        read = _read_toml(file, problems)
        if read is None:
            continue
        data, text = read
        c = _Collector(file, text)
        values = _check_table(c, data, WATCHLIST_KEYS, (), "watchlist")
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
                    c.add((key, i), f"{key} query {q!r}, column {column}: {message}")
        for i, chan in enumerate(values.get("notify", ())):
            if chan not in channels:
                known = ", ".join(sorted(channels))
                c.add(("notify", i), f"notify names unknown channel {chan!r} (defined: {known})")
        for i, scope in enumerate(values.get("feeds", ())):
            if scope not in scopes:
                c.add(("feeds", i), f"feeds names {scope!r}, which is no feed name or tag")
        problems.extend(c.problems)
        if c.problems or not values.get("enabled", True):
            continue
        watchlists.append(
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
            )
        )
    return watchlists, problems


def _query_problem(query: str, case_sensitive: tuple[str, ...]) -> tuple[str, int] | None:
    try:
        from .query import parse_query
    except ImportError:  # the query language lands with its own module
        return None
    try:
        parse_query(query, case_sensitive_terms=case_sensitive)
    except QuerySyntaxError as e:
        return (e.message + (f"; {e.hint}" if e.hint else ""), e.column)
    return None
