"""Operations behind the hand-run commands: extract a page, try a query, rematch a
watchlist over the archive, search the archive. The CLI renders what these return."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlite_utils

from .articles import ArticleFetcher, Page
from .config import Config, NetworkConfig
from .extract import Extraction, extract_page
from .match import compile_matcher
from .models import Article, Hit, Watchlist
from .narrow import any_of
from .net import HttpPool, Limits
from .pipeline import queue_alerts, story_key
from .robots import RobotsCache
from .store import entries as entry_store
from .store import hits as hit_store
from .watchlists import feed_scopes, load_watchlist_file


async def fetch_page_once(url: str, config: Config | None) -> Page:
    """Fetch one article page exactly as the daemon would (guard, robots, caps)."""
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


def page_article(body: bytes, url: str | None) -> Article:
    """The Article the daemon would match for this page."""
    return article_from_extraction(extract_page(body, url), url)


def watchlist_for(config: Config | None, name_or_query: str) -> Watchlist:
    """A configured watchlist by name, a watchlist file by path, or else a query.

    Raises ValueError listing the problems of a watchlist file that has any.
    """
    if config is not None:
        for w in config.watchlists:
            if w.name == name_or_query:
                return w
    path = Path(name_or_query)
    if name_or_query.endswith(".toml") and path.is_file():
        channels = config.channels if config else {"console": None}
        scopes = feed_scopes(config.feeds) if config else set()
        watchlist, problems = load_watchlist_file(path, channels, scopes)
        if watchlist is None:
            raise ValueError("\n".join(str(p) for p in problems) or f"{path}: the watchlist is disabled")
        return watchlist
    return Watchlist("query", (name_or_query,))


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
    for stored in entry_store.stored_entries(
        db, fts=any_of(watchlist.match, watchlist.case_sensitive_terms), since=since
    ):
        summary.scanned += 1
        progress(1)
        for hit in matcher.match(
            stored.article, feed_name=stored.feed_name, feed_tags=tags.get(stored.feed_url, ())
        ):
            with db.atomic():
                hit_id = hit_store.insert_hit(db, stored.id, hit, alerted=notify, now=now)
                if hit_id is None:
                    summary.already += 1
                    hit_id = hit_store.unalerted_hit(db, stored.id, watchlist.name) if notify else None
                    if hit_id is None:
                        continue
                    hit_store.mark_alerted(db, hit_id)
                else:
                    summary.hits += 1
                if notify:
                    story = story_key(stored.link, stored.feed_url, stored.key)
                    summary.alerts_queued += queue_alerts(
                        db, watchlist, story, stored.article, hit, hit_id, now, ZoneInfo(config.timezone)
                    )
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
