"""Build what polling and delivery need from a Config; poll feeds; drain the outbox.

Used by `watchdesk run` (daemon.py) and `watchdesk poll --once`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo

from .config import Config, config_files_signature, load_config, load_watchlists, secrets
from .config.changes import ConfigChanges, diff
from .errors import ConfigError, StoreError
from .ingest import ArticleFetcher, CpuPool, HttpPool, Limits, RobotsCache
from .matching import Matcher, compile_matcher
from .models import PollSummary, Watchlist
from .notify import Channel, ChannelNotAvailable, build_channel
from .ops.metrics import Metrics
from .outbox import Drainer, DrainSummary
from .pipeline import PollContext, record_crash, refresh_feed
from .store import feeds as feed_store
from .store import outbox as outbox_store
from .store import retention
from .store.db import human_size
from .store.engine import Store

WORKER_MEMORY_LIMIT = 1536 * 2**20  # address space of one parse/extract worker

log = logging.getLogger(__name__)


@dataclass
class WatchlistState:
    """The watchlists in force, and what the folder looked like when they were loaded."""

    signature: tuple[tuple[str, float, int], ...] = ()
    broken: bool = False
    problems: list[str] = field(default_factory=list)


def folder_signature(folder: Path) -> tuple[tuple[str, float, int], ...]:
    try:
        files = sorted(folder.glob("*.toml"))
        return tuple((f.name, f.stat().st_mtime, f.stat().st_size) for f in files)
    except OSError:
        return ()


RETIRED_POOL_GRACE = 900.0  # seconds after a reload before the old HTTP pool is closed


def _database_password(config: Config) -> str | None:
    """[watchdesk] password, resolved (PostgreSQL); None: libpq's own (PGPASSWORD, ~/.pgpass)."""
    if not config.database_password:
        return None
    try:
        return secrets.resolve(config.database_password)
    except secrets.SecretError as e:
        raise StoreError(f"[watchdesk] password {config.database_password}: {e}") from e


def _feed_limits(config: Config) -> Limits:
    net = config.network
    return Limits(timeout=net.timeout, max_bytes=net.max_feed_bytes, max_redirects=net.max_redirects)


def _caps(config: Config) -> dict[str, int]:
    return {name: c.max_per_hour for name, c in config.channels.items() if c.max_per_hour}


