"""Feed discovery (`watchdesk discover URL`): the feeds a page advertises, each checked.

The page and every candidate are fetched through the HttpPool given, so the network
guard, the total deadline and the byte cap apply to each of them (and to every redirect
hop), and each candidate is checked by parsing it, as a poll would:

1. The URL itself: when it is a feed (parse_feed finds entries or a version), or a JSON
   Feed, that is the one result.
2. Else the feeds its HTML advertises: `<link rel="alternate">` elements (rel may hold
   several tokens, any case) whose type is one of FEED_TYPES, found in the first
   HEAD_BYTES bytes of the page (wherever they sit there: sloppy pages put them after
   the body has begun), resolved against the first `<base href>` and the page's URL
   (after redirects), fragments dropped, duplicates removed, in page order. At most
   MAX_CANDIDATES are checked (more are logged, not fetched).
3. When it advertises none: the usual paths of the page's origin, COMMON_PATHS.

JSON Feed: feedparser 6 cannot read it, so neither can watchdesk. A JSON Feed is
reported as found, with kind "unsupported", and never rendered as a [[feed]] table.
A candidate declared `application/json` that is not a JSON Feed (WordPress advertises
its REST API that way on every page) is "not a feed".

feeds_toml renders the feeds that checked out as `[[feed]]` tables ready to paste into
watchdesk.toml; problem_lines says what went wrong with the others, one line each.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.etree
import lxml.html

from ..models import FailureKind, ParsedFeed
from ..web import UNSAFE_CHARS
from ..web import toml_string as toml_string
from .fetch import ACCEPT as FEED_ACCEPT
from .net import HttpPool, Limits, RequestFailed, Response
from .parse import clean_text, parse_feed
from .workers import CpuPool

log = logging.getLogger(__name__)

# <link type> -> the format it announces. application/json is what some sites declare
# for a JSON Feed (and others for anything JSON): it is checked like the rest.
FEED_TYPES: dict[str, str] = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json feed",
    "application/json": "json feed",
}
# Tried, on the page's origin, only when the page advertises no feed: WordPress (/feed,
# /feed/), common static generators and CMSs (/rss, /rss.xml, /atom.xml, /feed.xml),
# Hugo (/index.xml), Blogger (/feeds/posts/default).
COMMON_PATHS: tuple[str, ...] = (
    "/feed",
    "/feed/",
    "/rss",
    "/rss.xml",
    "/atom.xml",
    "/feed.xml",
    "/index.xml",
    "/feeds/posts/default",
)
HEAD_BYTES = 512 * 1024  # the page's prefix searched for <link> and <base>
MAX_CANDIDATES = 20  # advertised feeds checked per page; the rest are logged, not fetched
MAX_URL = 4096  # longer hrefs are ignored
MAX_NAME = 200  # a [[feed]] name taken from a feed's title is cut to this
PARSE_TIMEOUT = 30.0  # per candidate, when parsed in a CpuPool

FORMAT_LABELS = {"rss": "RSS", "atom": "Atom", "cdf": "CDF", "json feed": "JSON Feed"}
PAGE_ACCEPT = (
    "text/html, application/xhtml+xml;q=0.9, application/rss+xml;q=0.8, application/atom+xml;q=0.8, */*;q=0.5"
)
JSON_ACCEPT = "application/feed+json, application/json;q=0.9, */*;q=0.5"
UNSUPPORTED = "unsupported"  # a Discovered.kind besides the FailureKind values

_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b",
    re.I | re.S,
)
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml\b[^>]*>")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})""", re.I)
_JSON_FEED_VERSION = re.compile(rb'"version"\s*:\s*"https?://jsonfeed\.org/version/')
_JSON_PEEK = 64 * 1024  # where a JSON Feed's "version" is looked for
_JSON_READ = 2 * 2**20  # JSON Feeds up to this size are read for their title and item count
_ASCII_WS = " \t\n\r\f"
# C0/C1 controls, DEL, bidi marks/embeddings/overrides/isolates, line/paragraph separators.
_PROBE = b"<link rel='alternate' href='/a?b=c&amp;d' type=\"x/y+z\">"
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A URL that may be a feed: advertised by the page ("link") or a usual path ("guess")."""

    url: str
    type: str = ""  # the declared type (lower case, no parameters); "" for a guess
    title: str = ""  # the link's title attribute, as written
    source: str = "link"


@dataclass(frozen=True, slots=True)
class Discovered:
    """One checked candidate. `ok`: a feed watchdesk can poll; else `kind` and `problem`."""

    url: str  # as advertised (resolved) or tried
    ok: bool
    source: str  # "page" (the URL given) | "link" (advertised) | "guess" (a usual path)
    format: str = ""  # "rss" | "atom" | "cdf" | "json feed" | "" (not known)
    version: str = ""  # feedparser's name for it ("rss20", "atom10"...)
    title: str | None = None  # the feed's own title
    entries: int = 0  # entries in the document
    newest: datetime | None = None  # the newest entry's date (UTC), when any is dated
    status: int | None = None  # the HTTP status of the answer, when there was one
    kind: str | None = (
        None  # why not ok: a FailureKind value ("http", "refused", "malformed"...) or "unsupported"
    )
    problem: str | None = None  # why not ok, for people
    note: str | None = None  # an ok feed's parse note (not well-formed, but read)
    answered_url: str | None = None  # the URL that answered, after redirects
    permanent_url: str | None = None  # set when every redirect hop was 301/308
    declared_type: str = ""  # the <link type> it was advertised with

    @property
    def config_url(self) -> str:
        """The URL to put in the config: where it moved for good, else as found."""
        return self.permanent_url or self.url


# ---- finding candidates (pure) -----------------------------------------------------------


def find_feed_links(body: bytes, page_url: str, content_type: str | None = None) -> list[Candidate]:
    """The feeds an HTML page advertises: `<link rel="alternate" type=FEED_TYPES href>` in
    its first HEAD_BYTES bytes, resolved against `<base href>` and page_url, without
    fragments or duplicates, in page order. Never raises; [] for what is not HTML."""
    head = bytes(body[:HEAD_BYTES])
    if not head.strip():
        return []
    # Decoded here: libxml2 does not know every name Python's codecs do, and a str has no
    # encoding left to guess (its XML declaration, if any, must go: lxml refuses a str with one).
    text = head.decode(_html_encoding(head, content_type), "replace").lstrip("\ufeff")
    text = _XML_DECLARATION.sub("", text, count=1)
    try:
        parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)
        root = lxml.html.document_fromstring(text, parser=parser)
        links: list[tuple[str, str, str]] = []
        base: str | None = None
        for el in root.iter("link", "base"):
            href = _attr(el, "href")
            if el.tag == "base":
                if base is None and href:
                    base = href
                continue
            rel = _attr(el, "rel").lower().split()
            kind = _attr(el, "type").split(";")[0].strip(_ASCII_WS).lower()
            if "alternate" in rel and kind in FEED_TYPES and href and len(href) <= MAX_URL:
                links.append((href, kind, _attr(el, "title")))
    except (lxml.etree.LxmlError, ValueError, LookupError):
        return []
    return _resolve(links, page_url, base)


def _attr(el: lxml.etree._Element, name: str) -> str:
    value = el.get(name)
    return value.strip(_ASCII_WS) if isinstance(value, str) else ""


def _resolve(links: list[tuple[str, str, str]], page_url: str, base: str | None) -> list[Candidate]:
    base_url = page_url
    if base is not None:
        try:
            resolved = urljoin(page_url, base)
            if urlsplit(resolved).scheme in ("http", "https"):
                base_url = resolved
        except ValueError:  # "http://[oops": no base
            pass
    seen: set[str] = set()
    out: list[Candidate] = []
    for href, kind, title in links:
        try:
            url = _feed_scheme(urldefrag(urljoin(base_url, href)).url)
        except ValueError:  # not a URL at all ("http://[oops")
            continue
        if url in seen:
            continue
        seen.add(url)
        out.append(Candidate(url, kind, title, "link"))
    return out


def _feed_scheme(url: str) -> str:
    """The old feed: pseudo-scheme (`feed://host/x`, `feed:https://host/x`) as http(s)."""
    if url[:5].lower() != "feed:":
        return url
    rest = url[5:]
    return rest if rest[:7].lower() == "http://" or rest[:8].lower() == "https://" else "http:" + rest


def common_paths(page_url: str) -> list[Candidate]:
    """COMMON_PATHS on the page's origin."""
    parts = urlsplit(page_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return [Candidate(origin + path, "", "", "guess") for path in COMMON_PATHS]


def _html_encoding(head: bytes, content_type: str | None) -> str:
    """The page's encoding: BOM, else the HTTP charset, else <meta charset>, else UTF-8."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    names = []
    if content_type and (m := _CHARSET.search(content_type)):
        names.append(m.group(1))
    if m2 := _META_CHARSET.search(head[:4096]):
        names.append(m2.group(1).decode("ascii"))
    for name in names:
        codec = _ascii_codec(name)
        if codec:
            return codec
    return "utf-8"


def _ascii_codec(name: str) -> str | None:
    """`name`'s codec, if it is a text encoding that reads markup's ASCII as ASCII."""
    try:
        info = codecs.lookup(name)
        if not getattr(info, "_is_text_encoding", True) or _PROBE.decode(info.name) != _PROBE.decode("ascii"):
            return None
    except Exception:  # LookupError, UnicodeError...: a name we cannot use
        return None
    return info.name


def looks_like_html(body: bytes) -> bool:
    """Whether the document starts as HTML (a doctype html or an <html> element)."""
    return _HTML_START.match(body[:4096]) is not None


def _looks_like_json(body: bytes) -> bool:
    return body[:_JSON_PEEK].lstrip(b"\xef\xbb\xbf").lstrip()[:1] == b"{"


# ---- checking them -------------------------------------------------------------------------


async def discover(
    pool: HttpPool,
    url: str,
    limits: Limits,
    *,
    cpu: CpuPool | None = None,
    parse_timeout: float = PARSE_TIMEOUT,
) -> list[Discovered]:
    """The feeds `url` is or advertises (or, advertising none, those at COMMON_PATHS), each
    fetched through `pool` within `limits` and parsed (in `cpu` when given, else in a
    thread). In candidate order; a candidate that turns out to be a feed already listed
    (the same URL after redirects) is left out. Never raises for what the network or the
    documents do: a page that cannot be fetched is one result that is not ok."""
    try:
        resp = await pool.get(url, {"Accept": PAGE_ACCEPT}, limits)
    except RequestFailed as e:
        return [_request_failed(url, "page", e)]
    if resp.status != 200:
        return [_http_failed(url, "page", resp)]
    if not looks_like_html(resp.body):
        itself = await _judge(url, "page", "", resp, cpu, parse_timeout)
        if itself.ok or itself.kind == UNSUPPORTED:
            return [itself]
    candidates = find_feed_links(resp.body, resp.url, resp.headers.get("content-type"))
    if len(candidates) > MAX_CANDIDATES:
        log.warning(
            "%s advertises %d feeds: only the first %d are checked", url, len(candidates), MAX_CANDIDATES
        )
        candidates = candidates[:MAX_CANDIDATES]
    if not candidates:
        candidates = common_paths(resp.url)
    results = await asyncio.gather(*(_check(pool, c, limits, cpu, parse_timeout) for c in candidates))
    return _without_repeats(results)


def _without_repeats(results: Sequence[Discovered]) -> list[Discovered]:
    seen: set[str] = set()
    out: list[Discovered] = []
    for r in results:
        if r.ok:
            key = r.answered_url or r.url
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out


async def _check(
    pool: HttpPool, cand: Candidate, limits: Limits, cpu: CpuPool | None, parse_timeout: float
) -> Discovered:
    accept = JSON_ACCEPT if FEED_TYPES.get(cand.type) == "json feed" else FEED_ACCEPT
    try:
        resp = await pool.get(cand.url, {"Accept": accept}, limits)
    except RequestFailed as e:
        return _request_failed(cand.url, cand.source, e, cand.type)
    except Exception as e:  # a bug of ours on a hostile URL: this candidate's failure, not the run's
        log.exception("checking %s failed", cand.url)
        why = f"internal error: {type(e).__name__}: {e}"
        return Discovered(cand.url, False, cand.source, kind=FailureKind.INTERNAL.value, problem=why)
    if resp.status != 200:
        return _http_failed(cand.url, cand.source, resp, cand.type)
    return await _judge(cand.url, cand.source, cand.type, resp, cpu, parse_timeout)


def _request_failed(url: str, source: str, e: RequestFailed, declared: str = "") -> Discovered:
    why = f"refused by the network guard: {e}" if e.kind == FailureKind.REFUSED else f"{e.kind}: {e}"
    return Discovered(url, False, source, kind=e.kind, problem=why, declared_type=declared)


def _http_failed(url: str, source: str, resp: Response, declared: str = "") -> Discovered:
    return Discovered(
        url,
        False,
        source,
        status=resp.status,
        kind=FailureKind.HTTP.value,
        problem=f"HTTP {resp.status}",
        answered_url=resp.url,
        declared_type=declared,
    )


async def _judge(
    url: str, source: str, declared: str, resp: Response, cpu: CpuPool | None, parse_timeout: float
) -> Discovered:
    """What a 200 answer is: a feed (parsed), a JSON Feed, or not a feed and why."""
    base = Discovered(
        url,
        False,
        source,
        status=resp.status,
        answered_url=resp.url,
        permanent_url=resp.permanent_url,
        declared_type=declared,
    )
    malformed = FailureKind.MALFORMED.value
    content_type = resp.headers.get("content-type")
    if _looks_like_json(resp.body):
        return _json_feed(base, resp.body)
    if looks_like_html(resp.body):
        shown = f" ({content_type.split(';')[0].strip()})" if content_type else ""
        return replace(base, kind=malformed, problem=f"not a feed: an HTML page{shown}")
    try:
        if cpu is not None:
            parsed: ParsedFeed = await cpu.run(
                parse_feed,
                resp.body,
                url=resp.url,
                content_type=content_type,
                max_entries=1,
                timeout=parse_timeout,
            )
        else:  # a thread, so the loop goes on (other requests' deadlines run meanwhile)
            parsed = await asyncio.to_thread(
                parse_feed, resp.body, url=resp.url, content_type=content_type, max_entries=1
            )
    except Exception as e:  # WorkerFailed (deadline, memory), or a bug: this candidate only
        return replace(base, kind=malformed, problem=f"parsing failed: {type(e).__name__}: {e}")
    if not parsed.entries and not parsed.version:
        return replace(base, kind=malformed, problem=f"not a feed: {parsed.malformed or 'no entries'}")
    return replace(
        base,
        ok=True,
        format=_format(parsed.version),
        version=parsed.version,
        title=parsed.title,
        entries=len(parsed.entries) + parsed.entries_dropped,
        newest=parsed.entries[0].published if parsed.entries else None,  # newest first
        note=parsed.malformed,
    )


def _format(version: str) -> str:
    for prefix in ("atom", "rss", "cdf"):
        if version.startswith(prefix):
            return prefix
    return ""


def _json_feed(base: Discovered, body: bytes) -> Discovered:
    if not _JSON_FEED_VERSION.search(body[:_JSON_PEEK]):
        return replace(
            base, kind=FailureKind.MALFORMED.value, problem="not a feed: JSON, but not a JSON Feed"
        )
    title: str | None = None
    entries = 0
    if len(body) <= _JSON_READ:
        try:
            data = json.loads(body)
        except Exception:  # ValueError, RecursionError: the title and count stay unknown
            data = None
        if isinstance(data, dict):
            title = clean_text(data["title"])[:MAX_NAME] if isinstance(data.get("title"), str) else None
            entries = len(data["items"]) if isinstance(data.get("items"), list) else 0
    return replace(
        base,
        format="json feed",
        title=title,
        entries=entries,
        kind=UNSUPPORTED,
        problem="a JSON Feed, which watchdesk cannot read (feedparser 6 has no JSON Feed support)",
    )


# ---- output --------------------------------------------------------------------------------


def feeds_toml(results: Iterable[Discovered], *, taken_names: Iterable[str] = ()) -> str:
    """The ok results as `[[feed]]` tables (url, name) ready to paste into watchdesk.toml;
    "" when there are none. Names come from the feeds' titles (controls and bidi marks
    removed, whitespace collapsed, cut to MAX_NAME), else host and path, and are made
    unique among themselves and `taken_names` (the config's own feed names). A URL listed
    twice is rendered once. The comment after each header is ours, never feed text."""
    used = set(taken_names)
    urls: set[str] = set()
    tables: list[str] = []
    for d in results:
        if not d.ok or d.config_url in urls:
            continue
        urls.add(d.config_url)
        name = _unique(_name(d), d, used)
        used.add(name)
        tables.append(
            f"[[feed]]  # {_summary(d)}\nurl = {toml_string(d.config_url)}\nname = {toml_string(name)}\n"
        )
    return "\n".join(tables)


def _name(d: Discovered) -> str:
    name = " ".join(UNSAFE_CHARS.sub(" ", clean_text(d.title)).split())[:MAX_NAME].strip()
    if name:
        return name
    parts = urlsplit(d.config_url)
    fallback = (parts.hostname or "") + (parts.path.rstrip("/") or "")
    return " ".join(UNSAFE_CHARS.sub(" ", fallback).split())[:MAX_NAME] or "feed"


def _unique(name: str, d: Discovered, used: set[str]) -> str:
    if name not in used:
        return name
    label = FORMAT_LABELS.get(d.format)
    if label and f"{name} ({label})" not in used:
        return f"{name} ({label})"
    n = 2
    while f"{name} ({n})" in used:
        n += 1
    return f"{name} ({n})"


def _summary(d: Discovered) -> str:
    label = FORMAT_LABELS.get(d.format, "feed")
    count = f"{d.entries} {'entry' if d.entries == 1 else 'entries'}"
    newest = f", newest {d.newest:%Y-%m-%d %H:%M} UTC" if d.newest else ""
    note = ", not well-formed but readable" if d.note else ""
    return f"{label}, {count}{newest}{note}"


def problem_lines(results: Iterable[Discovered]) -> list[str]:
    """`URL: problem` for each result that is not ok, safe to print (controls and bidi
    marks removed). Usual paths that were tried in vain are one line, and only when none
    of them is a feed (a miss at a guessed path is expected)."""
    lines: list[str] = []
    guessed: list[Discovered] = []
    any_guess_ok = False
    for d in results:
        if d.source == "guess":
            guessed.append(d)
            any_guess_ok = any_guess_ok or d.ok
        elif not d.ok:
            lines.append(_safe(f"{d.url}: {d.problem}"))
    if guessed and not any_guess_ok:
        origin = urlsplit(guessed[0].url)
        tried = ", ".join(urlsplit(d.url).path for d in guessed)
        lines.append(_safe(f"{origin.scheme}://{origin.netloc}: advertises no feed, and none is at {tried}"))
        for d in guessed:  # misses other than "not found" are worth knowing (a guard refusal...)
            if d.status not in (404, 410):
                lines.append(_safe(f"{d.url}: {d.problem}"))
    return lines


def _safe(text: str) -> str:
    return " ".join(UNSAFE_CHARS.sub("", clean_text(text)).split())
