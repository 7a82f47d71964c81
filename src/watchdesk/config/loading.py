"""The main config file (watchdesk.toml) -> frozen dataclasses.

Every problem is collected, not just the first, each as `file:line: message`;
`load_config` raises ConfigError listing them all. What is not wrong but likely not what
the user meant (no feeds, no watchlist in force, a file in the watchlists folder that is
not read) is a warning, kept in `Config.warnings`. Secrets are only ever references
(`env:NAME`, `credential:NAME`); they are resolved by `secrets.resolve` when used.
"""

from __future__ import annotations

import glob
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, Problem
from ..models import Watchlist
from ..web import same_resource_url
from . import secrets
from .tomlcheck import (
    Check,
    Collector,
    _bool,
    _cidr_list,
    _email_address,
    _fraction,
    _int,
    _nonempty_str,
    _one_of,
    _secret,
    _str,
    _str_list,
    _timezone,
    _url,
    _via,
    check_table,
    parse_backfill,
    parse_delivery,
    parse_duration,
    parse_size,
    read_toml,
)
from .watchlists import WATCHLIST_KEYS, feed_scopes, fold_scopes, folder_warnings, load_watchlists

__all__ = [
    "CHANNEL_COMMON",
    "CHANNEL_TYPES",
    "SCHEMA",
    "WATCHLIST_KEYS",
    "Config",
    "config_files_signature",
    "expand_feed_patterns",
    "feeds_files",
    "load_config",
    "load_watchlists",
    "parse_backfill",
    "parse_delivery",
    "parse_duration",
    "parse_size",
]

DEFAULT_LOCATIONS = ("./watchdesk.toml", "/etc/watchdesk/watchdesk.toml")

FETCH_ARTICLE = ("auto", "always", "never")


POSTGRES_URL = ("postgresql://", "postgres://")


def _database(v: Any) -> str:
    """A file path (SQLite), or a PostgreSQL URL `postgresql://user@host:5432/dbname`
    whose password, if any, is not written in it (`password = "env:NAME"`)."""
    text = _nonempty_str(v)
    if not text.startswith(POSTGRES_URL):
        if "://" in text:
            raise ValueError(
                f"{text.split('://')[0]}:// is not a database this reads: write a file path "
                "(SQLite) or postgresql://user@host:5432/dbname"
            )
        return text
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        raise ValueError(f"{text!r} has a port that is not a number") from None
    if parts.password is not None:
        raise ValueError(
            "the URL holds a password: secrets are never written inline; write the URL without it "
            "and set [watchdesk] password = 'env:NAME' (or libpq's PGPASSWORD / ~/.pgpass)"
        )
    if not parts.path.strip("/"):
        raise ValueError(f"{text!r} names no database: add it, as in postgresql://user@host:5432/watchdesk")
    return text


def _node(v: Any) -> str:
    text = _nonempty_str(v)
    if len(text) > 64 or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", text):
        raise ValueError(
            f"{text!r} is not a node name: letters, digits and . _ : - (up to 64), such as the host name"
        )
    return text


def _lease(v: Any) -> float:
    seconds = parse_duration(_str(v))
    if seconds < 2:
        raise ValueError("a lease shorter than 2 seconds would run out during ordinary polls")
    return seconds


def default_node() -> str:
    """This machine's host name, as a node name (what [watchdesk] node defaults to)."""
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname()).strip("-.")[:64]
    return name or "watchdesk"


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for IPv6) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, such as 127.0.0.1:9464, got {text!r}")
    return host, int(port)


