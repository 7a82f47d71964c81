"""Digest windows: when a watchlist's digest is sent, and what it is called. Pure.

`hourly`: hits stored from 09:00 to 09:59:59 go out at 10:00. `daily HH:MM`: hits stored
since the previous HH:MM go out at the next HH:MM, in the configured time zone (a day
with a DST change is simply shorter or longer).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def window_end(delivery: str, now: float, tz: ZoneInfo) -> float:
    """When the digest that a hit stored at `now` belongs to is sent (epoch seconds)."""
    local = datetime.fromtimestamp(now, tz)
    if delivery == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0)
        return (start + timedelta(hours=1)).timestamp()
    if delivery.startswith("daily "):
        hour, minute = (int(x) for x in delivery.split()[1].split(":"))
        end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if end.timestamp() <= now:
            end = (end.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
        return end.timestamp()
    raise ValueError(f"not a digest delivery: {delivery!r}")


def next_hour(now: float, tz: ZoneInfo) -> float:
    return window_end("hourly", now, tz)


def title(delivery: str, end: float, tz: ZoneInfo) -> str:
    stop = datetime.fromtimestamp(end, tz)
    zone = stop.tzname() or str(tz)
    if delivery == "hourly":
        start = stop - timedelta(hours=1)
        return f"Hourly digest, {start:%H:%M}-{stop:%H:%M} {zone}"
    if delivery == "capped":
        return f"Alerts held back by the hourly cap, until {stop:%H:%M} {zone}"
    return f"Daily digest, until {stop:%a %d %b %Y %H:%M} {zone}"
