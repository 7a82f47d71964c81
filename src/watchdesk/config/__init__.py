"""Config: watchdesk.toml and the watchlist files -> frozen dataclasses.

In: TOML files. Out: Config (loading), Watchlists (watchlists), every problem as
file:line (tomlcheck, tomllines); secrets are references resolved only when used (secrets)."""

from .loading import (
    CHANNEL_COMMON,
    CHANNEL_TYPES,
    SCHEMA,
    ChannelConfig,
    Config,
    FeedConfig,
    HealthConfig,
    NetworkConfig,
    PollingConfig,
    RetentionConfig,
    StoriesConfig,
    find_config,
    load_config,
    parse_backfill,
    parse_delivery,
    parse_duration,
    parse_size,
)
from .secrets import redact, resolve
from .watchlists import WATCHLIST_KEYS, feed_scopes, load_watchlist_file, load_watchlists

__all__ = [
    "CHANNEL_COMMON",
    "CHANNEL_TYPES",
    "SCHEMA",
    "WATCHLIST_KEYS",
    "ChannelConfig",
    "Config",
    "FeedConfig",
    "HealthConfig",
    "NetworkConfig",
    "PollingConfig",
    "RetentionConfig",
    "StoriesConfig",
    "feed_scopes",
    "find_config",
    "load_config",
    "load_watchlist_file",
    "load_watchlists",
    "parse_backfill",
    "parse_delivery",
    "parse_duration",
    "parse_size",
    "redact",
    "resolve",
]