SCHEMA: dict[str, dict[str, Check]] = {
    "watchdesk": {
        "database": _database,
        "password": _secret,
        "node": _node,
        "lease": _lease,
        "watchlists": _nonempty_str,
        "feeds": _str_list,
        "timezone": _timezone,
        "log_level": _one_of("debug", "info", "warning", "error"),
        "log_format": _one_of("logfmt", "json", "text"),
    },
    "polling": {
        "interval": _via(parse_duration),
        "backfill": _via(parse_backfill),
        "max_entries": _int(1),
        "max_backoff": _via(parse_duration),
        "fetch_article": _one_of(*FETCH_ARTICLE),
        "extract_timeout": _via(parse_duration),
        "min_interval": _via(parse_duration),
    },
    "stories": {
        "enabled": _bool,
        "window": _via(parse_duration),
        "similarity": _fraction,
    },
    "retention": {
        "entries": _via(lambda text: parse_retention(text, "entries")),
        "hits": _via(lambda text: parse_retention(text, "hits")),
        "outbox": _via(lambda text: parse_retention(text, "outbox")),
    },
    "health": {
        "notify": _str_list,
        "failing_after": _via(parse_duration),
        "stale_after": _via(parse_duration),
    },
    "network": {
        "allow": _cidr_list,
        "trust_config_feeds": _bool,
        "timeout": _via(parse_duration),
        "connect_timeout": _via(parse_duration),
        "max_feed_bytes": parse_size,
        "max_page_bytes": parse_size,
        "concurrency": _int(1),
        "per_host": _int(1),
        "per_host_delay": _via(parse_duration),
        "max_redirects": _int(0),
        "robots": _bool,
        "user_agent": _nonempty_str,
    },
    "metrics": {
        "listen": _via(parse_listen),
    },
    "feed": {
        "url": _url("http", "https"),
        "name": _nonempty_str,
        "tags": _str_list,
        "interval": _via(parse_duration),
        "backfill": _via(parse_backfill),
        "fetch_article": _one_of(*FETCH_ARTICLE),
        "enabled": _bool,
        "stale_after": _via(parse_duration),
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
        "from": _email_address,
        "to": _str_list,  # each element an address: checked in _load_channels, at its line
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


# ---- the resulting objects ------------------------------------------------------------


@dataclass(frozen=True)
class PollingConfig:
    interval: float = 900.0
    backfill: float | None = 86400.0  # seconds; 0 = none, None = all
    max_entries: int = 100
    max_backoff: float = 6 * 3600.0
    fetch_article: str = "auto"
    extract_timeout: float = 20.0
    min_interval: float = 120.0  # an overflowing feed is polled more often, down to this


def parse_retention(text: str, what: str) -> float | None:
    """'90d' -> seconds; 'forever' -> None (kept for ever)."""
    if text == "forever":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"{what} = {text!r}: write a duration like '90d' or 'forever'") from None


@dataclass(frozen=True)
class RetentionConfig:
    entries: float | None = 90 * 86400.0  # entries with no hit lose their text after this
    hits: float | None = None  # None: forever
    outbox: float | None = 30 * 86400.0  # sent deliveries and their attempts


@dataclass(frozen=True)
class StoriesConfig:
    enabled: bool = True  # false: a story is its canonical URL only, as before
    window: float = 7 * 86400.0  # copies are looked for among entries this recent
    similarity: float | None = None  # None: the signature's tuned default


@dataclass(frozen=True)
class HealthConfig:
    notify: tuple[str, ...] = ()  # channels that get feed-health alerts; none by default
    failing_after: float = 24 * 3600.0  # a feed failing this long alerts once
    stale_after: float = 14 * 86400.0  # a feed with no new entry this long is stale


@dataclass(frozen=True)
class NetworkConfig:
    allow: tuple[str, ...] = ()
    trust_config_feeds: bool = False
    timeout: float = 30.0
    connect_timeout: float = 10.0  # of one connection (DNS, TCP and TLS), within `timeout`
    max_feed_bytes: int = 10 * 2**20
    max_page_bytes: int = 2 * 2**20
    concurrency: int = 20
    per_host: int = 2
    per_host_delay: float = 1.0
    max_redirects: int = 5
    robots: bool = True
    user_agent: str = ""


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None = None  # (host, port) of /metrics and /healthz; off by default


@dataclass(frozen=True, slots=True)  # slots: 300,000 of them are kept for the daemon's life
class FeedConfig:
    url: str
    name: str
    tags: tuple[str, ...] = ()
    interval: float | None = None
    backfill: float | None = None
    backfill_set: bool = False  # True when the feed sets its own backfill (None = "all")
    fetch_article: str | None = None
    enabled: bool = True
    stale_after: float | None = None  # None: [health] stale_after


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    max_per_hour: int | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path | str  # an SQLite file, or a PostgreSQL URL (str)
    watchlists_dir: Path
    database_password: str | None = None  # [watchdesk] password: a secret reference (PostgreSQL)
    node: str = "watchdesk"  # [watchdesk] node: this daemon's name (leases, logs, metrics)
    lease: float = 60.0  # [watchdesk] lease: how long a dead daemon's feeds and channels wait
    timezone: str = "UTC"
    log_level: str = "info"
    log_format: str = "logfmt"  # logfmt | json | text (ops/logfmt.py)
    polling: PollingConfig = PollingConfig()
    network: NetworkConfig = NetworkConfig()
    health: HealthConfig = HealthConfig()
    stories: StoriesConfig = StoriesConfig()
    retention: RetentionConfig = RetentionConfig()
    metrics: MetricsConfig = MetricsConfig()
    feeds: tuple[FeedConfig, ...] = ()
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    watchlists: tuple[Watchlist, ...] = ()
    watchlist_problems: tuple[Problem, ...] = ()  # only with load_config(broken_watchlists_ok=True)
    warnings: tuple[Problem, ...] = ()  # nothing wrong, but likely not what was meant
    feed_patterns: tuple[str, ...] = ()  # [watchdesk] feeds, as written
    feed_patterns_unmatched: tuple[str, ...] = ()  # those that matched no file (a warning)
    sources: tuple[Path, ...] = ()  # the main file, then every feeds file read (sorted)
    scopes: frozenset[str] = frozenset()  # feed names and tags, casefolded (watchlists' `feeds`)


# ---- loading --------------------------------------------------------------------------


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


def load_config(path: Path, *, check_secrets: bool = True, broken_watchlists_ok: bool = False) -> Config:
    """Read the main file and every watchlist; raise ConfigError listing every problem.

    `check_secrets` resolves every secret reference now, and one that does not resolve is a
    problem (`watchdesk check`); without it only their form is checked (the daemon starts
    anyway, and a channel whose secret does not resolve waits: see runtime.py).
    With `broken_watchlists_ok` (the hand-run tools), a watchlist file with problems is left
    out and its problems kept in `Config.watchlist_problems` instead: one broken file must
    not stop `try` from helping to fix it, nor `search` from working."""
    problems: list[Problem] = []
    read = read_toml(path, problems)
    if read is None:
        raise ConfigError(problems)
    data, text = read
    c = Collector(path, text)
    base = path.resolve().parent

    for key in data:
        if key not in (*SCHEMA, "channel") or key == "feed" and not isinstance(data[key], list):
            c.add(
                (key,),
                "unknown table [" + key + "] (known: watchdesk, polling, network, health, stories, "
                "retention, metrics, feed, channel)",
            )
    top = check_table(c, data.get("watchdesk", {}), SCHEMA["watchdesk"], ("watchdesk",), "watchdesk")
    if "password" in top and not str(top.get("database", "")).startswith(POSTGRES_URL):
        c.add(("watchdesk", "password"), "[watchdesk] password is for a PostgreSQL database URL only")
    elif check_secrets and "password" in top:
        try:
            secrets.resolve(top["password"])
        except secrets.SecretError as e:
            c.add(("watchdesk", "password"), f"[watchdesk] password: {e}")
    polling = PollingConfig(
        **check_table(c, data.get("polling", {}), SCHEMA["polling"], ("polling",), "polling")
    )
    net = check_table(c, data.get("network", {}), SCHEMA["network"], ("network",), "network")
    network = NetworkConfig(**net)
    health = HealthConfig(**check_table(c, data.get("health", {}), SCHEMA["health"], ("health",), "health"))
    stories = StoriesConfig(
        **check_table(c, data.get("stories", {}), SCHEMA["stories"], ("stories",), "stories")
    )
    retention = RetentionConfig(
        **check_table(c, data.get("retention", {}), SCHEMA["retention"], ("retention",), "retention")
    )
    metrics = MetricsConfig(
        **check_table(c, data.get("metrics", {}), SCHEMA["metrics"], ("metrics",), "metrics")
    )

    patterns = top.get("feeds", ())
    files, unmatched = expand_feed_patterns(base, patterns, main=path)
    sources: list[tuple[Collector, Any]] = [(c, data.get("feed", []))]
    for file in files:
        included = _read_feeds_file(file, problems)
        if included is not None:
            sources.append(included)
    feeds = _load_feeds(sources)
    channels = _load_channels(c, data.get("channel", {}), check_secrets)
    for i, chan in enumerate(health.notify):
        if chan not in channels:
            known = ", ".join(sorted(channels))
            c.add(
                ("health", "notify", i), f"[health] notify names unknown channel {chan!r} (defined: {known})"
            )

    watch_dir = base / top.get("watchlists", "watchlists/")
    scopes = fold_scopes(feed_scopes(feeds))
    watchlists, wl_problems = load_watchlists(watch_dir, channels, scopes=scopes)
    problems += [p for fc, _ in sources for p in fc.problems]
    problems += [] if broken_watchlists_ok else wl_problems
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    warnings: list[Problem] = []
    for i in unmatched:
        warnings.append(
            Problem(
                str(path),
                c.line("watchdesk", "feeds", i),
                f"[watchdesk] feeds pattern {patterns[i]!r} matches no file: no feed is read from it",
            )
        )
    if not feeds:
        warnings.append(Problem(str(path), None, "no [[feed]] tables: nothing is polled"))
    elif not any(f.enabled for f in feeds):
        first = next(fc for fc, raw in sources if isinstance(raw, list) and raw)
        line = first.line("feed", 0)
        warnings.append(Problem(first.file, line, "every feed has enabled = false: nothing is polled"))
    warnings += folder_warnings(watch_dir, len(watchlists), bool(wl_problems))
    return Config(
        path=path,
        database=_database_at(base, top.get("database", "watchdesk.db")),
        database_password=top.get("password"),
        node=top.get("node") or default_node(),
        lease=top.get("lease", 60.0),
        watchlists_dir=watch_dir,
        timezone=top.get("timezone", "UTC"),
        log_level=top.get("log_level", "info"),
        log_format=top.get("log_format", "logfmt"),
        polling=polling,
        network=network,
        health=health,
        stories=stories,
        retention=retention,
        metrics=metrics,
        feeds=tuple(feeds),
        channels=channels,
        watchlists=tuple(watchlists),
        watchlist_problems=tuple(wl_problems) if broken_watchlists_ok else (),
        warnings=tuple(warnings),
        feed_patterns=tuple(patterns),
        feed_patterns_unmatched=tuple(patterns[i] for i in unmatched),
        sources=(path, *(Path(fc.file) for fc, _ in sources[1:])),
        scopes=scopes,
    )


def _database_at(base: Path, database: str) -> Path | str:
    return database if database.startswith(POSTGRES_URL) else base / database


def expand_feed_patterns(
    base: Path, patterns: Any, *, main: Path | None = None
) -> tuple[list[Path], list[int]]:
    """The feeds files `patterns` ([watchdesk] feeds: globs relative to `base`, the main
    file's folder, or absolute; `**` spans folders) match, each once, sorted; and the index
    of every pattern that matches no file. The main file itself is never a feeds file."""
    if not isinstance(patterns, list | tuple):
        return [], []
    skip = main.resolve() if main is not None else None
    found: dict[Path, Path] = {}  # resolved -> as named
    unmatched: list[int] = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            continue
        matched = False
        for name in glob.glob(pattern, root_dir=base, recursive=True):
            file = Path(name) if os.path.isabs(name) else base / name
            if not file.is_file():
                continue
            matched = True
            resolved = file.resolve()
            if resolved != skip:
                found.setdefault(resolved, file)
        if not matched:
            unmatched.append(i)
    return sorted(found.values()), unmatched


def feeds_files(config: Config) -> list[Path]:
    """The feeds files the config's [watchdesk] feeds patterns match now."""
    return expand_feed_patterns(config.path.resolve().parent, config.feed_patterns, main=config.path)[0]


def config_files_signature(config: Config) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of the main file and of every feeds file its patterns match
    now (the globs expanded again): it changes when the main file or a feeds file is
    edited, added or removed, which is when the daemon should reload. A file that cannot be
    stat'ed (removed meanwhile) is left out, which changes it too."""
    out: list[tuple[str, int, int]] = []
    for file in (config.path, *feeds_files(config)):
        try:
            st = file.stat()
        except OSError:
            continue
        out.append((str(file), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _read_feeds_file(file: Path, problems: list[Problem]) -> tuple[Collector, Any] | None:
    """A feeds file: only [[feed]] tables. Its Collector (the file's own `file:line`) and
    its [[feed]] list; None, with the problem in `problems`, when it does not read."""
    read = read_toml(file, problems)
    if read is None:
        return None
    data, text = read
    fc = Collector(file, text)
    for key in data:
        if key != "feed" or not isinstance(data[key], list):
            what = f"[{key}]" if isinstance(data[key], dict) else f"{key!r}"
            fc.add(
                (key,), f"a feeds file holds only [[feed]] tables, not {what} (settings go in the main file)"
            )
    feeds = data.get("feed", [])
    return fc, feeds if isinstance(feeds, list) else []


# where a feed was read: its file's Collector and its index among that file's [[feed]]
_Place = tuple[Collector, int]


def _load_feeds(sources: list[tuple[Collector, Any]]) -> list[FeedConfig]:
    """The [[feed]] tables of every file, in order (the main file first); each problem at
    its own file's line, and a duplicate across files naming the other file."""
    feeds: list[FeedConfig] = []
    seen_urls: dict[str, _Place] = {}
    # The same feed under another spelling (a trailing '/', a '#fragment', '%64' for 'd',
    # dot segments, the default port, case): compared in web.same_resource_url's form,
    # never stored or polled in it.
    seen_resources: dict[str, tuple[_Place, str]] = {}
    seen_names: dict[str, _Place] = {}
    schema = SCHEMA["feed"]
    for c, raw in sources:
        if not isinstance(raw, list):
            continue
        for i, item in enumerate(raw):
            raw[i] = None  # each table is freed once read: 300,000 of them are never all kept twice
            values = check_table(c, item, schema, ("feed", i), "feed")
            if "url" not in values:
                if isinstance(item, dict) and "url" not in item:
                    c.add(("feed", i), "[[feed]] needs a url")
                continue
            url = values["url"]
            name = values.get("name") or url.split("://", 1)[1].split("/", 1)[0]
            if url in seen_urls:
                other = seen_urls[url]
                c.add(("feed", i, "url"), f"feed {url} is listed twice (also {_listed_at(c, other)})")
                continue
            resource = same_resource_url(url)
            if resource in seen_resources:
                other, first = seen_resources[resource]
                c.add(
                    ("feed", i, "url"),
                    f"feed URL {url} is the same feed as {_feed_at(c, other)} ({first}); list it once",
                )
                continue
            if name in seen_names:
                other = seen_names[name]
                elsewhere = "" if other[0] is c else f" (also {_feed_at(c, other, 'name')})"
                c.add(
                    ("feed", i, "name"), f"two feeds are named {name!r}{elsewhere}: feed names must be unique"
                )
                continue
            place = (c, i)
            seen_urls[url] = place
            seen_resources[resource] = (place, url)
            seen_names[name] = place
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
                    stale_after=values.get("stale_after"),
                )
            )
    return feeds


def _listed_at(c: Collector, place: _Place) -> str:
    """Where the first of a URL listed twice is, seen from file `c`: 'feed #2, line 9' in
    the same file, 'feed #2 of feeds/a.toml, line 9' in another."""
    other, index = place
    line = other.line("feed", index, "url")
    of = "" if other is c else f" of {other.file}"
    return f"feed #{index + 1}{of}" + ("" if line is None else f", line {line}")


def _feed_at(c: Collector, place: _Place, key: str = "url") -> str:
    """'line 9' in the same file, 'feeds/a.toml:9' in another (else the feed's number)."""
    other, index = place
    line = other.line("feed", index, key)
    if other is c:
        return f"feed #{index + 1}" if line is None else f"line {line}"
    return f"feed #{index + 1} of {other.file}" if line is None else f"{other.file}:{line}"


def _load_channels(c: Collector, raw: Any, check_secrets: bool) -> dict[str, ChannelConfig]:
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
        values = check_table(c, table, schema, path, f"channel.{name}")
        for key in CHANNEL_REQUIRED.get(ctype, ()):
            if key not in table:
                c.add(path, f"channel {name!r} (type {ctype}) needs {key!r}")
        if ctype == "email" and "to" in values:
            if not values["to"]:
                c.add((*path, "to"), f"channel.{name}.to: list at least one recipient")
            for i, address in enumerate(values["to"]):
                try:
                    _email_address(address)
                except ValueError as e:
                    c.add((*path, "to", i), f"channel.{name}.to: {e}")
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
