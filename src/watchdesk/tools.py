"""One-off operations behind CLI commands that need the network stack outside the daemon."""

from __future__ import annotations

import time

from .articles import ArticleFetcher, Page
from .config import Config, NetworkConfig
from .net import HttpPool, Limits
from .robots import RobotsCache


async def fetch_page_once(url: str, config: Config | None) -> Page:
    """Fetch one article page exactly as the daemon would (guard, robots, caps)."""
    net = config.network if config else NetworkConfig()
    pool = HttpPool(concurrency=2, per_host=1, user_agent=net.user_agent, allow=net.allow)
    limits = Limits(timeout=net.timeout, max_bytes=net.max_page_bytes, max_redirects=net.max_redirects)
    robots = RobotsCache(pool, limits, time.time) if net.robots else None
    try:
        return await ArticleFetcher(pool, limits, robots=robots, per_host_delay=0).fetch(url)
    finally:
        await pool.aclose()
