"""Config: watchdesk.toml and the watchlist files -> frozen dataclasses.

In: TOML files. Out: Config (loading), Watchlists (watchlists), every problem as
file:line (tomlcheck, tomllines); secrets are references resolved only when used (secrets);
OPML subscription lists in and out (opml)."""

from .loading import (
    CHANNEL_COMMON,
    CHANNEL_TYPES,
    SCHEMA,
    ChannelConfig,
    Config,
    FeedConfig,
    HealthConfig,
    MetricsConfig,
    NetworkConfig,
    PollingConfig,
    RetentionConfig,
    StoriesConfig,
    config_files_signature,
    feeds_files,
    find_config,
    load_config,
    parse_backfill,
    parse_delivery,
    parse_duration,
    parse_size,
)
from .opml import (
    ImportedFeed,
    OpmlImport,
    OpmlProblem,
    export_opml,
    import_opml,
    import_opml_file,
    render_feeds_toml,
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
    "ImportedFeed",
    "NetworkConfig",
    "OpmlImport",
    "OpmlProblem",
    "PollingConfig",
    "MetricsConfig",
    "RetentionConfig",
    "StoriesConfig",
    "config_files_signature",
    "export_opml",
    "feeds_files",
    "feed_scopes",
    "find_config",
    "import_opml",
    "import_opml_file",
    "load_config",
    "load_watchlist_file",
    "load_watchlists",
    "parse_backfill",
    "parse_delivery",
    "parse_duration",
    "parse_size",
    "redact",
    "render_feeds_toml",
    "resolve",
]
