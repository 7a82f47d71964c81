"""refresh_feed(): one feed, top to bottom.

fetch (conditional GET) -> skip if unchanged -> parse -> new entries only (at most
max_entries, newest first; the rest wait for a poll within seconds) -> article text ->
match -> ONE transaction: entries + hits + outbox + feed state and health (+ its alert)

Nothing here blocks the event loop: parsing and extraction run in worker processes,
matching and tokenising in a thread, and every store call through the Store's threads
(store/engine.py), whose sync halves (`_commit`, `_update`) take the connection.
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

from .config import FeedConfig, HealthConfig, PollingConfig, StoriesConfig
from .ingest import (
    ArticleFetcher,
    CpuPool,
    HttpPool,
    Limits,
    article_from_entry,
    carries_full_text,
    fetch_article,
    fetch_feed,
    parse_feed,
)
from .language import fts_tokens
from .matching import Matcher
from .models import (
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
from .outbox import health_alert, incident_detail, incident_subject, queue_alerts, queue_health, story_key
from .schedule import (
    Health,
    Outcome,
    Schedule,
    after_failure,
    after_success,
    health_incident,
)
from .store import entries as entry_store
from .store import feeds as feed_store
from .store import hits as hit_store
from .store import stories as story_store
from .store.engine import Store
from .stories import DEFAULT_SIMILARITY, SIGNATURE_VERSION, similarity
from .stories.probe import TITLE_WINDOW, Probe, probe
from .web import canonical_url

log = logging.getLogger(__name__)

PARSE_DEADLINE = 30.0


ALL_ENTRIES = 1_000_000  # parse_feed keeps them all: new ones are told from known ones first


@dataclass
class PollContext:
    """What polling needs, built once from the config (see runtime.py)."""

    store: Store
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
    trust_feed_urls: bool = (
        False  # [network] trust_config_feeds: the written URL skips the guard (not its redirects)
    )
    health: HealthConfig = HealthConfig()
    stories: StoriesConfig = StoriesConfig()
    node: str = ""  # [watchdesk] node: recorded as the feed's last poller


def _schedule(ctx: PollContext, config: FeedConfig) -> Schedule:
    return Schedule(
        config.interval or ctx.polling.interval,
        ctx.polling.max_backoff,
        ctx.polling.min_interval,
        config.stale_after or ctx.health.stale_after,
    )


async def refresh_feed(ctx: PollContext, feed: feed_store.FeedRow) -> PollSummary:
    summary = PollSummary(feeds=1)
    config = ctx.feeds[feed.config_url]
    schedule = _schedule(ctx, config)
    # With entries waiting, ask for the body again unconditionally: they are in it.
    etag, modified = (None, None) if feed.entries_waiting else (feed.etag, feed.last_modified)
    # Trust is for the URL the operator wrote, not one a 301 moved the feed to.
    trusted = ctx.trust_feed_urls and feed.url == feed.config_url
    result: FetchResult = await fetch_feed(
        ctx.pool, feed.url, etag=etag, last_modified=modified, limits=ctx.limits, trusted=trusted
    )
    now = ctx.clock()
    changes: dict[str, Any] = {"last_polled_at": now}
    if not isinstance(result, FetchFailed) and result.permanent_url and result.permanent_url != feed.url:
        log.info("feed_moved feed=%s new_url=%s", config.name, result.permanent_url)
        changes["url"] = result.permanent_url

    if isinstance(result, NotModified):  # the body that last parsed (validators come only from one)
        summary.not_modified = 1
        changes.update(last_http_status=304)
        if not feed.entries_waiting:
            changes.update(etag=result.etag, last_modified=result.last_modified)
        await _save(ctx, feed, config, changes, _nothing_new(feed, now, schedule, changes))
        return summary
    if isinstance(result, FetchFailed):
        return await _failed(ctx, feed, config, result, changes, schedule, summary)

    body_hash = hashlib.sha256(result.body).hexdigest()
    if body_hash == feed.body_hash:
        summary.unchanged = 1
        changes.update(last_http_status=200, etag=result.etag, last_modified=result.last_modified)
        await _save(ctx, feed, config, changes, _nothing_new(feed, now, schedule, changes))
        return summary

    try:
        parsed: ParsedFeed = await ctx.cpu.run(
            parse_feed,
            result.body,
            url=result.url,
            content_type=result.content_type,
            max_entries=ALL_ENTRIES,  # the body is byte-capped; new entries are capped below
            timeout=PARSE_DEADLINE,
        )
    except Exception as e:  # WorkerFailed, or anything parse_feed raised: the feed's error, never a crash
        failure = FetchFailed(FailureKind.MALFORMED, f"parsing failed: {type(e).__name__}: {e}", 200)
        return await _failed(ctx, feed, config, failure, changes, schedule, summary)
    if not parsed.entries and not parsed.version:
        reason = parsed.malformed or "no entries"
        failure = FetchFailed(FailureKind.MALFORMED, f"not a feed: {reason}", 200)
        return await _failed(ctx, feed, config, failure, changes, schedule, summary)

    summary.fetched = 1
    changes.update(last_http_status=200, malformed=parsed.malformed, title=parsed.title)
    known = await ctx.store.read(entry_store.existing_keys, feed.id, [e.key for e in parsed.entries])
    unseen = [e for e in parsed.entries if e.key not in known]  # newest first (parse_feed's order)
    new, waiting = unseen[: ctx.polling.max_entries], len(unseen) - min(len(unseen), ctx.polling.max_entries)
    if waiting and feed.entries_waiting and waiting >= feed.entries_waiting:  # drained, yet no fewer wait
        log.warning(
            "unstable_entry_ids feed=%s waiting=%d (as many new entries as last poll: its entry ids "
            "change between requests; not draining, next poll at its interval)",
            config.name,
            waiting,
        )
        waiting = 0
    if not waiting:  # everything in this body is in: the next poll may skip it
        changes.update(etag=result.etag, last_modified=result.last_modified, body_hash=body_hash)
    overflow = await _overflowed(ctx, feed, parsed.entries, known)
    first_backlog = feed.last_success_at is None and feed.backfill_before is None
    alert_after = _alert_after(config, ctx.polling, feed, now) if first_backlog else feed.backfill_before
    changes["backfill_before"] = alert_after if waiting and alert_after is not None else None

    may_alert = [_is_alerting(entry, alert_after) for entry in new]
    articles = await asyncio.gather(
        *(
            _article(ctx, config, entry, fetch_page=alerts)
            for entry, alerts in zip(new, may_alert, strict=True)
        )
    )
    loop = asyncio.get_running_loop()
    matched, indexed, probes = await loop.run_in_executor(
        None, _analyse, ctx.matcher, config, new, list(articles), may_alert, ctx.stories.enabled
    )
    stored_at = ctx.clock()  # parsing, pages and matching took time: this is when they are stored
    last_entry_at = stored_at if new else feed.last_entry_at  # when we last saw something new
    changes.update(
        last_entry_at=last_entry_at,
        entries_waiting=waiting,
        overflows=feed.overflows + overflow,
    )
    outcome = Outcome(waiting, overflow, last_entry_at, feed.created_at)
    health = after_success(now, schedule, outcome, feed.effective_interval)
    changes["effective_interval"] = health.interval
    await ctx.store.write(
        _commit, ctx, feed, config, matched, indexed, probes, stored_at, changes, health, summary
    )
    summary.entries_waiting = waiting
    if waiting:
        log.warning(
            "entries_waiting feed=%s new=%d waiting=%d next_check=soon", config.name, len(new), waiting
        )
    if overflow:
        log.warning(
            "feed_overflow feed=%s entries=%d interval=%.0fs (every entry new, the oldest newer than "
            "the newest stored: entries may have scrolled past between polls)",
            config.name,
            len(parsed.entries),
            changes["effective_interval"] or schedule.interval,
        )
    log.info(
        "feed_polled feed=%s new=%d hits=%d alerts=%d",
        config.name,
        summary.new_entries,
        summary.hits,
        summary.alerts_queued,
    )
    return summary


def _nothing_new(feed: feed_store.FeedRow, now: float, schedule: Schedule, changes: dict[str, Any]) -> Health:
    """After an unchanged answer (304, or the same bytes): ok or stale, at its interval
    (a shortened one relaxing back)."""
    outcome = Outcome(0, False, feed.last_entry_at, feed.created_at)
    health = after_success(now, schedule, outcome, feed.effective_interval)
    changes["effective_interval"] = health.interval
    return health


Matched = list[tuple[ParsedEntry, Article, list[Hit], bool]]


def _analyse(
    matcher: Matcher,
    config: FeedConfig,
    new: list[ParsedEntry],
    articles: list[Article],
    may_alert: list[bool],
    stories: bool,
) -> tuple[Matched, list[str], list[Probe | None]]:
    """Match, tokenise for the search index, and sign for stories: CPU work, run in a
    thread (a slow watchlist never stalls the loop). Tokens are computed once per entry."""
    matched: Matched = [
        (entry, article, matcher.match(article, feed_name=config.name, feed_tags=config.tags), alerts)
        for entry, article, alerts in zip(new, articles, may_alert, strict=True)
    ]
    indexed = [fts_tokens(article.title, article.text) for article in articles]
    probes = [
        probe(article.title, tokens.split()) if stories else None
        for article, tokens in zip(articles, indexed, strict=True)
    ]
    return matched, indexed, probes


def _commit(
    db: sqlite_utils.Database,
    ctx: PollContext,
    feed: feed_store.FeedRow,
    config: FeedConfig,
    matched: Matched,
    indexed: list[str],
    probes: list[Probe | None],
    stored_at: float,
    changes: dict[str, Any],
    health: Health,
    summary: PollSummary,
) -> None:
    """The poll's one transaction (on the store's writer thread): entries, their stories,
    hits, alerts, and the feed's state and health."""
    counted = PollSummary()
    with db.atomic():
        if matched:
            story_store.serialise(db)
        for (entry, article, hits, alerting), tokens, found in zip(matched, indexed, probes, strict=True):
            entry_id = entry_store.insert_entry(
                db, feed.id, entry, article, alerting=alerting, now=stored_at, index_tokens=tokens
            )
            story = _story(db, ctx, entry_id, entry, feed, found, stored_at)
            counted.new_entries += 1
            for hit in hits:
                _store_hit(db, ctx, story.key, entry_id, article, hit, alerting, stored_at, counted)
        if matched and ctx.stories.enabled:
            story_store.prune(db, stored_at - ctx.stories.window, stored_at - TITLE_WINDOW)
        _update(db, ctx, feed, config, changes, health)
    # Counted only once committed: a transaction that failed stored nothing.
    summary.new_entries += counted.new_entries
    summary.hits += counted.hits
    summary.alerts_queued += counted.alerts_queued