def _sooner(old: Config, new: Config) -> list[tuple[str, float]]:
    """Feeds whose interval got shorter with the new config: (url, new interval)."""
    before = {f.url: f.interval or old.polling.interval for f in old.feeds}
    return [
        (f.url, interval)
        for f in new.feeds
        if f.enabled and f.url in before and (interval := f.interval or new.polling.interval) < before[f.url]
    ]


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        channels: dict[str, Channel] | None = None,
        lock: str | None = None,
    ):
        """`lock`: hold the database's lock (store/lock.py) for this Runtime's life, as
        `lock` ("watchdesk run", "watchdesk poll --once"), so no two poll one database.
        It is taken once the database opened (a damaged or read-only one is said as such,
        and gets no lock file) and before anything is written to it."""
        self.config = config
        self.clock = clock
        self.store = Store.open(
            config.database,
            lock=lock,
            password=_database_password(config),
            node=config.node,
            lease=config.lease,
        )
        self.db = self.store.db  # for tools and tests, on their own thread while nothing else runs
        feed_store.sync_feeds(self.db, [(f.url, f.name) for f in config.feeds if f.enabled], clock())
        self.cpu = CpuPool(memory_limit=WORKER_MEMORY_LIMIT)
        # [metrics] listen: what polls, extractions and deliveries count (daemon.py serves it)
        self.metrics = (
            Metrics(
                channel_types=sorted({c.type for c in config.channels.values()}),
                node=config.node,
                store=self.store.kind,
            )
            if config.metrics.listen
            else None
        )
        self.pool, fetcher = self._networking(config)
        # Replaced by a reload: closed once the polls that started with them are surely
        # over (their sockets would otherwise stay open until exit, reload after reload).
        self._retired_pools: list[HttpPool] = []
        self.retired_pool_grace = RETIRED_POOL_GRACE
        self._closing: set[asyncio.Task[None]] = set()
        self.ctx = PollContext(
            store=self.store,
            pool=self.pool,
            cpu=self.cpu,
            matcher=compile_matcher(config.watchlists),
            watchlists={w.name: w for w in config.watchlists},
            feeds={f.url: f for f in config.feeds},
            polling=config.polling,
            limits=_feed_limits(config),
            clock=clock,
            random=rand,
            fetcher=fetcher,
            tz=ZoneInfo(config.timezone),
            health=config.health,
            stories=config.stories,
            trust_feed_urls=config.network.trust_config_feeds,
            node=config.node,
        )
        self.unavailable: dict[str, str] = {}
        self.channels = channels if channels is not None else self._build_channels()
        self.drainer = Drainer(
            self.store,
            self.channels,
            clock,
            rand,
            self.unavailable,
            max_per_hour=_caps(config),
            tz=self.ctx.tz,
            health_notify=config.health.notify,
        )
        if self.metrics is not None:
            self.drainer.observe = self._observe_delivery
        self.unconfigured: set[int] = set()  # feed rows with no config here, logged once each
        # Feeds whose poll could not be recorded (the store refused the write): not
        # dispatched again before this time, so a stuck store is not met with a re-fetch
        # of every such feed on every tick.
        self.held: dict[int, tuple[float, float]] = {}  # feed id -> (until, the wait that was set)
        self.watchlist_state = WatchlistState(signature=folder_signature(config.watchlists_dir))
        # The main file and its feeds files, as last loaded (or tried): an edit, a feeds
        # file added or removed, makes the daemon reload.
        self.config_signature = config_files_signature(config)

    def _networking(self, config: Config) -> tuple[HttpPool, ArticleFetcher]:
        """The HTTP pool and article fetcher [network] and [polling] ask for. Everything
        goes through the guard; with trust_config_feeds only the feed URLs the operator
        wrote skip it (their redirects do not: fetch_feed trusted=)."""
        net = config.network
        pool = HttpPool(
            concurrency=net.concurrency,
            per_host=net.per_host,
            user_agent=net.user_agent,
            allow=net.allow,
            connect_timeout=net.connect_timeout,
        )
        page_limits = Limits(
            timeout=net.timeout, max_bytes=net.max_page_bytes, max_redirects=net.max_redirects
        )
        robots = RobotsCache(pool, page_limits, self.clock) if net.robots else None
        fetcher = ArticleFetcher(
            pool,
            page_limits,
            robots=robots,
            per_host_delay=net.per_host_delay,
            extract_timeout=config.polling.extract_timeout,
        )
        if self.metrics is not None:
            fetcher.observe = self.metrics.observe_extract
        return pool, fetcher

    def _observe_delivery(self, channel: str, outcome: str, alerts: int) -> None:
        assert self.metrics is not None
        config = self.config.channels.get(channel)
        self.metrics.observe_delivery(config.type if config else "unconfigured", outcome, alerts)

    async def refresh_metrics(self) -> None:
        """What the store holds, for the gauges: aggregate queries off the loop."""
        if self.metrics is None:
            return
        statuses = await self.store.read(feed_store.status_counts)
        pending, oldest = await self.store.read(outbox_store.pending_age, self.clock())
        self.metrics.set_state(statuses, pending, oldest, await self.store.measure())

    def _build_channels(self, names: Collection[str] | None = None) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        for name, channel_config in self.config.channels.items():
            if names is not None and name not in names:
                continue
            try:
                channels[name] = build_channel(channel_config)
                self.unavailable.pop(name, None)
            except ChannelNotAvailable as e:
                self.unavailable[name] = str(e)
                log.error("channel_unavailable channel=%s error=%s (its alerts wait in the outbox)", name, e)
        return channels

    def load_new_config(self) -> tuple[Config, Matcher] | None:
        """The config file read again and its matcher compiled (run in a thread: the
        running config serves meanwhile); None, with every problem logged as file:line,
        when it does not load."""
        self.config_signature = config_files_signature(self.config)  # a broken edit is said once
        try:
            config = load_config(self.config.path, check_secrets=False)
            if config.feed_patterns != self.config.feed_patterns:  # its own files from now on
                self.config_signature = config_files_signature(config)
        except ConfigError as e:
            for problem in e.problems:
                log.error("config_invalid problem=%s (keeping the running config)", problem)
            return None
        except Exception as e:  # an unreadable file, or a bug: the running config stays
            log.error("config_invalid problem=%s: %s (keeping the running config)", type(e).__name__, e)
            return None
        emptied = [
            p
            for p in config.feed_patterns_unmatched
            if p in self.config.feed_patterns and p not in self.config.feed_patterns_unmatched
        ]
        if emptied:  # an unmounted or half-rewritten folder must not stop its feeds being polled
            for pattern in emptied:
                log.error(
                    "config_invalid problem=%s: [watchdesk] feeds pattern %r matched feeds files and now "
                    "matches none (keeping the running config; remove the pattern to drop its feeds)",
                    config.path,
                    pattern,
                )
            return None
        for warning in config.warnings:
            log.warning("config_warning problem=%s", warning)
        return config, compile_matcher(config.watchlists)

    def config_changed(self) -> bool:
        return config_files_signature(self.config) != self.config_signature

    async def reload_config(self) -> ConfigChanges | None:
        """Load the config file again off the loop and take it over; None when it did not
        load (the running config stays, its problems logged)."""
        prepared = await asyncio.to_thread(self.load_new_config)
        if prepared is None:
            return None
        try:
            changes = await self.reconfigure(*prepared)
        except Exception as e:
            # The running config stays, and so does its files' signature: said once, tried
            # again at the next edit (not every look, as a changed `feeds` pattern would).
            self.config_signature = config_files_signature(self.config)
            log.error("config_not_taken_over error=%s: %s (keeping the running config)", type(e).__name__, e)
            return None
        self.retry_unavailable_channels()
        return changes

    async def reconfigure(self, new: Config, matcher: Matcher) -> ConfigChanges:
        """Take over a reloaded config: feeds (added ones due now, removed ones kept with
        their history but not polled, moved ones keeping theirs), channels, [polling],
        [network], [health], [stories], timezone and watchlists. Polls in flight finish
        with what they started with."""
        old = self.config
        changes = diff(old, new)
        for setting in changes.needs_restart:
            log.warning(
                "config_restart_needed setting=%s (the running daemon keeps %s until it is restarted)",
                setting,
                getattr(old, setting),
            )
        new = replace(
            new,
            database=old.database,
            database_password=old.database_password,
            node=old.node,
            lease=old.lease,
        )
        feeds = [f for f in new.feeds if f.enabled]
        await self.store.write(
            feed_store.reconfigure_feeds,
            [(f.url, f.name) for f in feeds],
            self.clock(),
            moved=[(a.url, b.url) for a, b in changes.feeds_moved],
            sooner=_sooner(old, new),
        )
        self.config = new
        if (
            "network" in changes.sections_changed
            or old.polling.extract_timeout != new.polling.extract_timeout
        ):
            self._retired_pools.append(self.pool)
            self._closing.add(asyncio.create_task(self._close_retired(self.pool), name="close-retired-pool"))
            self.pool, self.ctx.fetcher = self._networking(new)
            self.ctx.pool = self.pool
        self.ctx.limits = _feed_limits(new)
        self.ctx.trust_feed_urls = new.network.trust_config_feeds
        self.ctx.polling, self.ctx.health, self.ctx.stories = new.polling, new.health, new.stories
        self.ctx.tz = self.drainer.tz = ZoneInfo(new.timezone)
        self.ctx.feeds = {f.url: f for f in new.feeds}
        self.ctx.matcher, self.ctx.watchlists = matcher, {w.name: w for w in new.watchlists}
        self.watchlist_state = WatchlistState(signature=folder_signature(new.watchlists_dir))
        self.unconfigured.clear()  # said again, once, for any row still not configured
        await self._swap_channels(changes)
        self.drainer.max_per_hour = _caps(new)
        self.drainer.health_notify = tuple(new.health.notify)
        log.info(
            "config_reloaded feeds_added=%d feeds_removed=%d feeds_moved=%d feeds_changed=%d "
            "channels_added=%d channels_removed=%d channels_changed=%d sections_changed=%s "
            "watchlists_dir_changed=%d",
            len(changes.feeds_added),
            len(changes.feeds_removed),
            len(changes.feeds_moved),
            len(changes.feeds_changed),
            len(changes.channels_added),
            len(changes.channels_removed),
            len(changes.channels_changed),
            ",".join(changes.sections_changed) or "-",
            changes.watchlists_dir_changed,
        )
        return changes

    async def _swap_channels(self, changes: ConfigChanges) -> None:
        for name in (*changes.channels_removed, *changes.channels_changed):
            channel = self.channels.pop(name, None)
            self.unavailable.pop(name, None)
            self.drainer.unavailable.pop(name, None)
            if channel is not None:
                await channel.aclose()
        built = self._build_channels({*changes.channels_added, *changes.channels_changed})
        self.channels.update(built)  # the drainer's own mapping: it sends through them at once
        self.drainer.unavailable.update({n: self.unavailable[n] for n in self.unavailable})

    def retry_unavailable_channels(self) -> None:
        """A channel that could not be built at start (a secret that did not resolve) is
        tried again on reload; its alerts waited in the outbox and now go out."""
        for name in list(self.unavailable):
            try:
                channel = build_channel(self.config.channels[name])
            except ChannelNotAvailable as e:
                self.unavailable[name] = str(e)
                log.error("channel_unavailable channel=%s error=%s (its alerts wait in the outbox)", name, e)
                continue
            self.channels[name] = channel
            del self.unavailable[name]
            self.drainer.unavailable.pop(name, None)
            log.warning("channel_available channel=%s (its waiting alerts go out now)", name)

    def set_watchlists(self, watchlists: list[Watchlist] | tuple[Watchlist, ...]) -> None:
        self.ctx.matcher = compile_matcher(watchlists)
        self.ctx.watchlists = {w.name: w for w in watchlists}

    def reload_watchlists(self, *, force: bool = False) -> bool:
        """Reload when the folder changed. A broken file keeps the last good watchlists."""
        folder = self.config.watchlists_dir
        signature = folder_signature(folder)
        if not force and signature == self.watchlist_state.signature:
            return False
        self.watchlist_state.signature = signature
        config = self.config  # its scopes were folded when it loaded (empty: a Config made in code)
        watchlists, problems = load_watchlists(
            folder, config.channels, config.feeds, scopes=config.scopes or None
        )
        if problems:
            self.watchlist_state.broken = True
            self.watchlist_state.problems = [str(p) for p in problems]
            for problem in problems:
                log.error("watchlist_invalid problem=%s (keeping the last good watchlists)", problem)
            return False
        self.set_watchlists(watchlists)
        self.watchlist_state.broken = False
        self.watchlist_state.problems = []
        log.info("watchlists_reloaded count=%d", len(watchlists))
        return True

    async def poll_feeds(self, rows: list[feed_store.FeedRow]) -> PollSummary:
        total = PollSummary()
        results = await asyncio.gather(*(self.poll_one(row) for row in rows))
        for summary in results:
            total.add(summary)
        return total

    async def poll_everything(self, max_rounds: int = 1000) -> PollSummary:
        """`poll --once`: every configured feed, then again those that left new entries
        waiting (over max_entries), until every new entry is in."""
        total = await self.poll_feeds(await self.feeds_to_poll())
        for _ in range(max_rounds):
            rows = [row for row in await self.feeds_to_poll() if row.entries_waiting]
            if not rows:
                break
            more = await self.poll_feeds(rows)
            total.add(more)
            total.feeds -= more.feeds  # the same feeds again: count each once
            total.entries_waiting = more.entries_waiting
        return total

    async def poll_one(self, row: feed_store.FeedRow) -> PollSummary:
        """refresh_feed, with nothing escaping: an unexpected error is logged and recorded.
        A row this config does not know (another config's feed, or one removed from
        this one) is never polled: said once, then skipped."""
        started = time.monotonic()
        summary = await self._poll_one(row)
        if self.metrics is not None:
            self.metrics.observe_poll(summary, time.monotonic() - started)
        return summary

    async def _poll_one(self, row: feed_store.FeedRow) -> PollSummary:
        if row.config_url not in self.ctx.feeds:
            if row.id not in self.unconfigured:
                self.unconfigured.add(row.id)
                log.warning("feed_not_configured feed=%s feed_url=%s (not polled)", row.name, row.config_url)
            return PollSummary()
        try:
            summary = await refresh_feed(self.ctx, row)
        except feed_store.LeaseLost:  # polled past its lease: another daemon has it now
            log.warning(
                "feed_lease_lost feed=%s (this poll outlived its lease; another daemon polls it, "
                "nothing of this poll is kept)",
                row.name,
            )
            return PollSummary(feeds=1)
        except Exception as e:  # a bug, or the store refusing the poll's write: never the other feeds'
            log.exception("feed_crashed feed=%s feed_url=%s", row.name, row.url)
            try:
                current = await self.store.read(feed_store.get_feed, row.id)
                summary = await record_crash(self.ctx, current, e)
            except Exception as store_error:  # the store refuses writes: hold the feed back here
                self._hold(row, store_error)
                summary = PollSummary(feeds=1, failed=1)
                summary.errors.append(f"{row.name}: internal error: {type(e).__name__}: {e}")
                return summary
        self.held.pop(row.id, None)
        return summary

    def _hold(self, row: feed_store.FeedRow, error: Exception) -> None:
        """A poll whose outcome could not be recorded still has a next check time: kept
        here (doubling, up to max_backoff) until the store takes writes again."""
        config = self.ctx.feeds[row.config_url]
        base = min(config.interval or self.config.polling.interval, 60.0)
        _until, last = self.held.get(row.id, (0.0, base / 2))
        wait = min(2 * last, max(base, self.config.polling.max_backoff))
        self.held[row.id] = (self.clock() + wait, wait)
        log.error(
            "feed_poll_not_recorded feed=%s error=%s: %s (the store refuses writes; next try in %.0fs)",
            row.name,
            type(error).__name__,
            error,
            wait,
        )

    async def due(self, limit: int = 1000, in_flight: Collection[int] = ()) -> list[feed_store.FeedRow]:
        """Up to `limit` due feeds, read off the loop: not those in flight, held back after
        an unrecorded poll, or not configured here."""
        now = self.clock()
        skip = {*in_flight, *self.unconfigured, *self._holding(now)}
        started = time.monotonic()
        rows = await self.store.claim_feeds(now, limit, skip)
        if self.metrics is not None:
            self.metrics.observe_claim(len(rows), time.monotonic() - started)
        return rows

    async def next_due_at(self, in_flight: Collection[int] = ()) -> float | None:
        """When the next feed falls due (a hold running out included); None: never."""
        now = self.clock()
        holding = self._holding(now)
        skip = {*in_flight, *self.unconfigured, *holding}
        found = await self.store.read(feed_store.next_due_at, skip=skip, now=now)
        if self.store.shared:  # a lease running out (its daemon died) is a feed falling due
            lease_end = await self.store.read(feed_store.lease_ends_at, now)
            if lease_end is not None:
                found = lease_end if found is None else min(found, lease_end)
        ends = [self.held[i][0] for i in holding if i not in in_flight]
        return min([found, *ends]) if found is not None else min(ends, default=None)

    def _holding(self, now: float) -> list[int]:
        return [feed_id for feed_id, (until, _wait) in self.held.items() if until > now]

    async def feeds_to_poll(self) -> list[feed_store.FeedRow]:
        """The feeds this config polls (gone ones are not polled again), read off the loop."""
        return self._polled(await self.store.read(feed_store.all_feeds))

    def _polled(self, rows: list[feed_store.FeedRow]) -> list[feed_store.FeedRow]:
        """Not gone, configured here, and not being polled by a daemon now (a live lease:
        `poll --once` takes none, so any is another process's, whatever its node name)."""
        now = self.clock()
        return [
            row
            for row in rows
            if row.status != "gone"
            and row.config_url in self.ctx.feeds
            and not (row.leased_by and (row.lease_until or 0) > now)
        ]

    # For tools and tests: the same views read on the caller's thread, while nothing runs.
    def due_feeds(self) -> list[feed_store.FeedRow]:
        return feed_store.due_feeds(self.db, self.clock())

    def all_feeds(self) -> list[feed_store.FeedRow]:
        return self._polled(feed_store.all_feeds(self.db))

    def status_line(self) -> str:
        return self._status_line(feed_store.status_counts(self.db), outbox_store.counts(self.db))

    async def status(self) -> str:
        """One line for `systemctl status`: feed health and what waits in the outbox.
        Counts only (aggregate queries, off the loop), never every feed row."""
        statuses = await self.store.read(feed_store.status_counts)
        await self.store.measure()
        return self._status_line(statuses, await self.store.read(outbox_store.counts))

    def _status_line(self, statuses: dict[str, int], counts: dict[str, int]) -> str:
        feeds = sum(statuses.values()) - statuses.get("gone", 0)
        watchlists = "watchlists broken, last good kept; " if self.watchlist_state.broken else ""
        health = f"{statuses.get('failing', 0)} failing, {statuses.get('stale', 0)} stale"
        if statuses.get("gone"):
            health += f", {statuses['gone']} gone"
        return (
            f"{watchlists}{feeds} feed{'' if feeds == 1 else 's'} ({health}); alerts: "
            f"{counts.get('pending', 0)} pending, {counts.get('dead', 0)} dead; database {human_size(self.store.size())}"
        )

    async def prune(self, stop: Callable[[], bool] = lambda: False) -> retention.Pruned:
        """[retention]: the batches off the poll path, through the store's writer thread."""
        r = self.config.retention
        cutoffs = retention.cutoffs_at(self.clock(), r.entries, r.hits, r.outbox)
        pruned = await retention.prune_through(self.store, cutoffs, stop)
        if pruned.any or pruned.bytes_freed:
            log.info(
                "pruned entries=%d hits=%d deliveries=%d bytes_freed=%d batches=%d longest_batch_ms=%.0f",
                pruned.entries,
                pruned.hits,
                pruned.deliveries,
                pruned.bytes_freed,
                pruned.batches,
                pruned.longest_batch * 1000,
            )
        return pruned

    async def drain(self) -> DrainSummary:
        return await self.drainer.drain()

    async def _close_retired(self, pool: HttpPool) -> None:
        try:
            await asyncio.sleep(self.retired_pool_grace)
            if pool in self._retired_pools:
                self._retired_pools.remove(pool)
                await pool.aclose()
        finally:
            self._closing.discard(asyncio.current_task())

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for pool in (*self._retired_pools, self.pool):
            await pool.aclose()
        for channel in self.channels.values():
            await channel.aclose()
        self.cpu.close()
        await asyncio.to_thread(self.store.close)  # a write in progress commits first (then the lock goes)
