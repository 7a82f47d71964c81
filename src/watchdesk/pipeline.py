"""refresh_feed(): one feed, top to bottom.

fetch (conditional GET) -> skip if unchanged -> parse -> new entries only
-> article text -> match -> ONE transaction: entries + hits + outbox + feed state
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from . import digest
from .config import FeedConfig, PollingConfig
from .ingest import (
    ArticleFetcher,
    CpuPool,
    HttpPool,
    Limits,
    WorkerFailed,
    article_from_entry,
    carries_full_text,
    fetch_article,
    fetch_feed,
    parse_feed,
)
from .matching import Matcher
from .models import (
    Alert,
    Article,
    FailureKind,
    FeedStatus,
    FetchFailed,
    FetchResult,
    Hit,
    NotModified,
    ParsedEntry,
    ParsedFeed,
    PollSummary,
    Watchlist,
)
from .schedule import Health, Schedule, after_failure, after_success
from .store import entries as entry_store
from .store import feeds as feed_store
from .store import hits as hit_store
from .store import outbox as outbox_store
from .store import without_fsync
from .web import canonical_url

log = logging.getLogger(__name__)

PARSE_DEADLINE = 30.0


@dataclass
class PollContext:
    """What polling needs, built once from the config (see runtime.py)."""

    db: sqlite_utils.Database
    pool: HttpPool
    cpu: CpuPool
    matcher: Matcher
    watchlists: dict[str, Watchlist]
    feeds: dict[str, FeedConfig]  # by config URL
    polling: PollingConfig
    limits: Limits
    clock: Callable[[], float]
    random: Callable[[], float]
    fetcher: ArticleFetcher | None = None  # None: match on the feed's own text only
    tz: ZoneInfo = ZoneInfo("UTC")  # of digest windows


async def refresh_feed(ctx: PollContext, feed: feed_store.FeedRow) -> PollSummary:
    summary = PollSummary(feeds=1)
    config = ctx.feeds[feed.config_url]
    schedule = Schedule(config.interval or ctx.polling.interval, ctx.polling.max_backoff)
    result: FetchResult = await fetch_feed(
        ctx.pool, feed.url, etag=feed.etag, last_modified=feed.last_modified, limits=ctx.limits
    )
    now = ctx.clock()
    changes: dict[str, Any] = {"last_polled_at": now}
    if not isinstance(result, FetchFailed) and result.permanent_url and result.permanent_url != feed.url:
        log.info("feed_moved feed=%s new_url=%s", config.name, result.permanent_url)
        changes["url"] = result.permanent_url

    if isinstance(result, NotModified):
        summary.not_modified = 1
        changes.update(etag=result.etag, last_modified=result.last_modified, last_http_status=304)
        _save(ctx.db, feed.id, changes, after_success(now, schedule))
        return summary
    if isinstance(result, FetchFailed):
        return _failed(ctx, feed, config, result, changes, schedule, summary)

    changes.update(etag=result.etag, last_modified=result.last_modified, last_http_status=200)
    body_hash = hashlib.sha256(result.body).hexdigest()
    if body_hash == feed.body_hash:
        summary.unchanged = 1
        _save(ctx.db, feed.id, changes, after_success(now, schedule))
        return summary

    try:
        parsed: ParsedFeed = await ctx.cpu.run(
            parse_feed,
            result.body,
            url=result.url,
            content_type=result.content_type,
            max_entries=ctx.polling.max_entries,
            timeout=PARSE_DEADLINE,
        )
    except WorkerFailed as e:
        failure = FetchFailed(FailureKind.MALFORMED, f"parsing failed: {e}")
        return _failed(ctx, feed, config, failure, changes, schedule, summary)
    if not parsed.entries and not parsed.version:
        reason = parsed.malformed or "no entries"
        failure = FetchFailed(FailureKind.MALFORMED, f"not a feed: {reason}")
        return _failed(ctx, feed, config, failure, changes, schedule, summary)

    summary.fetched = 1
    changes.update(body_hash=body_hash, malformed=parsed.malformed, title=parsed.title)
    known = entry_store.existing_keys(ctx.db, feed.id, [e.key for e in parsed.entries])
    new = [e for e in parsed.entries if e.key not in known]
    alert_after = _alert_after(config, ctx.polling, feed, now)

    may_alert = [_is_alerting(entry, alert_after) for entry in new]
    articles = await asyncio.gather(
        *(
            _article(ctx, config, entry, fetch_page=alerts)
            for entry, alerts in zip(new, may_alert, strict=True)
        )
    )
    matched = [
        (entry, article, ctx.matcher.match(article, feed_name=config.name, feed_tags=config.tags), alerts)
        for entry, article, alerts in zip(new, articles, may_alert, strict=True)
    ]

    stored_at = ctx.clock()  # parsing, pages and matching took time: this is when they are stored
    with ctx.db.atomic():
        for entry, article, hits, alerting in matched:
            entry_id = entry_store.insert_entry(
                ctx.db, feed.id, entry, article, alerting=alerting, now=stored_at
            )
            summary.new_entries += 1
            for hit in hits:
                hit_id = hit_store.insert_hit(ctx.db, entry_id, hit, alerted=alerting, now=stored_at)
                if hit_id is None:
                    continue
                summary.hits += 1
                if alerting:
                    summary.alerts_queued += _enqueue(
                        ctx, feed.config_url, entry, article, hit, hit_id, stored_at
                    )
        _update(ctx.db, feed.id, changes, after_success(now, schedule))
    if parsed.entries_dropped:
        log.warning("entries_capped feed=%s dropped=%d", config.name, parsed.entries_dropped)
    log.info(
        "feed_polled feed=%s new=%d hits=%d alerts=%d",
        config.name,
        summary.new_entries,
        summary.hits,
        summary.alerts_queued,
    )
    return summary


async def _article(ctx: PollContext, config: FeedConfig, entry: ParsedEntry, *, fetch_page: bool) -> Article:
    """The text to match: the article page's when it should and can be had, else the feed's.

    Pages are fetched only for entries that may alert: a first poll's backlog outside the
    backfill window is matched on the feed's own text, sparing publishers a burst.
    """
    mode = config.fetch_article or ctx.polling.fetch_article
    if mode == "never" or not entry.link or ctx.fetcher is None:
        return article_from_entry(entry, config.name)
    if mode == "auto" and carries_full_text(entry):
        return article_from_entry(entry, config.name)
    if not fetch_page:
        return article_from_entry(entry, config.name, "outside the backfill window: page not fetched")
    stored = entry_store.stored_page_text(ctx.db, entry.link)
    if stored is not None:  # the same story, already extracted for another feed
        return replace(
            stored, title=entry.title, url=entry.link, outlet=config.name, published=entry.published
        )
    return await fetch_article(ctx.fetcher, ctx.cpu, entry, config.name)


def _is_alerting(entry: ParsedEntry, alert_after: float | None) -> bool:
    if alert_after is None:
        return True
    return entry.published is not None and entry.published.timestamp() >= alert_after


def _alert_after(
    config: FeedConfig, polling: PollingConfig, feed: feed_store.FeedRow, now: float
) -> float | None:
    """Entries published before this instant are stored but not alerted.

    Only the first successful poll of a feed is limited, by its `backfill` window.
    None means alert everything new; +inf means alert nothing.
    """
    if feed.last_success_at is not None:
        return None
    backfill = config.backfill if config.backfill_set else polling.backfill
    if backfill is None:
        return None
    if backfill == 0:
        return float("inf")
    return now - backfill


def _enqueue(
    ctx: PollContext, feed_key: str, entry: ParsedEntry, article: Article, hit: Hit, hit_id: int, now: float
) -> int:
    watchlist = ctx.watchlists.get(hit.watchlist)
    if watchlist is None:
        return 0
    story = story_key(entry.link, feed_key, entry.key)
    return queue_alerts(ctx.db, watchlist, story, article, hit, hit_id, now, ctx.tz)


def story_key(link: str | None, feed_key: str, entry_key: str) -> str:
    """A story's identity across feeds: its canonical URL, else the feed's own entry key."""
    return canonical_url(link) if link else f"{feed_key}#{entry_key}"


def queue_alerts(
    db: sqlite_utils.Database,
    watchlist: Watchlist,
    story: str,
    article: Article,
    hit: Hit,
    hit_id: int,
    now: float,
    tz: ZoneInfo,
) -> int:
    """One outbox row per channel of the watchlist (a digest item when it has a digest);
    a story already queued for a watchlist and channel is not queued again."""
    alert = build_alert(article, hit, story_key=story)
    digest_at = digest_title = None
    if watchlist.delivery != "immediate":
        digest_at = digest.window_end(watchlist.delivery, now, tz)
        digest_title = digest.title(watchlist.delivery, digest_at, tz)
    queued = 0
    for channel in watchlist.notify:
        key = idempotency_key(story, hit.watchlist, channel)
        queued += outbox_store.enqueue(
            db, key, channel, alert, hit_id=hit_id, now=now, digest_at=digest_at, digest_title=digest_title
        )
    return queued


def build_alert(article: Article, hit: Hit, *, story_key: str) -> Alert:
    terms = tuple(dict.fromkeys(t.term for t in hit.terms))
    return Alert(
        watchlist=hit.watchlist,
        title=article.title,
        link=article.url,
        outlet=article.outlet,
        published=article.published,
        terms=terms,
        snippet=hit.snippet,
        snippet_marks=hit.snippet_marks,
        query=hit.query,
        story_key=story_key,
    )


def idempotency_key(story: str, watchlist: str, channel: str) -> str:
    """One alert per story, watchlist and channel: the same story URL reached through a
    second feed (a wire story, a cross-posted release) does not alert again."""
    raw = "\x00".join(("alert", story, watchlist, channel))
    return hashlib.sha256(raw.encode()).hexdigest()


def _failed(
    ctx: PollContext,
    feed: feed_store.FeedRow,
    config: FeedConfig,
    failure: FetchFailed,
    changes: dict[str, Any],
    schedule: Schedule,
    summary: PollSummary,
) -> PollSummary:
    now = ctx.clock()
    health = after_failure(failure, feed.consecutive_errors, now, schedule, ctx.random)
    if failure.status is not None or "last_http_status" not in changes:
        changes["last_http_status"] = failure.status
    if failure.kind is FailureKind.MALFORMED:
        changes["malformed"] = failure.message
    _save(ctx.db, feed.id, changes, health)
    summary.failed = 1
    summary.errors.append(f"{config.name}: {health.last_error}")
    next_at = (
        datetime.fromtimestamp(health.next_check_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if health.next_check_at
        else "never (gone)"
    )
    log.error(
        "feed_failed feed=%s feed_url=%s kind=%s errors=%d next_check=%s error=%s",
        config.name,
        feed.url,
        failure.kind.value,
        health.consecutive_errors,
        next_at,
        health.last_error,
    )
    return summary


def _save(db: sqlite_utils.Database, feed_id: int, changes: dict[str, Any], health: Health) -> None:
    """Commit a feed-state-only change (no entries, no alerts)."""
    with without_fsync(db):
        _update(db, feed_id, changes, health)


def _update(db: sqlite_utils.Database, feed_id: int, changes: dict[str, Any], health: Health) -> None:
    if health.status is FeedStatus.OK:
        changes["last_success_at"] = changes["last_polled_at"]
    feed_store.update_feed(
        db,
        feed_id,
        {
            **changes,
            "status": health.status.value,
            "consecutive_errors": health.consecutive_errors,
            "last_error": health.last_error,
            "next_check_at": health.next_check_at,
        },
    )