async def record_crash(ctx: PollContext, feed: feed_store.FeedRow, error: BaseException) -> PollSummary:
    """A bug of ours while polling this feed: recorded as its error, retried with backoff
    (not every tick), so `watchdesk feeds` and the health alerts see it."""
    config = ctx.feeds[feed.config_url]
    failure = FetchFailed(FailureKind.INTERNAL, f"internal error: {type(error).__name__}: {error}")
    return await _failed(
        ctx,
        feed,
        config,
        failure,
        {"last_polled_at": ctx.clock()},
        _schedule(ctx, config),
        PollSummary(feeds=1),
    )


async def _overflowed(
    ctx: PollContext, feed: feed_store.FeedRow, entries: tuple[ParsedEntry, ...], known: set[str]
) -> bool:
    """Every entry new although the feed had entries before, and the oldest dated entry
    newer than the newest stored one: it scrolled past us between two polls. Undated
    entries cannot tell, so they never count as an overflow."""
    if known or not entries or feed.last_success_at is None or feed.last_entry_at is None:
        return False
    if any(e.published is None for e in entries):
        return False
    newest_stored = await ctx.store.read(feed_store.newest_published, feed.id)
    if newest_stored is None:
        return False
    return min(e.published.timestamp() for e in entries if e.published) > newest_stored


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
    stored = await ctx.store.read(entry_store.stored_page_text, entry.link)
    if stored is not None:  # the same story, already extracted for another feed
        return replace(
            stored, title=entry.title, url=entry.link, outlet=config.name, published=entry.published
        )
    try:
        return await fetch_article(ctx.fetcher, ctx.cpu, entry, config.name)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the poll itself is being cancelled
        # A worker pool torn down under this page (its deadline, or a crash): this
        # entry's failure, never the poll's.
        return article_from_entry(
            entry, config.name, "page extraction was cancelled: the feed's text is used"
        )
    except Exception as e:  # a bug or an odd failure in one page: that entry keeps the feed's text
        log.warning(
            "article_failed feed=%s link=%s error=%s: %s", config.name, entry.link, type(e).__name__, e
        )
        return article_from_entry(
            entry, config.name, f"page failed ({type(e).__name__}): the feed's text is used"
        )


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


