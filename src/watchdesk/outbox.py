"""drain(): claim due outbox rows -> channel.send -> sent | retry later | dead.

At least once: a row is marked sent only after its channel accepted it, so the only
duplicate possible is a crash between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlite_utils

from .notify import Channel
from .store import outbox as outbox_store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
RETRY_BASE = 30.0
RETRY_CAP = 3600.0


@dataclass
class DrainSummary:
    sent: int = 0
    retrying: int = 0
    dead: int = 0


def retry_delay(attempts: int, random: Callable[[], float], retry_after: float | None = None) -> float:
    """Exponential backoff with up to 20% jitter; a server's Retry-After wins if longer."""
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** min(attempts - 1, 20)) * (1 - 0.2 * random())
    return max(delay, retry_after or 0.0)


class Drainer:
    def __init__(
        self,
        db: sqlite_utils.Database,
        channels: Mapping[str, Channel],
        clock: Callable[[], float],
        random: Callable[[], float],
        unavailable: Mapping[str, str] | None = None,
    ):
        self.db = db
        self.channels = channels
        # Configured channels that cannot deliver now (e.g. a secret is missing): their
        # rows stay pending, untouched, until the daemon is restarted with them fixed.
        self.unavailable = dict(unavailable or {})
        self.clock = clock
        self.random = random
        self.failing: set[str] = set()  # channels whose last attempt failed (reported once)

    async def drain(self, limit: int = 200) -> DrainSummary:
        summary = DrainSummary()
        failed_now: set[str] = set()
        for row in outbox_store.due(self.db, self.clock(), limit, skip_channels=self.unavailable):
            if row.channel in failed_now:
                continue  # one failure per channel per round; the rest wait their turn
            channel = self.channels.get(row.channel)
            if channel is None:
                self._dead(row.id, row.channel, f"channel {row.channel!r} is not configured", summary)
                continue
            result = await channel.send(row.alert, key=row.idempotency_key)
            now = self.clock()
            if result.ok:
                outbox_store.mark_sent(self.db, row.id, now)
                summary.sent += 1
                if row.channel in self.failing:
                    self.failing.discard(row.channel)
                    log.warning("channel_recovered channel=%s", row.channel)
                continue
            attempts = row.attempts + 1
            if result.permanent or attempts >= MAX_ATTEMPTS:
                why = (
                    result.message
                    if result.permanent
                    else f"{attempts} attempts failed; last: {result.message}"
                )
                self._dead(row.id, row.channel, why, summary)
                continue
            failed_now.add(row.channel)
            retry_at = now + retry_delay(attempts, self.random, result.retry_after)
            outbox_store.mark_failed(self.db, row.id, result.message, retry_at=retry_at)
            summary.retrying += 1
            if row.channel not in self.failing:
                self.failing.add(row.channel)
                log.error(
                    "channel_failing channel=%s outbox_id=%d attempt=%d error=%s",
                    row.channel,
                    row.id,
                    attempts,
                    result.message,
                )
        return summary

    def _dead(self, row_id: int, channel: str, why: str, summary: DrainSummary) -> None:
        outbox_store.mark_failed(self.db, row_id, why, retry_at=None)
        summary.dead += 1
        log.error("delivery_dead channel=%s outbox_id=%d error=%s", channel, row_id, why)
