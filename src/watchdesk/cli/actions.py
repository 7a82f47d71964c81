"""Operations behind the hand-run commands: extract a page, try a query, rematch a
watchlist over the archive, search the archive. The CLI renders what these return."""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import sqlite_utils

from ..config import Config, NetworkConfig, feed_scopes, load_watchlist_file
from ..matching import any_of, compile_matcher
from ..models import Article, Hit, Watchlist
from ..outbox import queue_alerts, story_key
from ..store import entries as entry_store
from ..store import hits as hit_store

if TYPE_CHECKING:  # the network and extraction code loads only for a command that fetches
    from ..ingest import Extraction, Page


async def fetch_page_once(url: str, config: Config | None) -> Page:
    """Fetch one article page exactly as the daemon would (guard, robots, caps)."""
    from ..ingest import ArticleFetcher, HttpPool, Limits, RobotsCache

    net = config.network if config else NetworkConfig()
    pool = HttpPool(concurrency=2, per_host=1, user_agent=net.user_agent, allow=net.allow)
    limits = Limits(timeout=net.timeout, max_bytes=net.max_page_bytes, max_redirects=net.max_redirects)
    robots = RobotsCache(pool, limits, time.time) if net.robots else None
    try:
        return await ArticleFetcher(pool, limits, robots=robots, per_host_delay=0).fetch(url)
    finally:
        await pool.aclose()


def article_from_extraction(extraction: Extraction, url: str | None) -> Article:
    return Article(
        title=extraction.title or "",
        text=extraction.text,
        url=url,
        text_source="page",
        language=extraction.language,
        page_title=extraction.title,
        page_date=extraction.date,
    )


@dataclass(frozen=True)
class Chosen:
    """What a tool's WATCHLIST-or-QUERY argument was taken to be."""

    watchlist: Watchlist
    is_query: bool = False
    disabled: bool = False  # enabled = false: try tries it, rematch refuses it
    notes: tuple[str, ...] = ()  # said to the user: a disabled watchlist, a likely typo


_BARE_NAME = re.compile(r"[\w.-]+")


def watchlist_for(config: Config | None, name_or_query: str) -> Chosen:
    """A configured watchlist by name (a disabled one too), a watchlist file by path, or
    else a query; a bare word close to a watchlist's name is tried as a query, with a note.

    Raises ValueError listing the problems of a watchlist file that has any.
    """
    if config is not None:
        for w in config.watchlists:
            if w.name == name_or_query:
                return Chosen(w)
        own = config.watchlists_dir / f"{name_or_query}.toml"
        if _BARE_NAME.fullmatch(name_or_query) and own.is_file():  # broken or disabled
            return _from_file(config, own)
    if name_or_query.endswith(".toml") and Path(name_or_query).is_file():
        return _from_file(config, Path(name_or_query))
    notes: tuple[str, ...] = ()
    if config is not None and _BARE_NAME.fullmatch(name_or_query):  # a watchlist's name, misspelled?
        names = [w.name for w in config.watchlists]
        for close in difflib.get_close_matches(name_or_query, names, n=1, cutoff=0.75):
            notes = (
                f"{name_or_query!r} is no watchlist name, so it was tried as a query (did you mean {close!r}?)",
            )
    return Chosen(Watchlist("query", (name_or_query,)), is_query=True, notes=notes)


def _from_file(config: Config | None, path: Path) -> Chosen:
    channels = config.channels if config else {"console": None}
    scopes = feed_scopes(config.feeds) if config else set()
    watchlist, problems = load_watchlist_file(path, channels, scopes, disabled_too=True)
    if watchlist is None:
        raise ValueError("\n".join(str(p) for p in problems))
    enabled, _ = load_watchlist_file(path, channels, scopes)
    notes = () if enabled else (f"{path} is disabled (enabled = false); tried anyway",)
    return Chosen(watchlist, disabled=enabled is None, notes=notes)


def reason_for_no_hit(
    watchlist: Watchlist, article: Article, feed_name: str = "", feed_tags: Iterable[str] = ()
) -> str | None:
    """Why a watchlist does not match an article (from that feed) its match queries do
    match: the exclude query that vetoes it. None when no match query matches."""
    if not watchlist.exclude:
        return None
    tags = tuple(feed_tags)
    unvetoed = compile_matcher([replace(watchlist, exclude=())]).match(
        article, feed_name=feed_name, feed_tags=tags
    )
    if not unvetoed:
        return None
    for query in watchlist.exclude:
        vetoing = compile_matcher([replace(watchlist, match=(query,), exclude=())])
        if vetoing.match(article, feed_name=feed_name, feed_tags=tags):
            return f"match query {unvetoed[0].query!r} matches, but exclude query {query!r} vetoes it"
    return None  # not reached: an exclude query matched


def candidates_query(watchlist: Watchlist) -> str | None:
    """The FTS5 query that narrows stored entries to those the watchlist may match."""
    return any_of(watchlist.match, watchlist.case_sensitive_terms)


@dataclass
class RematchSummary:
    scanned: int = 0
    hits: int = 0  # new hits stored
    already: int = 0  # entries that already had a hit of this watchlist
    alerts_queued: int = 0


def rematch(
    db: sqlite_utils.Database,
    config: Config,
    watchlist: Watchlist,
    *,
    since: float | None,
    notify: bool,
    now: float,
    progress: Callable[[int], None] = lambda n: None,
) -> RematchSummary:
    """Apply a watchlist to stored entries and store new hits. With `notify`, queue alerts
    for its hits that were never alerted (new ones, or ones stored by an earlier rematch
    or outside a first poll's backfill window); never for a story this watchlist already
    alerted on a channel (the outbox key is the story's)."""
    matcher = compile_matcher([watchlist])
    tags = {f.url: f.tags for f in config.feeds}
    summary = RematchSummary()
    for stored in entry_store.stored_entries(db, fts=candidates_query(watchlist), since=since):
        summary.scanned += 1
        progress(1)
        for hit in matcher.match(
            stored.article, feed_name=stored.feed_name, feed_tags=tags.get(stored.feed_url, ())
        ):
            with db.atomic():
                hit_id = hit_store.insert_hit(db, stored.id, hit, alerted=False, now=now)
                if hit_id is None:
                    summary.already += 1
                    hit_id = hit_store.unalerted_hit(db, stored.id, watchlist.name) if notify else None
                    if hit_id is None:
                        continue
                else:
                    summary.hits += 1
                if notify:
                    story = stored.story or story_key(stored.link, stored.feed_url, stored.key)
                    queued = queue_alerts(
                        db, watchlist, story, stored.article, hit, hit_id, now, ZoneInfo(config.timezone)
                    )
                    if queued:  # `alerted` only when something was queued (not a story alerted before)
                        hit_store.mark_alerted(db, hit_id)
                    summary.alerts_queued += queued
    return summary


def search(
    db: sqlite_utils.Database, query: str, *, since: float | None, limit: int
) -> Iterator[tuple[entry_store.StoredEntry, Hit]]:
    """Stored entries the query matches, newest first: FTS5 narrows, the matcher decides."""
    watchlist = Watchlist("search", (query,))
    matcher = compile_matcher([watchlist])
    found = 0
    for stored in entry_store.stored_entries(db, fts=any_of([query]), since=since):
        hits = matcher.match(stored.article)
        if hits:
            yield stored, hits[0]
            found += 1
            if found >= limit:
                return