def _story(
    db: sqlite_utils.Database,
    ctx: PollContext,
    entry_id: int,
    entry: ParsedEntry,
    feed: feed_store.FeedRow,
    found: Probe | None,
    now: float,
) -> story_store.Story:
    """The story this entry belongs to: an earlier entry's with the same canonical URL, else
    (stories enabled) one whose text is nearly the same within the window, or for a teaser
    one with the same title within 48 h; else a new story keyed as alerts always were."""
    story = story_store.by_url(db, canonical_url(entry.link), entry_id) if entry.link else None
    if story is None and found is not None:
        story = _similar(db, ctx, found, feed.id, now)
    if story is None:
        key = story_key(entry.link, feed.config_url, entry.key)
        story = story_store.new_story(db, key, entry.title, now)
    signature = (SIGNATURE_VERSION, found.signature, found.band_keys) if found and found.signature else None
    title = found.title if found else None
    story_store.join(db, entry_id, feed.id, story, now, signature=signature, title=title)
    return story


def _similar(
    db: sqlite_utils.Database, ctx: PollContext, found: Probe, feed_id: int, now: float
) -> story_store.Story | None:
    """Precision first: only another feed's entry whose stored signature confirms it."""
    if found.signature is None:
        return story_store.by_title(db, found.title, now - TITLE_WINDOW, feed_id) if found.title else None
    threshold = ctx.stories.similarity or DEFAULT_SIMILARITY
    best: tuple[float, story_store.Story] | None = None
    for candidate in story_store.candidates(
        db, found.band_keys, SIGNATURE_VERSION, now - ctx.stories.window, feed_id
    ):
        score = similarity(found.signature, candidate.signature)
        if score >= threshold and (best is None or score > best[0]):
            best = (score, candidate.story)
    return best[1] if best else None


