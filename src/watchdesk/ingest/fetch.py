"""Conditional GET of a feed -> Fetched | NotModified | FetchFailed."""

from __future__ import annotations

from ..models import FailureKind, Fetched, FetchFailed, FetchResult, NotModified
from ..web import parse_retry_after
from .net import HttpPool, Limits, RequestFailed

# Only formats parse.py reads: feedparser 6.0 has no JSON Feed support, so asking for
# application/feed+json would invite a negotiating server to send what we cannot parse.
ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"


async def fetch_feed(
    pool: HttpPool,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    limits: Limits,
    trusted: bool = False,
) -> FetchResult:
    """`trusted`: [network] trust_config_feeds; the written URL skips the guard, its
    redirects do not (HttpPool.get)."""
    headers = {"Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        resp = await pool.get(url, headers, limits, trusted=trusted)
    except RequestFailed as e:
        return FetchFailed(FailureKind(e.kind), str(e))
    h = resp.headers
    if resp.status == 304:
        # Keep the validators we sent unless the server sent new ones.
        return NotModified(h.get("etag", etag), h.get("last-modified", last_modified), resp.permanent_url)
    if resp.status == 200:
        return Fetched(
            url=resp.url,
            body=resp.body,
            etag=h.get("etag"),
            last_modified=h.get("last-modified"),
            content_type=h.get("content-type"),
            permanent_url=resp.permanent_url,
        )
    if resp.status == 410:
        return FetchFailed(FailureKind.GONE, "HTTP 410 Gone: the publisher removed this feed", 410)
    if resp.status in (429, 503):
        return FetchFailed(
            FailureKind.RATE_LIMITED,
            f"HTTP {resp.status}",
            resp.status,
            parse_retry_after(h.get("retry-after")),
        )
    if resp.status in (301, 302, 303, 307, 308):
        return FetchFailed(FailureKind.HTTP, f"HTTP {resp.status} without a Location", resp.status)
    return FetchFailed(FailureKind.HTTP, f"HTTP {resp.status}", resp.status)
