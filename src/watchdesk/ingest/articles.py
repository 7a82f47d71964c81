"""Article pages: fetch (guarded, polite) and extract (bounded worker) -> Article.

Only new entries get here, and only when their feed does not already carry the full
text (`fetch_article = "auto"`). robots.txt is honoured, requests to one host are
limited in number and spaced by `per_host_delay`, and a page that cannot be fetched or
extracted leaves the entry with the feed's own text and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..models import Article, ParsedEntry
from .extract import Extraction, extract_page
from .net import HttpPool, Limits, RequestFailed
from .robots import RobotsCache
from .workers import CpuPool, WorkerFailed

log = logging.getLogger(__name__)

FULL_TEXT_WORDS = 250  # feed content this long counts as the full article
ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes | None
    url: str
    reason: str | None = None  # why there is no body


class ArticleFetcher:
    def __init__(
        self,
        pool: HttpPool,
        limits: Limits,
        *,
        robots: RobotsCache | None,
        per_host_delay: float,
        extract_timeout: float = 20.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.extract_timeout = extract_timeout
        self.pool = pool
        self.limits = limits
        self.robots = robots
        self.per_host_delay = per_host_delay
        self.monotonic = monotonic
        self._next_slot: dict[str, float] = {}
        # Told each page's outcome (extracted | empty | failed | skipped) and, when the
        # extraction ran, its seconds: the daemon's metrics (ops/metrics.py observe_extract).
        self.observe: Callable[[str, float | None], None] = lambda outcome, seconds: None

    async def _wait_turn(self, host: str) -> None:
        """Space request starts to one host by per_host_delay (slots handed out in order)."""
        now = self.monotonic()
        slot = max(now, self._next_slot.get(host, 0.0))
        self._next_slot[host] = slot + self.per_host_delay
        if slot > now:
            await asyncio.sleep(slot - now)

    async def fetch(self, url: str) -> Page:
        if self.robots is not None:
            try:
                if not await self.robots.allowed(url):
                    return Page(None, url, "disallowed by robots.txt")
            except RequestFailed as e:
                return Page(None, url, f"robots.txt: {e}")
        await self._wait_turn(urlsplit(url).hostname or "")
        try:
            resp = await self.pool.get(url, {"Accept": ACCEPT_HTML}, self.limits)
        except RequestFailed as e:
            return Page(None, url, f"{e.kind}: {e}")
        if resp.status != 200:
            return Page(None, resp.url, f"HTTP {resp.status}")
        content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and "html" not in content_type and "xml" not in content_type:
            return Page(None, resp.url, f"not an HTML page ({content_type})")
        return Page(resp.body, resp.url)


def carries_full_text(entry: ParsedEntry) -> bool:
    return len(entry.content.split()) >= FULL_TEXT_WORDS


def article_from_entry(entry: ParsedEntry, outlet: str, note: str | None = None) -> Article:
    """The feed's own text: its full content when it has it, else its summary."""
    if entry.content:
        text, source = entry.content, "feed content"
    else:
        text, source = entry.summary, "summary"
    return Article(
        title=entry.title,
        text=text,
        url=entry.link,
        outlet=outlet,
        published=entry.published,
        text_source=source,
        note=note,
    )


def article_from_page(entry: ParsedEntry, outlet: str, extraction: Extraction) -> Article:
    return Article(
        title=entry.title,
        text=extraction.text,
        url=entry.link,
        outlet=outlet,
        published=entry.published,
        text_source="page",
        language=extraction.language,
        page_title=extraction.title,
        page_date=extraction.date,
    )


async def fetch_article(fetcher: ArticleFetcher, cpu: CpuPool, entry: ParsedEntry, outlet: str) -> Article:
    """Fetch and extract the entry's page; on any failure, the feed's text and the reason."""
    assert entry.link
    page = await fetcher.fetch(entry.link)
    if page.body is None:
        log.info("article_skipped entry=%s reason=%s", entry.link, page.reason)
        fetcher.observe("skipped", None)
        return article_from_entry(entry, outlet, page.reason)
    started = time.monotonic()
    try:
        extraction = await cpu.run(extract_page, page.body, page.url, timeout=fetcher.extract_timeout)
    except WorkerFailed as e:
        log.warning("extract_failed entry=%s reason=%s", entry.link, e)
        fetcher.observe("failed", time.monotonic() - started)
        return article_from_entry(entry, outlet, f"extraction failed: {e}")
    fetcher.observe("extracted" if extraction.text else "empty", time.monotonic() - started)
    if not extraction.text:
        return article_from_entry(entry, outlet, f"extraction: {extraction.reason}")
    return article_from_page(entry, outlet, extraction)
