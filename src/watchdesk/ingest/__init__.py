"""Ingest: from a feed URL to entries and their article text.

In: URLs (feeds, article pages), fetched through the one guarded HTTP client (net, guard),
politely (robots). Out: ParsedFeed / ParsedEntry (parse) and Article (articles, extract),
CPU-heavy work in a bounded process pool (workers)."""

from .articles import ArticleFetcher, Page, article_from_entry, carries_full_text, fetch_article
from .discover import Discovered, discover, feeds_toml, find_feed_links, problem_lines
from .extract import Extraction, extract_page
from .fetch import fetch_feed
from .net import HttpPool, Limits
from .parse import parse_feed
from .robots import RobotsCache
from .workers import CpuPool, WorkerFailed

__all__ = [
    "ArticleFetcher",
    "CpuPool",
    "Discovered",
    "Extraction",
    "HttpPool",
    "Limits",
    "Page",
    "RobotsCache",
    "WorkerFailed",
    "article_from_entry",
    "carries_full_text",
    "discover",
    "extract_page",
    "feeds_toml",
    "fetch_article",
    "fetch_feed",
    "find_feed_links",
    "parse_feed",
    "problem_lines",
]
