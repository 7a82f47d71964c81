"""When a feed is checked next, and what its health becomes, after one poll. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .models import FailureKind, FeedStatus, FetchFailed

MIN_RETRY = 60.0  # never retry a failing feed sooner than this
MAX_RETRY_AFTER = 24 * 3600.0  # a Retry-After further out than this is capped


@dataclass(frozen=True, slots=True)
class Schedule:
    interval: float  # seconds between polls of a healthy feed
    max_backoff: float  # cap of the backoff of a failing feed


@dataclass(frozen=True, slots=True)
class Health:
    status: FeedStatus
    consecutive_errors: int
    last_error: str | None
    next_check_at: float | None  # None: not polled again (410 Gone)


def after_success(now: float, schedule: Schedule) -> Health:
    return Health(FeedStatus.OK, 0, None, now + schedule.interval)


def after_failure(
    failure: FetchFailed,
    errors_before: int,
    now: float,
    schedule: Schedule,
    random: Callable[[], float],
) -> Health:
    """A failing feed backs off exponentially with jitter, to a cap, and is never dropped.

    410 stops polling (status 'gone', shown in `watchdesk feeds`). 429/503 wait for
    Retry-After when the server gives one.
    """
    errors = errors_before + 1
    message = failure.message
    if failure.kind is FailureKind.GONE:
        return Health(FeedStatus.GONE, errors, message, None)
    if failure.kind is FailureKind.RATE_LIMITED and failure.retry_after is not None:
        wait = min(max(failure.retry_after, MIN_RETRY), MAX_RETRY_AFTER)
        return Health(
            FeedStatus.ERROR, errors, f"{message}; Retry-After {failure.retry_after:g}s", now + wait
        )
    return Health(FeedStatus.ERROR, errors, message, now + backoff(errors, schedule, random))


def backoff(errors: int, schedule: Schedule, random: Callable[[], float]) -> float:
    """interval x 2^(errors-1), capped, minus up to 20% jitter so failures spread out."""
    base = max(MIN_RETRY, min(schedule.interval, schedule.max_backoff))
    delay = min(schedule.max_backoff, base * 2 ** min(errors - 1, 30))
    return max(MIN_RETRY, delay * (1 - 0.2 * random()))
