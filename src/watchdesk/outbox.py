"""The outbox: what goes in (an alert per story, watchlist and channel; health alerts)
and drain(): claim due outbox rows -> channel.send -> sent | retry later | dead.

Also what health alerts are (a feed failing, stale, gone or recovered; a delivery gone
dead): ordinary outbox rows for the `[health] notify` channels, so they survive crashes
and retries like any alert.

At least once: a row is marked sent only after its channel accepted it, so the only
duplicate possible is a crash between the two. Digest items due together go out as one
message per channel. A channel over its `max_per_hour` folds further single alerts into
the next hourly digest instead of dropping them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

import sqlite_utils

from . import digest
from .models import Alert, Article, DeliveryResult, Digest, Hit, Watchlist
from .notify import Channel
from .schedule import ago
from .store import feeds as feed_store
from .store import outbox as outbox_store
from .store import stories as story_store
from .store.engine import Store
from .web import canonical_url

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
RETRY_BASE = 30.0
RETRY_CAP = 3600.0


@dataclass
class DrainSummary:
    sent: int = 0  # alerts delivered (each item of a digest counts)
    retrying: int = 0
    dead: int = 0
    capped: int = 0  # alerts folded into a digest by a channel's max_per_hour
    more: bool = False  # the round took its limit of rows and no channel failed: more may be due


def retry_delay(attempts: int, random: Callable[[], float], retry_after: float | None = None) -> float:
    """Exponential backoff with up to 20% jitter; a server's Retry-After wins if longer."""
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** min(attempts - 1, 20)) * (1 - 0.2 * random())
    return max(delay, retry_after or 0.0)


def digest_key(channel: str, digest_at: float) -> str:
    """Idempotency key of one digest message (stable across retries: Message-ID etc.)."""
    return f"digest:{channel}:{digest_at:.0f}"


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


def health_alert(subject: str, detail: str, *, about: str, link: str | None, now: float) -> Alert:
    """`subject` e.g. "feed failing: DOJ"; `about` what it concerns (a feed or channel
    name), which also threads a feed's health emails together."""
    return Alert(
        watchlist="feed health",
        title=subject,
        link=link,
        outlet=about,
        published=datetime.fromtimestamp(now, UTC),
        terms=(),
        snippet=detail,
        story_key=f"health:{about}",
        kind="health",
    )


def queue_health(
    db: sqlite_utils.Database, channels: Sequence[str], alert: Alert, incident: str, now: float
) -> int:
    """One outbox row per health channel; `incident` makes the key unique per incident."""
    queued = 0
    for channel in channels:
        key = hashlib.sha256("\x00".join(("health", incident, channel)).encode()).hexdigest()
        queued += outbox_store.enqueue(db, key, channel, alert, hit_id=None, now=now)
    return queued


def incident_subject(incident: str, name: str) -> str:
    """The subject of a feed's health alert, e.g. `feed failing: DOJ`."""
    return f"feed {incident}: {name}"


