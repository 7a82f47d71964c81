"""feedparser adapter: feed bytes -> ParsedFeed, with entry identity and plain text.

feedparser is always handed bytes (a str would be read as a path or URL), and its
"safe entity" expansion is switched off (stock, a 103 KB feed declaring one entity
expands to 100 MB).
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import feedparser
import feedparser.sanitizer
import lxml.etree
import lxml.html

from ..models import ParsedEntry, ParsedFeed
from ..web import canonical_url

# A pattern that never matches: internal DTD entities are no longer expanded.
NEVER_MATCHES = re.compile(rb"(?!)")
feedparser.sanitizer.RE_SAFE_ENTITY_PATTERN = NEVER_MATCHES

MAX_TITLE = 1_000
MAX_SUMMARY = 20_000
MAX_CONTENT = 500_000
# Not about the document's structure: a missing/odd Content-Type, or an encoding override.
_BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)
_SPACE = re.compile(r"\s+")
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "svg", "head")


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed; scripts and styles dropped."""
    if "<" not in html and "&" not in html:
        return _SPACE.sub(" ", html).strip()
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _SPACE.sub(" ", html).strip()
    for el in list(root.iter(*_DROP_TAGS)):
        el.drop_tree()
    for el in root.iter("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
        el.tail = " " + (el.tail or "")
    return _SPACE.sub(" ", root.text_content()).strip()


def _text(detail: Any, value: str, limit: int) -> str:
    kind = (detail or {}).get("type", "text/html") if isinstance(detail, dict) else "text/html"
    text = html_to_text(value) if "html" in kind else _SPACE.sub(" ", value).strip()
    return text[:limit]


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def parse_feed(
    body: bytes, *, url: str = "", content_type: str | None = None, max_entries: int = 100
) -> ParsedFeed:
    """Parse feed bytes. Newest `max_entries` entries are kept; the rest are counted."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    result = feedparser.parse(
        bytes(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    malformed = None
    exc = result.get("bozo_exception")
    if result.get("bozo") and not isinstance(exc, _BENIGN):
        malformed = f"{type(exc).__name__}: {exc}"[:500] if exc else "not well-formed"

    raw: list[dict[str, Any]] = []
    for position, entry in enumerate(result.entries):
        title = _text(entry.get("title_detail"), entry.get("title", ""), MAX_TITLE)
        summary = _text(entry.get("summary_detail"), entry.get("summary", ""), MAX_SUMMARY)
        contents = entry.get("content") or []
        content = " ".join(_text(c, c.get("value", ""), MAX_CONTENT) for c in contents)[:MAX_CONTENT]
        link = entry.get("link") or None
        guid = (entry.get("id") or "").strip() or None
        raw.append(
            {
                "guid": guid[:2000] if guid else None,
                "link": link[:2000] if link else None,
                "title": title,
                "summary": summary,
                "content": content if content != summary else "",
                "published": _when(entry),
                "author": (entry.get("author") or None),
                "position": position,
            }
        )

    entries = _identify(raw)
    # Newest first; undated entries keep document order after dated ones.
    entries.sort(key=lambda e: (e.published is None, -(e.published.timestamp() if e.published else 0)))
    kept = entries[:max_entries]
    feed_title: str | None = result.feed.get("title") if hasattr(result, "feed") else None
    return ParsedFeed(
        title=feed_title[:MAX_TITLE] if feed_title else None,
        entries=tuple(kept),
        version=result.get("version", "") or "",
        malformed=malformed,
        entries_dropped=len(entries) - len(kept),
    )


def _identify(raw: list[dict[str, Any]]) -> list[ParsedEntry]:
    """Key each entry: GUID, else canonical link, else hash of title+summary.

    A GUID repeated inside one document is not an identity: such entries are keyed by
    GUID plus their link (or content hash). Exact repeats are dropped.
    """
    guid_counts = Counter(r["guid"] for r in raw if r["guid"])
    seen: set[str] = set()
    out: list[ParsedEntry] = []
    for r in raw:
        link_key = canonical_url(r["link"]) if r["link"] else None
        content_key = _digest(r["title"], r["summary"])
        if r["guid"] and guid_counts[r["guid"]] == 1:
            key = "guid:" + r["guid"]
        elif r["guid"]:
            key = f"guid:{r['guid']}#{link_key or content_key}"
        elif link_key:
            key = "link:" + link_key
        else:
            key = "hash:" + content_key
        if key in seen:
            continue
        seen.add(key)
        out.append(
            ParsedEntry(
                key=key,
                guid=r["guid"],
                link=r["link"],
                title=r["title"],
                summary=r["summary"],
                content=r["content"],
                published=r["published"],
                author=r["author"],
            )
        )
    return out
