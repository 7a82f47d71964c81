"""What changed between the running config and a reloaded one (pure).

A feed is its URL as written. A URL that disappears while a feed of the same name
appears with another URL is that feed moved: it keeps its history. Every other
difference in a feed (interval, tags, name, backfill...) is a change in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .loading import Config, FeedConfig

SECTIONS = ("polling", "network", "health", "stories", "retention")
NEEDS_RESTART = (
    "database",
    "database_password",
    "node",
    "lease",
    "metrics",
)  # settings a running daemon cannot take over


@dataclass(frozen=True)
class ConfigChanges:
    feeds_added: tuple[FeedConfig, ...] = ()
    feeds_removed: tuple[FeedConfig, ...] = ()
    feeds_moved: tuple[tuple[FeedConfig, FeedConfig], ...] = ()  # (old, new): the URL changed
    feeds_changed: tuple[FeedConfig, ...] = ()  # the new config of each feed changed in place
    channels_added: tuple[str, ...] = ()
    channels_removed: tuple[str, ...] = ()
    channels_changed: tuple[str, ...] = ()
    sections_changed: tuple[str, ...] = ()  # [polling], [network], [health], [stories], timezone...
    watchlists_dir_changed: bool = False
    needs_restart: tuple[str, ...] = field(default=())  # changed, but kept until a restart

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def diff(old: Config, new: Config) -> ConfigChanges:
    old_feeds = {f.url: f for f in old.feeds if f.enabled}
    new_feeds = {f.url: f for f in new.feeds if f.enabled}
    removed = [f for url, f in old_feeds.items() if url not in new_feeds]
    added = [f for url, f in new_feeds.items() if url not in old_feeds]
    added_by_name = {f.name: f for f in added}
    moved: list[tuple[FeedConfig, FeedConfig]] = []
    for gone in list(removed):
        successor = added_by_name.pop(gone.name, None)
        if successor is not None:
            moved.append((gone, successor))
            removed.remove(gone)
            added.remove(successor)
    changed = [f for url, f in new_feeds.items() if url in old_feeds and old_feeds[url] != f]
    channels_added = tuple(sorted(set(new.channels) - set(old.channels)))
    channels_removed = tuple(sorted(set(old.channels) - set(new.channels)))
    channels_changed = tuple(
        sorted(n for n in set(old.channels) & set(new.channels) if old.channels[n] != new.channels[n])
    )
    sections = [s for s in SECTIONS if getattr(old, s) != getattr(new, s)]
    if old.timezone != new.timezone:
        sections.append("timezone")
    return ConfigChanges(
        feeds_added=tuple(added),
        feeds_removed=tuple(removed),
        feeds_moved=tuple(moved),
        feeds_changed=tuple(changed),
        channels_added=channels_added,
        channels_removed=channels_removed,
        channels_changed=channels_changed,
        sections_changed=tuple(sections),
        watchlists_dir_changed=old.watchlists_dir != new.watchlists_dir,
        needs_restart=tuple(s for s in NEEDS_RESTART if getattr(old, s) != getattr(new, s)),
    )
