"""When a feed is checked next, and what its health becomes, after one poll. Pure.

Health is what happened, never the last status code: `ok` only after a body parsed (or
answered unchanged since one that did), `failing` from the first error on (with the time
it started), `stale` when it answers but no new entry came for `stale_after`, `gone` on
410. Caps defer work and never drop it: a poll that left new entries waiting is followed
within seconds; a feed that scrolls past us between polls is polled more often.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .models import FailureKind, FeedStatus, FetchFailed

MIN_RETRY = 60.0  # never retry a failing feed sooner than this
MAX_RETRY_AFTER = 24 * 3600.0  # a Retry-After further out than this is capped
DRAIN_SOON = 10.0  # a poll that left new entries waiting is followed this soon


@dataclass(frozen=True, slots=True)
class Schedule:
    interval: float  # seconds between polls of a healthy feed (as configured)
    max_backoff: float  # cap of the backoff of a failing feed
    min_interval: float = 120.0  # the shortest interval an overflowing feed is given
    stale_after: float = 14 * 86400.0


@dataclass(frozen=True, slots=True)
class Health:
    status: FeedStatus
    consecutive_errors: int
    last_error: str | None
    next_check_at: float | None  # None: not polled again (410 Gone)
    failing_since: float | None = None
    interval: float | None = None  # after a success: a shortened interval, None for the configured


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one successful poll found, as the schedule needs it."""

    waiting: int = 0  # new entries left for the next poll (over max_entries)
    overflow: bool = False  # every entry was new, the oldest newer than our newest
    last_entry_at: float | None = None  # the feed's newest entry we have (after this poll)
    watched_since: float = 0.0  # when we started watching it (staleness of a feed never seen to post)


def after_success(
    now: float, schedule: Schedule, outcome: Outcome = Outcome(), effective: float | None = None
) -> Health:
    """ok, or stale; next check at the (effective) interval, or soon when entries wait."""
    interval = effective_interval(schedule, effective, outcome)
    since = outcome.last_entry_at if outcome.last_entry_at is not None else outcome.watched_since
    stale = since > 0 and now - since >= schedule.stale_after
    status = FeedStatus.STALE if stale else FeedStatus.OK
    next_at = now + (min(DRAIN_SOON, interval) if outcome.waiting else interval)
    return Health(status, 0, None, next_at, None, None if interval >= schedule.interval else interval)


def effective_interval(schedule: Schedule, effective: float | None, outcome: Outcome) -> float:
    """An overflowing feed's interval is halved, down to min_interval; it doubles back
    towards the configured interval once a poll finds it no longer overflowing."""
    current = schedule.interval if effective is None else effective
    floor = min(schedule.min_interval, schedule.interval)
    if outcome.overflow:
        return max(floor, current / 2)
    if outcome.waiting:  # still draining what the last overflow left: keep the pace
        return current
    return min(schedule.interval, current * 2)


def after_failure(
    failure: FetchFailed,
    errors_before: int,
    now: float,
    schedule: Schedule,
    random: Callable[[], float],
    failing_since: float | None = None,
) -> Health:
    """A failing feed backs off exponentially with jitter, to a cap, and is never dropped.

    410 stops polling (status 'gone', shown in `watchdesk feeds`). 429/503 wait for
    Retry-After when the server gives one.
    """
    errors = errors_before + 1
    since = failing_since if failing_since is not None else now
    message = failure.message
    if failure.kind is FailureKind.GONE:
        return Health(FeedStatus.GONE, errors, message, None, since)
    if failure.kind is FailureKind.RATE_LIMITED and failure.retry_after is not None:
        wait = min(max(failure.retry_after, MIN_RETRY), MAX_RETRY_AFTER)
        return Health(
            FeedStatus.FAILING, errors, f"{message}; Retry-After {failure.retry_after:g}s", now + wait, since
        )
    return Health(FeedStatus.FAILING, errors, message, now + backoff(errors, schedule, random), since)


def backoff(errors: int, schedule: Schedule, random: Callable[[], float]) -> float:
    """interval x 2^(errors-1), capped, minus up to 20% jitter so failures spread out."""
    base = max(MIN_RETRY, min(schedule.interval, schedule.max_backoff))
    delay = min(schedule.max_backoff, base * 2 ** min(errors - 1, 30))
    return max(MIN_RETRY, delay * (1 - 0.2 * random()))


def health_incident(
    health: Health, alerted: str | None, now: float, failing_after: float
) -> tuple[str | None, str | None]:
    """(the incident to alert now or None, what `health_alerted` becomes).

    Once per incident: `failing` after failing_after of errors, `stale`, `gone`; and
    `recovered` when a feed that was alerted for is ok again."""
    status = health.status
    if status is FeedStatus.GONE:
        return (None, alerted) if alerted == "gone" else ("gone", "gone")
    if status is FeedStatus.FAILING:
        since = health.failing_since if health.failing_since is not None else now
        if alerted != "failing" and now - since >= failing_after:
            return "failing", "failing"
        return None, alerted
    if status is FeedStatus.STALE:
        return (None, alerted) if alerted == "stale" else ("stale", "stale")
    if status is FeedStatus.OK and alerted is not None:
        return "recovered", None
    return None, alerted


def ago(seconds: float) -> str:
    """e.g. 3d 4h, 5h 12m, 40m."""
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"
