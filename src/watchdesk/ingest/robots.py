"""robots.txt, fetched through the same guarded client, cached per host (RFC 9309).

- 2xx: the rules apply (for our User-Agent's product token, "watchdesk");
- 4xx: no rules: everything allowed;
- 5xx, timeouts, network errors: everything disallowed for now, asked again sooner.
"""

from __future__ import annotations

import asyncio
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .net import HttpPool, Limits, RequestFailed

AGENT = "watchdesk"
CACHE_SECONDS = 24 * 3600.0
UNREACHABLE_RETRY = 3600.0
MAX_ROBOTS_BYTES = 512 * 1024


@dataclass
class _Entry:
    parser: urllib.robotparser.RobotFileParser | None  # None: everything allowed
    disallow_all: bool
    expires: float


class RobotsCache:
    def __init__(self, pool: HttpPool, limits: Limits, clock: Callable[[], float]):
        self.pool = pool
        self.limits = Limits(timeout=min(limits.timeout, 15.0), max_bytes=MAX_ROBOTS_BYTES, max_redirects=5)
        self.clock = clock
        self._cache: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            entry = self._cache.get(origin)
            if entry is None or entry.expires <= self.clock():
                entry = self._cache[origin] = await self._fetch(origin)
        if entry.disallow_all:
            return False
        return entry.parser is None or entry.parser.can_fetch(AGENT, url)

    async def _fetch(self, origin: str) -> _Entry:
        now = self.clock()
        try:
            resp = await self.pool.get(origin + "/robots.txt", {"Accept": "text/plain"}, self.limits)
        except RequestFailed as e:
            if e.kind == "refused":  # the host itself is refused: the page fetch will say so
                return _Entry(None, False, now + CACHE_SECONDS)
            return _Entry(None, True, now + UNREACHABLE_RETRY)
        if 400 <= resp.status < 500:
            return _Entry(None, False, now + CACHE_SECONDS)
        if resp.status != 200:
            return _Entry(None, True, now + UNREACHABLE_RETRY)
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(resp.body.decode("utf-8", "replace").splitlines())
        return _Entry(parser, False, now + CACHE_SECONDS)