def _store_hit(
    db: sqlite_utils.Database,
    ctx: PollContext,
    story: str,
    entry_id: int,
    article: Article,
    hit: Hit,
    alerting: bool,
    now: float,
    summary: PollSummary,
) -> None:
    """Store a hit and, for an alerting entry, queue its alerts; `alerted` is set only when
    something was queued (a second feed's copy of a story already alerted queues nothing)."""
    hit_id = hit_store.insert_hit(db, entry_id, hit, alerted=False, now=now)
    if hit_id is None:
        return
    summary.hits += 1
    watchlist = ctx.watchlists.get(hit.watchlist)
    if not alerting or watchlist is None:
        return
    queued = queue_alerts(db, watchlist, story, article, hit, hit_id, now, ctx.tz)
    if queued:
        hit_store.mark_alerted(db, hit_id)
        summary.alerts_queued += queued


async def _failed(
    ctx: PollContext,
    feed: feed_store.FeedRow,
    config: FeedConfig,
    failure: FetchFailed,
    changes: dict[str, Any],
    schedule: Schedule,
    summary: PollSummary,
) -> PollSummary:
    now = ctx.clock()
    health = after_failure(failure, feed.consecutive_errors, now, schedule, ctx.random, feed.failing_since)
    changes["last_http_status"] = failure.status
    if failure.kind is FailureKind.MALFORMED:
        changes["malformed"] = failure.message
    await _save(ctx, feed, config, changes, health)
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


async def _save(
    ctx: PollContext, feed: feed_store.FeedRow, config: FeedConfig, changes: dict[str, Any], health: Health
) -> None:
    """Commit a poll that stored no entries: feed state, and any health alert it raised.
    Forgetting it (a power cut) costs a repeated poll, so it may share its transaction
    with other polls' (the store's group commit) and commits without fsync."""
    await ctx.store.write_grouped(_update, ctx, feed, config, changes, health)


def _update(
    db: sqlite_utils.Database,
    ctx: PollContext,
    feed: feed_store.FeedRow,
    config: FeedConfig,
    changes: dict[str, Any],
    health: Health,
) -> None:
    """The feed's state after this poll, and its health alert (once per incident), in the
    caller's transaction."""
    if health.status in (FeedStatus.OK, FeedStatus.STALE):
        changes["last_success_at"] = changes["last_polled_at"]
    now = changes["last_polled_at"]
    incident, alerted = health_incident(health, feed.health_alerted, now, ctx.health.failing_after)
    if ctx.health.notify:
        if incident is not None:
            alert = health_alert(
                incident_subject(incident, config.name),
                incident_detail(
                    incident, feed, health.consecutive_errors, health.last_error, health.failing_since, now
                ),
                about=config.name,
                link=feed.url,
                now=now,
            )
            queue_health(db, ctx.health.notify, alert, f"feed:{feed.config_url}:{incident}:{now}", now)
            log.warning("feed_health feed=%s incident=%s", config.name, incident)
        changes["health_alerted"] = alerted
    feed_store.update_feed(
        db,
        feed.id,
        holder=ctx.node or None,
        changes={
            **changes,
            "status": health.status.value,
            "consecutive_errors": health.consecutive_errors,
            "last_error": health.last_error,
            "next_check_at": health.next_check_at,
            "failing_since": health.failing_since,
            # The poll's own transaction gives the feed's lease back (PostgreSQL, engine.py).
            "polled_by": ctx.node or None,
            "leased_by": None,
            "lease_until": None,
        },
    )
