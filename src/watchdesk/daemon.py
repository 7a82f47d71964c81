"""`watchdesk run`: a dispatcher starts polls; APScheduler fires the drain tick; the
schedule itself lives in the store (feeds.next_check_at).

- dispatcher: starts due feeds, longest due first, as in-flight slots free up (no cap on
  polls per tick: a catch-up of 100,000 feeds runs as fast as the network allows), reading
  due feeds a page at a time; then sleeps until the next feed falls due, a slot frees up,
  or POLL_TICK at most. Every store read runs off the loop;
- drain tick: deliver due outbox rows (also run at once after a poll queued alerts);
- SIGTERM/SIGINT: stop ticking, let in-flight polls and the delivery in flight finish
  and be recorded (within STOP_GRACE; a poll cut short is simply polled again, and a
  delivery is never cut between its channel accepting it and its `sent` mark), close;
- SIGHUP, and any change of watchdesk.toml: reload the whole config (feeds, channels,
  settings, watchlists), loaded and checked off the loop; a broken edit keeps the
  running config and is logged as file:line. A change in the watchlists folder reloads
  the watchlists, keeping the last good ones when a file is broken;
- under systemd (sdnotify): READY=1 once ticking, STATUS= with feed and outbox health,
  RELOADING=1 around SIGHUP, STOPPING=1; with WatchdogSec=, WATCHDOG=1 only while the
  poll tick keeps running, so a daemon whose schedule stalled is restarted, not left
  silently not polling;
- [metrics] listen: /metrics and /healthz served from this loop (ops/metrics.py), the
  gauges refreshed every METRICS_EVERY from aggregate queries; /healthz answers 503 by
  the watchdog's rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config
from .ops import metrics as ops_metrics
from .runtime import Runtime
from .sdnotify import Notifier
from .store import feeds as feed_store
from .store.db import database_size, human_size
from .store.pg import is_postgres_url

log = logging.getLogger(__name__)

POLL_TICK = 5.0  # the dispatcher's longest sleep between looks at feeds.next_check_at
SLOTS_PER_CONNECTION = 4  # polls in flight per [network] concurrency (each waits on its turn)
MIN_SLOTS = 64
PRUNE_EVERY = 3600.0  # [retention] runs once an hour, in batches off the poll path
PRUNE_FIRST = 60.0  # the first an instant after start-up, once the first polls are in
WATCH_EVERY = 2.0  # seconds between looks at the watchlists folder for changes
DRAIN_TICK = 2.0
STOP_GRACE = 45.0  # how long in-flight polls may take to finish on SIGTERM
STALLED_AFTER = 4 * POLL_TICK  # no poll tick for this long: stop pinging systemd's watchdog
METRICS_EVERY = 15.0  # seconds between refreshes of the gauges (feeds per status, outbox, size)


def start_allowance(database_bytes: int) -> float:
    """Seconds the start may take: a minute, and 10 s per GB of SQLite database to check
    (20 times quick_check's cached rate: a cold cache, a slow disk)."""
    return 60.0 + 10.0 * database_bytes / 2**30


def schedule_alive(since_last_poll_tick: float, watchdog_interval: float) -> bool:
    """Whether the poll tick ran recently enough for the watchdog to be pinged."""
    return since_last_poll_tick < max(STALLED_AFTER, 2 * watchdog_interval)


class Daemon:
    def __init__(self, runtime: Runtime, notifier: Notifier | None = None):
        self.rt = runtime
        self.in_flight: dict[int, asyncio.Task[object]] = {}
        self.stopping = asyncio.Event()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._draining = asyncio.Lock()
        self._woken = False
        self.notifier = notifier if notifier is not None else Notifier()
        self.last_poll_tick = time.monotonic()
        self._reported: asyncio.Task[None] | None = None  # the STATUS after a reload
        self.slots = max(MIN_SLOTS, SLOTS_PER_CONNECTION * runtime.config.network.concurrency)
        self._slot_freed = asyncio.Event()
        self._folder_checked = 0.0  # when the config file and watchlists folder were last looked at
        self._reloading = asyncio.Lock()  # one reload at a time (SIGHUP, a file changed)
        self._leases_renewed = runtime.clock()

    async def dispatch(self) -> None:
        """Poll ticks back to back, each sleeping as long as nothing can start."""
        while not self.stopping.is_set():
            wait = await self.poll_tick()
            if self.rt.store.shared and self.in_flight:  # back in time to renew their leases
                wait = min(wait, self.rt.store.lease / 4)
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), timeout=wait)

    async def poll_tick(self) -> float:
        """Start due feeds into the free slots; how long to sleep before the next look.
        Only a tick that got through counts for the watchdog and /healthz: one that fails
        every time (a store that cannot be read) is a stalled schedule, not a live one."""
        wait = POLL_TICK
        ok = False
        try:
            if time.monotonic() - self._folder_checked >= WATCH_EVERY:
                self._folder_checked = time.monotonic()
                async with self._reloading:
                    if await asyncio.to_thread(self.rt.config_changed):  # an edit (globs stat off the loop)
                        if await self.rt.reload_config() is not None:
                            settle_heap()
                    elif await asyncio.to_thread(self.rt.reload_watchlists):  # the old ones serve meanwhile
                        settle_heap()
            await self._renew_leases()
            free = self.slots - len(self.in_flight)
            if free > 0:
                rows = await self.rt.due(limit=free, in_flight=self.in_flight.keys())
                for row in rows:
                    if self.stopping.is_set():
                        break
                    self.in_flight[row.id] = asyncio.create_task(self._poll(row), name=f"poll:{row.name}")
                if len(rows) == free:
                    ok = True
                    return POLL_TICK  # all slots busy: woken as soon as one frees up
            next_at = await self.rt.next_due_at(in_flight=self.in_flight.keys())
            if next_at is not None:
                wait = min(POLL_TICK, max(0.0, next_at - self.rt.clock()))
            ok = True
        except Exception:
            log.exception("poll_tick_failed")
        finally:
            if ok:
                self.last_poll_tick = time.monotonic()
        return wait

    async def _renew_leases(self) -> None:
        """Polls still in flight keep their feeds' leases (PostgreSQL): renewed when a
        quarter of the lease has passed, so a long poll is never taken over while it runs."""
        now = self.rt.clock()
        if not self.rt.store.shared or now - self._leases_renewed < self.rt.store.lease / 4:
            return
        self._leases_renewed = now
        if self.in_flight:
            lost = await self.rt.store.renew_feeds(list(self.in_flight), now)
            if lost:
                log.warning(
                    "feed_leases_lost count=%d (polls in flight past their lease: another daemon polls "
                    "those feeds now; these polls' outcomes are not kept)",
                    lost,
                )

    async def _poll(self, row: feed_store.FeedRow) -> None:
        try:
            summary = await self.rt.poll_one(row)
            if summary.alerts_queued and not self.stopping.is_set():
                self.scheduler.modify_job("drain", next_run_time=datetime.now().astimezone())
        finally:
            self.in_flight.pop(row.id, None)
            self._slot_freed.set()

    async def drain_tick(self) -> None:
        if self._draining.locked():
            self._woken = True  # the running drain goes round once more
            return
        async with self._draining:
            try:
                while not self.stopping.is_set():
                    self._woken = False
                    summary = await self.rt.drain()
                    if not (summary.more or self._woken):
                        break  # otherwise: a full round, or new alerts queued meanwhile
            except Exception:
                log.exception("drain_tick_failed")

    async def prune_tick(self) -> None:
        try:
            await self.rt.prune(stop=self.stopping.is_set)
        except Exception:
            log.exception("prune_failed")

    def reload(self) -> None:
        self.notifier.reloading()
        self._reported = asyncio.create_task(self._reload(), name="reload")

    async def _reload(self) -> None:
        """SIGHUP: the whole config again (loaded and checked off the loop); a broken one
        keeps the running config. Channels whose secrets did not resolve are tried again."""
        try:
            async with self._reloading:
                if await self.rt.reload_config() is None:
                    self.rt.retry_unavailable_channels()
                else:
                    settle_heap()
        except Exception:
            log.exception("reload_failed")
        self._slot_freed.set()  # feeds added are due now
        self.notifier.ready(await self._status())

    async def _status(self) -> str:
        try:
            return await self.rt.status()
        except Exception as e:  # the status line must never stop the daemon
            return f"status unavailable: {type(e).__name__}"

    def alive(self) -> bool:
        """The watchdog's rule, for /healthz: the poll tick ran recently."""
        return schedule_alive(time.monotonic() - self.last_poll_tick, self.notifier.watchdog_interval or 0.0)

    async def _serve_metrics(self) -> asyncio.Server | None:
        listen, metrics = self.rt.config.metrics.listen, self.rt.metrics
        if listen is None or metrics is None:
            return None
        host, port = listen
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            server = await ops_metrics.serve(metrics, host, port, self.alive)
        except OSError as e:  # polling and alerting matter more than metrics: go on, loudly
            log.error("metrics_unavailable listen=%s error=%s (not serving /metrics)", address, e)
            return None
        log.info("metrics_listening url=%s", f"http://{address}/metrics")
        return server

    async def refresh_metrics(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.rt.refresh_metrics()
            except Exception as e:  # the gauges say they do not know, rather than freeze
                log.warning(
                    "metrics_refresh_failed error=%s: %s (gauges unknown until it works)", type(e).__name__, e
                )
                if self.rt.metrics is not None:
                    self.rt.metrics.set_unknown()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=METRICS_EVERY)

    async def watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog (and refresh STATUS) while the poll tick runs; when the
        schedule has stalled, stay silent so that systemd restarts the daemon."""
        while not self.stopping.is_set():
            since = time.monotonic() - self.last_poll_tick
            if schedule_alive(since, interval):
                self.notifier.send(WATCHDOG=1, STATUS=await self._status())
            else:
                log.error("schedule_stalled seconds=%.0f (not pinging the watchdog)", since)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)

    async def run(self, stopped_early: Callable[[], str | None] = lambda: None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        early = stopped_early()  # a signal while the store was opened and the matcher compiled
        if early:
            self.stop(f"{early} (during start-up)")
        self.scheduler.add_job(
            self.drain_tick,
            "interval",
            seconds=DRAIN_TICK,
            id="drain",
            next_run_time=datetime.now().astimezone(),
            max_instances=2,  # a tick during a long drain returns at once (the lock), unlogged
            coalesce=True,
        )
        self.scheduler.add_job(
            self.prune_tick,
            "interval",
            seconds=PRUNE_EVERY,
            id="prune",
            next_run_time=datetime.now().astimezone() + timedelta(seconds=PRUNE_FIRST),
            max_instances=1,
            coalesce=True,
        )
        try:  # the parse workers start now, off the loop, not at the first page
            await asyncio.to_thread(self.rt.cpu.warm)
        except Exception as e:  # they start on first use instead
            log.warning(
                "workers_not_started error=%s: %s (they start at the first page)", type(e).__name__, e
            )
        settle_heap()
        self.scheduler.start()
        server = await self._serve_metrics()
        gauges = asyncio.create_task(self.refresh_metrics(), name="metrics") if server else None
        dispatcher = asyncio.create_task(self.dispatch(), name="dispatcher")
        feeds = len(self.rt.config.feeds)
        log.info(
            "daemon_started feeds=%d watchlists=%d database=%s node=%s",
            feeds,
            len(self.rt.ctx.watchlists),
            self.rt.store.shown,
            self.rt.config.node,
        )
        self.notifier.ready(await self._status())
        watchdog = None
        if self.notifier.watchdog_interval:
            watchdog = asyncio.create_task(self.watchdog(self.notifier.watchdog_interval), name="watchdog")
        await self.stopping.wait()
        self.notifier.stopping()
        self._slot_freed.set()
        await dispatcher
        await self._wind_down()
        if watchdog is not None:
            await watchdog
        if server is not None:
            server.close()
            if gauges is not None:
                await gauges
        self.notifier.close()
        log.info("daemon_stopped")

    async def _wind_down(self) -> None:
        """No new tick starts; polls and the delivery in flight finish and are recorded
        within STOP_GRACE (shutting the scheduler down first would cancel a drain between
        a channel accepting an alert and its `sent` mark: a duplicate on every stop)."""
        self.scheduler.pause()
        deadline = asyncio.get_running_loop().time() + STOP_GRACE
        if self.in_flight:
            log.info("daemon_stopping in_flight=%d", len(self.in_flight))
            _done, pending = await asyncio.wait(list(self.in_flight.values()), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
        try:
            async with asyncio.timeout_at(deadline):
                async with self._draining:
                    await self.rt.drainer.record_outcomes()
        except TimeoutError:
            log.error(
                "daemon_stop_grace_over seconds=%.0f (a delivery still in flight is cut short)", STOP_GRACE
            )
        for channel, outcomes in self.rt.drainer.unrecorded.items():
            log.error(
                "delivery_not_recorded channel=%s outbox_ids=%s (sent, but the store refused the record: "
                "sent once more after the restart)",
                channel,
                ",".join(str(i) for o in outcomes for i in o.ids),
            )
        if self.rt.store.shared:  # the other daemons take over this one's feeds and channels now
            try:
                await self.rt.store.release()
            except Exception as e:
                log.warning("leases_not_released error=%s (they run out by themselves)", e)
        self.scheduler.shutdown(wait=False)

    def stop(self, reason: str = "") -> None:
        if not self.stopping.is_set():
            log.info("daemon_stop_requested signal=%s", reason)
            self.stopping.set()
            self.rt.drainer.stop_requested = True


def settle_heap() -> None:
    """What the daemon has loaded (config, feeds, watchlists, matcher) lives until a reload
    replaces it: out of the cyclic collector's way (gc.freeze), so that a full collection
    walks what polls leave behind, not every feed's config (at 300,000 feeds each full
    collection stalled the loop for ~0.3 s). A young collection first, so that little of
    the garbage waiting then is frozen with it. Frozen objects are still freed by their
    reference counts: a replaced config is (test_reload.py)."""
    gc.collect(1)
    gc.freeze()


async def run_daemon(config: Config, stopped_early: Callable[[], str | None] = lambda: None) -> None:
    """`stopped_early`: the signal that arrived before the loop's handlers were installed."""
    if stopped_early():  # while the config was loading
        log.info("daemon_stop_requested signal=%s (during start-up)", stopped_early())
        return
    notifier = Notifier()
    # The database is checked before READY (quick_check, about 0.5 s per GB): on a large
    # file and a slow disk that could outlast systemd's start timeout (90 s by default).
    size = 0 if is_postgres_url(config.database) else database_size(config.database)
    notifier.starting(f"checking the database ({human_size(size)})", start_allowance(size))
    runtime = Runtime(config, lock="watchdesk run")  # one daemon per database, released on any exit
    try:
        await Daemon(runtime, notifier).run(stopped_early)
    finally:
        await runtime.aclose()
