"""`watchdesk run`: APScheduler fires two ticks; the schedule itself lives in SQLite.

- poll tick: start a task for every due feed not already in flight (never waits on them);
- drain tick: deliver due outbox rows (also run at once after a poll queued alerts);
- SIGTERM/SIGINT: stop ticking, let in-flight polls finish (each commits in one
  transaction, so one cut short is simply polled again), close cleanly;
- SIGHUP, and any change in the watchlists folder: reload watchlists, keeping the last
  good ones when a file is broken;
- under systemd (sdnotify): READY=1 once ticking, STATUS= with feed and outbox health,
  RELOADING=1 around SIGHUP, STOPPING=1; with WatchdogSec=, WATCHDOG=1 only while the
  poll tick keeps running, so a daemon whose schedule stalled is restarted, not left
  silently not polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .config import Config
from .runtime import Runtime
from .sdnotify import Notifier
from .store import feeds as feed_store

log = logging.getLogger(__name__)

POLL_TICK = 5.0  # seconds between looks at feeds.next_check_at
DRAIN_TICK = 2.0
STOP_GRACE = 45.0  # how long in-flight polls may take to finish on SIGTERM
STALLED_AFTER = 4 * POLL_TICK  # no poll tick for this long: stop pinging systemd's watchdog


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

    async def poll_tick(self) -> None:
        if self.stopping.is_set():
            return
        try:
            self.rt.reload_watchlists()
            for row in self.rt.due_feeds():
                if row.id not in self.in_flight:
                    task = asyncio.create_task(self._poll(row), name=f"poll:{row.name}")
                    self.in_flight[row.id] = task
        except Exception:
            log.exception("poll_tick_failed")
        self.last_poll_tick = time.monotonic()

    async def _poll(self, row: feed_store.FeedRow) -> None:
        try:
            summary = await self.rt.poll_one(row)
            if summary.alerts_queued and not self.stopping.is_set():
                self.scheduler.modify_job("drain", next_run_time=datetime.now().astimezone())
        finally:
            self.in_flight.pop(row.id, None)

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

    def reload(self) -> None:
        self.notifier.reloading()
        self.rt.reload_watchlists(force=True)
        self.rt.retry_unavailable_channels()
        self.notifier.ready(self._status())

    def _status(self) -> str:
        try:
            return self.rt.status_line()
        except Exception as e:  # the status line must never stop the daemon
            return f"status unavailable: {type(e).__name__}"

    async def watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog (and refresh STATUS) while the poll tick runs; when the
        schedule has stalled, stay silent so that systemd restarts the daemon."""
        while not self.stopping.is_set():
            since = time.monotonic() - self.last_poll_tick
            if schedule_alive(since, interval):
                self.notifier.send(WATCHDOG=1, STATUS=self._status())
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
            self.poll_tick,
            "interval",
            seconds=POLL_TICK,
            id="poll",
            next_run_time=datetime.now().astimezone(),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self.drain_tick,
            "interval",
            seconds=DRAIN_TICK,
            id="drain",
            next_run_time=datetime.now().astimezone(),
            max_instances=2,  # a tick during a long drain returns at once (the lock), unlogged
            coalesce=True,
        )
        self.scheduler.start()
        feeds = len(self.rt.config.feeds)
        log.info(
            "daemon_started feeds=%d watchlists=%d database=%s",
            feeds,
            len(self.rt.ctx.watchlists),
            self.rt.config.database,
        )
        self.notifier.ready(self._status())
        watchdog = None
        if self.notifier.watchdog_interval:
            watchdog = asyncio.create_task(self.watchdog(self.notifier.watchdog_interval), name="watchdog")
        await self.stopping.wait()
        self.notifier.stopping()
        self.scheduler.shutdown(wait=False)
        if self.in_flight:
            log.info("daemon_stopping in_flight=%d", len(self.in_flight))
            _done, pending = await asyncio.wait(list(self.in_flight.values()), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
        async with self._draining:
            pass
        if watchdog is not None:
            await watchdog
        self.notifier.close()
        log.info("daemon_stopped")

    def stop(self, reason: str = "") -> None:
        if not self.stopping.is_set():
            log.info("daemon_stop_requested signal=%s", reason)
            self.stopping.set()


async def run_daemon(config: Config, stopped_early: Callable[[], str | None] = lambda: None) -> None:
    """`stopped_early`: the signal that arrived before the loop's handlers were installed."""
    if stopped_early():  # while the config was loading
        log.info("daemon_stop_requested signal=%s (during start-up)", stopped_early())
        return
    runtime = Runtime(config)
    try:
        await Daemon(runtime).run(stopped_early)
    finally:
        await runtime.aclose()