def incident_detail(
    incident: str,
    feed: feed_store.FeedRow,
    errors: int,
    last_error: str | None,
    failing_since: float | None,
    now: float,
) -> str:
    """What the health alert says, in words an operator acts on."""
    if incident == "failing":
        since = failing_since or now
        return (
            f"{feed.name} has been failing for {ago(now - since)} ({errors} errors in a row): "
            f"{last_error}. It is retried with backoff and never dropped; `watchdesk feeds` shows it."
        )
    if incident == "stale":
        last = feed.last_entry_at
        when = f"since {_utc(last)}" if last else "since it was added"
        return (
            f"{feed.name} answers, but has published no new entry {when}. The site may have moved "
            f"its feed; check {feed.url}."
        )
    if incident == "gone":
        return (
            f"{feed.url} answered 410 Gone: it is no longer polled. Remove it from the config or fix its URL."
        )
    return f"{feed.name} is ok again."


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Drainer:
    """Delivers due outbox rows through their channels, every store call off the loop.

    A send whose outcome the store cannot record (a full disk, a database locked past
    busy_timeout) is kept here and written again before anything else; until it is, its
    channel sends nothing more, so a refusing store costs at most one unrecorded send per
    channel, never the same alert again and again.
    """

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        clock: Callable[[], float],
        random: Callable[[], float],
        unavailable: Mapping[str, str] | None = None,
        *,
        max_per_hour: Mapping[str, int] | None = None,
        tz: ZoneInfo | None = None,
        health_notify: Sequence[str] = (),
    ):
        self.store = store
        self.channels = channels
        self.clock = clock
        self.random = random
        # Configured channels that cannot deliver now (e.g. a secret is missing): their
        # rows stay pending, untouched, until the daemon is restarted with them fixed.
        self.unavailable = dict(unavailable or {})
        self.max_per_hour = dict(max_per_hour or {})
        self.tz = tz or ZoneInfo("UTC")
        self.health_notify = tuple(health_notify)
        self.dead_alerted: set[str] = set()  # channels whose dead delivery was alerted (until one goes out)
        self.failing: set[str] = set()  # channels whose last attempt failed (reported once)
        self.unrecorded: dict[str, list[Outcome]] = {}  # per channel, outcomes not yet written
        self.stop_requested = False  # a clean stop: finish the send in flight, start no other
        self._claimed: set[str] = set()  # channels this daemon holds the lease of (PostgreSQL)
        # Told (channel name, sent | retrying | dead, alerts) of every delivery: the
        # daemon's metrics (ops/metrics.py observe_delivery, by the channel's type).
        self.observe: Callable[[str, str, int], None] = lambda channel, outcome, alerts: None

    async def drain(self, limit: int = 200) -> DrainSummary:
        summary = DrainSummary()
        failed_now: set[str] = set()  # one failure per channel per round; the rest wait
        held = await self.record_outcomes()
        skip = {**self.unavailable, **dict.fromkeys(held, "outcome not recorded")}
        # Several daemons on one database: each channel is delivered by one at a time.
        wanted = [name for name in self.channels if name not in skip]
        mine = await self.store.claim_channels(wanted, self.clock())
        self._claimed = set(mine)
        skip.update({name: "delivered by another daemon" for name in wanted if name not in mine})
        renewer = (
            asyncio.create_task(self._renew_channels(), name="renew-channels") if self.store.shared else None
        )
        try:
            return await self._drain_round(summary, failed_now, skip, limit)
        finally:
            if renewer is not None:
                renewer.cancel()

    async def _drain_round(
        self, summary: DrainSummary, failed_now: set[str], skip: dict[str, str], limit: int
    ) -> DrainSummary:
        for rows in await self.store.read(outbox_store.due_digests, self.clock(), skip_channels=skip):
            channel_name = rows[0].channel
            if channel_name in failed_now or self.stop_requested or not await self._still_mine(channel_name):
                continue
            title = rows[0].digest_title or "Digest"
            assert rows[0].digest_at is not None
            alerts = await self._with_outlets([r.alert for r in rows])
            message = Digest(title, tuple(alerts), capped=sum(r.capped for r in rows))
            key = digest_key(channel_name, rows[0].digest_at)
            await self._deliver(channel_name, rows, summary, failed_now, digest=message, key=key)

        rows = await self.store.read(outbox_store.due, self.clock(), limit, skip_channels=skip)
        summary.more = len(rows) == limit
        by_channel: dict[str, list[outbox_store.OutboxRow]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        # Channels deliver side by side; within one channel, one alert at a time, so a
        # crash can leave at most one alert per channel sent but not marked sent.
        await asyncio.gather(
            *(self._deliver_in_turn(name, queue, summary, failed_now) for name, queue in by_channel.items())
        )
        summary.more = summary.more and not failed_now and not self.stop_requested
        return summary

    async def record_outcomes(self) -> set[str]:
        """Write the outcomes the store refused before, oldest first; the channels that
        still have one unwritten (they send nothing until it is)."""
        held: set[str] = set()
        for channel, outcomes in list(self.unrecorded.items()):
            while outcomes:
                try:
                    await self.store.write(outcomes[0].write)
                except Exception as e:
                    log.error(
                        "delivery_not_recorded channel=%s outbox_id=%d error=%s (still held: nothing more "
                        "is sent on this channel until the store takes the write)",
                        channel,
                        outcomes[0].ids[0],
                        _store_error(e),
                    )
                    held.add(channel)
                    break
                outcomes.pop(0)
            if not outcomes:
                del self.unrecorded[channel]
                log.warning(
                    "delivery_recorded channel=%s (the store takes writes again; sending resumes)", channel
                )
        return held

    async def _record(
        self, channel: str, ids: Sequence[int], write: Callable[[sqlite_utils.Database], None]
    ) -> bool:
        """Write one delivery's outcome; if the store refuses, keep it to write later and
        hold the channel. True when written."""
        if channel not in self.unrecorded:
            try:
                await self.store.write(write)
                return True
            except Exception as e:
                log.error(
                    "delivery_not_recorded channel=%s outbox_id=%d error=%s (kept in memory and written "
                    "once the store takes writes; this channel sends nothing more until then)",
                    channel,
                    ids[0],
                    _store_error(e),
                )
        self.unrecorded.setdefault(channel, []).append(Outcome(tuple(ids), write))
        return False

    async def _deliver_in_turn(
        self, channel: str, rows: list[outbox_store.OutboxRow], summary: DrainSummary, failed_now: set[str]
    ) -> None:
        for row in rows:
            if channel in failed_now or channel in self.unrecorded or self.stop_requested:
                return
            if not await self._still_mine(channel):
                return
            if await self._over_cap(channel):
                end = digest.next_hour(self.clock(), self.tz)
                await self.store.write(
                    outbox_store.fold_into_digest, row.id, end, digest.title("capped", end, self.tz)
                )
                summary.capped += 1
                continue
            await self._deliver(channel, [row], summary, failed_now, key=row.idempotency_key)

    async def _still_mine(self, channel: str) -> bool:
        """Whether this daemon still holds the channel's lease (always, with SQLite): one
        whose lease went to another daemon sends nothing more here."""
        return not self.store.shared or channel in self._claimed

    async def _renew_channels(self) -> None:
        """While a round runs (a send may take the channel's whole timeout), the leases of
        its channels are renewed every quarter lease, so no other daemon takes one over
        mid-send and sends the same delivery again."""
        while True:
            await asyncio.sleep(self.store.lease / 4)
            held = sorted(self._claimed)
            if not held:
                continue
            try:
                kept = await self.store.claim_channels(held, self.clock())
            except Exception as e:
                log.warning(
                    "channel_leases_not_renewed error=%s (retried in a quarter lease)", _store_error(e)
                )
                continue
            for channel in held:
                if channel not in kept:
                    self._claimed.discard(channel)
                    log.warning("channel_lease_lost channel=%s (another daemon delivers it now)", channel)

    async def _with_outlets(self, alerts: list[Alert]) -> list[Alert]:
        """Each alert with the other outlets that carried its story by now ("also in")."""
        keyed = [a.story_key for a in alerts if a.kind == "hit" and a.story_key]
        if not keyed:
            return alerts
        outlets = await self.store.read(story_store.outlets, keyed)
        return [
            replace(a, also_in=tuple(o for o in outlets.get(a.story_key, ()) if o != a.outlet))
            if a.kind == "hit"
            else a
            for a in alerts
        ]

    async def _over_cap(self, channel: str) -> bool:
        cap = self.max_per_hour.get(channel)
        if cap is None:
            return False
        return await self.store.read(outbox_store.messages_sent_since, channel, self.clock() - 3600) >= cap

    async def _deliver(
        self,
        channel_name: str,
        rows: Sequence[outbox_store.OutboxRow],
        summary: DrainSummary,
        failed_now: set[str],
        *,
        key: str,
        digest: Digest | None = None,
    ) -> None:
        ids = [r.id for r in rows]
        channel = self.channels.get(channel_name)
        if channel is None:
            await self._dead(rows, channel_name, f"channel {channel_name!r} is not configured", summary, 0.0)
            return
        started = time.perf_counter()
        if digest is not None:
            result: DeliveryResult = await channel.send_digest(digest, key=key)
        else:
            alert = (await self._with_outlets([rows[0].alert]))[0]
            result = await channel.send(alert, key=key)
        ms = (time.perf_counter() - started) * 1000
        now = self.clock()
        if result.ok:
            summary.sent += len(ids)
            self.observe(channel_name, "sent", len(ids))
            await self._record(
                channel_name,
                ids,
                partial(outbox_store.mark_sent, row_ids=ids, now=now, message=result.message, duration_ms=ms),
            )
            self.dead_alerted.discard(channel_name)
            if channel_name in self.failing:
                self.failing.discard(channel_name)
                log.warning("channel_recovered channel=%s", channel_name)
            return
        attempts = max(r.attempts for r in rows) + 1
        if result.permanent or attempts >= MAX_ATTEMPTS:
            why = (
                result.message if result.permanent else f"{attempts} attempts failed; last: {result.message}"
            )
            await self._dead(rows, channel_name, why, summary, ms)
            return
        failed_now.add(channel_name)
        retry_at = now + retry_delay(attempts, self.random, result.retry_after)
        await self._record(
            channel_name,
            ids,
            partial(
                outbox_store.mark_failed,
                row_ids=ids,
                error=result.message,
                retry_at=retry_at,
                now=now,
                duration_ms=ms,
            ),
        )
        summary.retrying += len(ids)
        self.observe(channel_name, "retrying", len(ids))
        if channel_name not in self.failing:
            self.failing.add(channel_name)
            log.error(
                "channel_failing channel=%s outbox_id=%d attempt=%d error=%s",
                channel_name,
                ids[0],
                attempts,
                result.message,
            )

    async def _dead(
        self, rows: Sequence[outbox_store.OutboxRow], channel: str, why: str, summary: DrainSummary, ms: float
    ) -> None:
        ids = [r.id for r in rows]
        now = self.clock()
        alerts = [r for r in rows if r.alert.kind != "health"]  # a dead health alert alerts nobody
        others = [c for c in self.health_notify if c != channel]
        health = None
        if alerts and others and channel not in self.dead_alerted:
            self.dead_alerted.add(channel)  # one alert per channel until it delivers again
            lead = alerts[0].alert
            more = f" and {len(alerts) - 1} more" if len(alerts) > 1 else ""
            detail = (
                f"The alert {lead.title!r} (watchlist {lead.watchlist}){more} could not be delivered "
                f"through channel {channel!r} and will not be retried: {why}. "
                f"`watchdesk outbox --status dead` lists it; `watchdesk outbox retry {ids[0]}` sends it again. "
                "Further deliveries that go dead on this channel are not alerted until one goes out."
            )
            health = health_alert(f"delivery dead: {channel}", detail, about=channel, link=None, now=now)
        await self._record(
            channel, ids, partial(_mark_dead, ids=ids, why=why, now=now, ms=ms, health=health, others=others)
        )
        summary.dead += len(ids)
        self.observe(channel, "dead", len(ids))
        log.error("delivery_dead channel=%s outbox_id=%d count=%d error=%s", channel, ids[0], len(ids), why)


@dataclass(frozen=True)
class Outcome:
    """A delivery's outcome waiting to be written: the rows, and the write itself."""

    ids: tuple[int, ...]
    write: Callable[[sqlite_utils.Database], None]


def _mark_dead(
    db: sqlite_utils.Database,
    *,
    ids: list[int],
    why: str,
    now: float,
    ms: float,
    health: Alert | None,
    others: list[str],
) -> None:
    """The dead mark and its health alert: both or neither."""
    with db.atomic():
        outbox_store.mark_failed(db, ids, why, retry_at=None, now=now, duration_ms=ms)
        if health is not None:
            queue_health(db, others, health, f"dead:{ids[0]}", now)


def _store_error(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
