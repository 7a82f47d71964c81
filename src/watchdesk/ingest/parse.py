"""feedparser adapter: feed bytes -> ParsedFeed, with entry identity and plain text.

feedparser is always handed bytes (a str would be read as a path or URL), and its
"safe entity" expansion is switched off (stock, a 103 KB feed declaring one entity
expands to 100 MB).

parse_feed never raises, whatever the bytes: numeric character references XML forbids
(surrogates, past U+10FFFF, NUL and other controls) become U+FFFD first, as browsers do,
and NUL bytes are dropped. If feedparser still fails, or finds no feed, the body is
decoded our own way (a BOM or UTF-16/32 NUL pattern; else the HTTP, then the declared
charset if it is an ASCII-compatible text codec that decodes it; else UTF-8; else
windows-1252), repaired as text and parsed once more as UTF-8 that says so. Each entry
is post-processed on its own: one that fails is skipped and counted in `malformed`.
Every string returned is free of NUL, surrogates and other XML-invalid characters.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import hashlib
import html as htmllib
import re
import threading
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
_BREAK_TAGS = ("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6")
_MAX_REASON = 500

# A numeric character reference, with or without its ";" (feedparser reads both, in places).
_CHARREF = re.compile(rb"&#(?:([xX])([0-9A-Fa-f]+)|([0-9]+));?")
_CHARREF_TEXT = re.compile(r"&#(?:([xX])([0-9A-Fa-f]+)|([0-9]+));?")
_REPLACEMENT_REF = "&#xFFFD;"
# Characters XML 1.0 forbids (NUL is dropped, not replaced); surrogates cannot be UTF-8.
_XML_INVALID = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_DECLARATION = re.compile(r"^\s*<\?xml\b[^>]*\?>")
_DECLARED_ENCODING = re.compile(
    rb"""^[^<]{0,8}<\?xml\b[^>]{0,200}?\bencoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']"""
)
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})""", re.I)
# Decoded unchanged by every ASCII-compatible text codec; not by UTF-7, *_escape, idna...
_PROBE = b"<?xml version='1.0'?>\n<a b=\"+-\\u0041&#1;\">z.Y/@~%" + b"q" * 70 + b"</a>"
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


_parsers = threading.local()  # a parser per thread: its error_log is read after each parse


def _html_parser() -> lxml.html.HTMLParser:
    parser: lxml.html.HTMLParser | None = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = lxml.html.HTMLParser()
    return parser


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed; scripts and styles dropped.

    libxml2 stops parsing for good at its first fatal error (nesting deeper than 256
    elements, or a text node over 10 MB): everything from there on would be lost, so the
    fragment is then read by `_scan_text`, which builds no tree (linear, any depth).
    """
    html, _ = _repair_text(html)  # lxml refuses NUL and controls, even from "&#1;"
    if "<" not in html and "&" not in html:
        return _SPACE.sub(" ", html).strip()
    parser = _html_parser()
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div", parser=parser)
        if any(e.level >= lxml.etree.ErrorLevels.FATAL for e in parser.error_log):
            return _scan_text(html)
        for el in list(root.iter(*_DROP_TAGS)):
            el.drop_tree()
        for el in root.iter(*_BREAK_TAGS):
            el.tail = " " + (el.tail or "")
        text = root.text_content()
    except (lxml.etree.LxmlError, ValueError):
        return _scan_text(html)
    return clean_text(_SPACE.sub(" ", text).strip())


# What _scan_text treats specially; roughly how libxml2 2.14's HTML5 tokenizer reads them.
_DROP_RAW = frozenset(("script", "style", "iframe", "noscript"))  # raw text, dropped
_KEEP_RAW = frozenset(("xmp", "noembed", "noframes"))  # raw text, kept as it is written
_KEEP_RCDATA = frozenset(("textarea", "title"))  # tags in them are text; references decode
_DROP_NESTED = frozenset(_DROP_TAGS) - _DROP_RAW  # svg, template, object, head: with all inside
_BREAKS = frozenset(_BREAK_TAGS)
_SPECIAL_NAMES = _DROP_RAW | _KEEP_RAW | _KEEP_RCDATA | _DROP_NESTED | {"plaintext"}


def _names(names: frozenset[str] | tuple[str, ...]) -> str:
    """A pattern for one of `names` as a whole tag name; its first letter is checked first
    (many times faster on tags that cannot be one of them)."""
    first = "".join(sorted({n[0] for n in names}))
    return rf"(?=[{first}])(?:{'|'.join(sorted(names))})(?=[\t\n\f\r />])"


_ATTRS = r"""(?:[\t\n\f\r /](?:[^<>"']++|"[^"]*+"|'[^']*+')*+)?>"""  # and the tag's ">"
# Text and tags that need no closer look (not special, complete), in one match. Possessive:
# a failed attempt gives nothing back, and is where the loop below takes over.
_PLAIN_RUN = re.compile(
    rf"(?:[^<]++|</?+(?!{_names(_SPECIAL_NAMES)})[A-Za-z][^\t\n\f\r /<>\"']*+{_ATTRS})++", re.I
)
# In a plain run: break tags, then all tags (a "<" inside a quoted value of a tag may be
# taken for a tag by the first: it is replaced inside that tag, which goes next).
_PLAIN_BREAK = re.compile(rf"</?{_names(_BREAK_TAGS)}{_ATTRS}", re.I)
_PLAIN_TAG = re.compile(r"""<(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")
_MARKUP = re.compile(r"<(?:(!--)|([!?])|/(?![A-Za-z])|(/?)([A-Za-z][^\t\n\f\r />]*))")
_TAG_STOP = re.compile(r"[>\"']")
_COMMENT_END = re.compile(r"--!?>")


def _tag_end(html: str, i: int) -> int:
    """Index just past the ">" ending the tag whose attributes start at `i` (a quoted value
    may hold ">"), or -1 when the text ends inside the tag."""
    while (m := _TAG_STOP.search(html, i)) is not None:
        if m.group() == ">":
            return m.end()
        close = html.find(m.group(), m.end())
        if close < 0:
            return -1
        i = close + 1
    return -1


def _raw_end(html: str, name: str, i: int) -> tuple[int, int]:
    """(start, end) of the end tag closing raw text `name` from `i`; (-1, -1) if none."""
    pattern = _RAW_CLOSE.get(name)
    if pattern is None:
        pattern = _RAW_CLOSE[name] = re.compile(rf"</{name}(?=[\t\n\f\r />])", re.I)
    m = pattern.search(html, i)
    if m is None:
        return -1, -1
    end = _tag_end(html, m.end())
    return (m.start(), end) if end >= 0 else (-1, -1)


_RAW_CLOSE: dict[str, re.Pattern[str]] = {}


def _scan_text(html: str) -> str:
    """Visible text of HTML read as a stream of tags, without a tree: for what libxml2
    gives up on. One pass, linear in the length, any nesting depth. Comments, scripts,
    styles and the other `_DROP_TAGS` (with their content) are never text; what follows
    an unclosed one of them, an unclosed comment or an unfinished tag is dropped, as a
    browser shows nothing of it either."""
    out: list[str] = []
    skip: str | None = None  # inside this _DROP_NESTED element: nothing is text
    depth = 0  # of `skip` elements
    i = 0
    while True:
        if run := _PLAIN_RUN.match(html, i):
            if skip is None:
                out.append(htmllib.unescape(_PLAIN_TAG.sub("", _PLAIN_BREAK.sub(" ", run.group()))))
            i = run.end()
        m = _MARKUP.search(html, i)
        if m is None:
            if skip is None:
                out.append(htmllib.unescape(html[i:]))
            break
        if skip is None and m.start() > i:
            out.append(htmllib.unescape(html[i : m.start()]))
        if m.group(1):  # a comment, to "-->" (or "--!>"); "<!-->" and "<!--->" are empty
            if html.startswith((">", "->"), m.end()):
                i = html.index(">", m.end()) + 1
                continue
            c = _COMMENT_END.search(html, m.end())
            if c is None:
                break
            i = c.end()
            continue
        if m.group(4) is None:  # "<!x", "<?x", "</1": a bogus comment, to the next ">"
            end = html.find(">", m.end())
            if end < 0:
                break
            i = end + 1
            continue
        end = _tag_end(html, m.end())
        if end < 0:
            break
        i = end
        name = m.group(4).lower()
        closing = bool(m.group(3))
        if skip is not None:
            if name == skip and not (name == "svg" and html[end - 2] == "/"):
                depth += -1 if closing else 1
                if depth == 0:
                    skip = None
            elif not closing and name in _DROP_RAW:
                start, i = _raw_end(html, name, end)
                if start < 0:
                    break
            continue
        if closing:
            if name in _BREAKS:
                out.append(" ")
            continue
        if name in _DROP_RAW or name in _KEEP_RAW or name in _KEEP_RCDATA:
            start, after = _raw_end(html, name, end)
            if start < 0:
                if name in _DROP_RAW:
                    break
                start = after = len(html)
            if name in _KEEP_RAW:
                out.append(html[end:start])
            elif name in _KEEP_RCDATA:
                out.append(htmllib.unescape(html[end:start]))
            i = after
        elif name == "plaintext":
            out.append(html[end:])
            i = len(html)
            break
        elif name in _DROP_NESTED:
            if not (name == "svg" and html[end - 2] == "/"):
                skip, depth = name, 1
        elif name in _BREAKS:
            out.append(" ")
    return clean_text(_SPACE.sub(" ", "".join(out)).strip())


def _text(detail: Any, value: object, limit: int) -> str:
    kind = detail.get("type", "text/html") if isinstance(detail, dict) else "text/html"
    kind = kind if isinstance(kind, str) else "text/html"
    value = clean_text(value)
    text = html_to_text(value) if "html" in kind else _SPACE.sub(" ", value).strip()
    return clean_text(text)[:limit]


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: no feedparser fallback from updated_parsed to published_parsed (and its warning)
        value = dict.get(entry, key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except Exception:  # OverflowError, ValueError, OSError; TypeError for odd tuples
                continue
    return None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def clean_text(value: object) -> str:
    """`value` as a str SQLite and UTF-8 can hold: NUL dropped, surrogates and the other
    characters XML forbids replaced by U+FFFD. None is ""."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _XML_INVALID.sub("\ufffd", text)


def _optional(value: object, limit: int, *, strip: bool = False) -> str | None:
    text = clean_text(value)
    return (text.strip() if strip else text)[:limit] or None


def _xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _bad_ref(x: str | bytes | None, digits: str | bytes) -> bool:
    """Whether a numeric character reference names a character XML forbids."""
    significant = (digits.decode("ascii") if isinstance(digits, bytes) else digits).lstrip("0")
    if len(significant) > 8:  # past U+10FFFF whatever it says (and int() has a digit limit)
        return True
    return not _xml_char(int(significant or "0", 16 if x else 10))


def _repair_refs(body: bytes) -> tuple[bytes, int]:
    """Bad numeric character references in ASCII-compatible bytes -> &#xFFFD;, and count."""
    if b"&#" not in body:
        return body, 0
    count = 0

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal count
        if _bad_ref(m.group(1), m.group(2) or m.group(3)):
            count += 1
            return _REPLACEMENT_REF.encode()
        return m.group(0)

    return _CHARREF.sub(fix, body), count


def _repair_text(text: str) -> tuple[str, int]:
    """The same for a decoded document, which also loses its NUL and other bad characters."""
    count = 0

    def fix(m: re.Match[str]) -> str:
        nonlocal count
        if _bad_ref(m.group(1), m.group(2) or m.group(3)):
            count += 1
            return _REPLACEMENT_REF
        return m.group(0)

    if "&#" in text:
        text = _CHARREF_TEXT.sub(fix, text)
    return clean_text(text), count


def _wide_encoding(body: bytes) -> tuple[str, int] | None:
    """(codec, BOM length) when the bytes are UTF-16 or UTF-32 (by BOM, else by where the
    NUL bytes of the first characters fall); None for ASCII-compatible (or unknown) bytes."""
    for bom, name in _WIDE_BOMS:
        if body.startswith(bom):
            return name, len(bom)
    head = body[:4]
    if len(head) < 4:
        return None
    zero = [b == 0 for b in head]
    if zero == [False, True, True, True]:
        return "utf-32-le", 0
    if zero == [True, True, True, False]:
        return "utf-32-be", 0
    if zero == [False, True, False, True]:
        return "utf-16-le", 0
    if zero == [True, False, True, False]:
        return "utf-16-be", 0
    return None


@functools.lru_cache(maxsize=64)
def _ascii_codec(name: str) -> str | None:
    """The codec `name` stands for, if it is a text encoding that reads ASCII as ASCII."""
    try:
        info = codecs.lookup(name)
        if not getattr(info, "_is_text_encoding", True) or info.name == "idna":  # idna: host names
            return None
        if _PROBE.decode(info.name) != _PROBE.decode("ascii"):
            return None
    except Exception:  # LookupError, UnicodeError, ValueError...: a name we cannot use
        return None
    return info.name


def _decode(body: bytes, content_type: str | None) -> str:
    """Our own reading of a body feedparser could not use: never raises."""
    wide = _wide_encoding(body)
    if wide:
        return body[wide[1] :].decode(wide[0], "replace")
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8) :].decode("utf-8", "replace")
    candidates: list[str] = []
    if content_type and (m := _CHARSET.search(content_type)):
        candidates.append(m.group(1))
    if m2 := _DECLARED_ENCODING.match(body):
        candidates.append(m2.group(1).decode("ascii"))
    candidates += ["utf-8", "cp1252"]
    for name in candidates:
        codec = _ascii_codec(name.lower())
        if codec is None:
            continue
        try:
            return body.decode(codec)
        except Exception:  # UnicodeDecodeError, or a codec's own complaint
            continue
    return body.decode("cp1252", "replace")


def _as_utf8(body: bytes, content_type: str | None) -> tuple[bytes, int]:
    """The body decoded our way, repaired and re-encoded as UTF-8 that says so."""
    text, fixed = _repair_text(_decode(body, content_type).lstrip("\ufeff"))
    declaration = '<?xml version="1.0" encoding="utf-8"?>'
    text, found = _XML_DECLARATION.subn(declaration, text, count=1)
    if not found:
        text = declaration + "\n" + text
    return text.encode("utf-8"), fixed


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _reason(e: BaseException) -> str:
    try:
        message = str(e)
    except Exception:
        message = "?"
    return clean_text(f"{type(e).__name__}: {message}")[:_MAX_REASON]


def parse_feed(
    body: bytes, *, url: str = "", content_type: str | None = None, max_entries: int = 100
) -> ParsedFeed:
    """Parse feed bytes. Newest `max_entries` entries are kept; the rest are counted.

    Never raises: what cannot be read at all is a ParsedFeed with no entries, no version
    and `malformed` saying why."""
    try:
        return _parse(bytes(body), url, content_type, max_entries)
    except Exception as e:  # a last resort: each step below catches its own
        return ParsedFeed(title=None, entries=(), malformed=f"parse failed: {_reason(e)}"[:_MAX_REASON])


def _feedparser(data: bytes, url: str, content_type: str | None) -> tuple[Any, str | None]:
    """feedparser's result, or None and why it raised."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    try:
        result = feedparser.parse(
            data, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as e:
        return None, _reason(e)
    return result, None


def _found(result: Any) -> bool:
    return result is not None and bool(result.get("entries") or result.get("version"))


def _parse(body: bytes, url: str, content_type: str | None, max_entries: int) -> ParsedFeed:
    notes: list[str] = []  # repairs and skips, after feedparser's own complaint
    data, fixed = body, 0
    if _wide_encoding(body) is None:  # in UTF-16/32, "&#" and NUL bytes are not what they seem
        data, fixed = _repair_refs(body)
        nuls = data.count(b"\x00")
        if nuls:
            notes.append(_count(nuls, "NUL byte") + " dropped")
            data = data.replace(b"\x00", b"")
    result, failure = _feedparser(data, url, content_type)
    if not _found(result):
        # The encoding may be a lie, or a bad character hides where we could not see it:
        # read the body our own way, repair it as text, and give feedparser UTF-8.
        again, refixed = _as_utf8(body, content_type)
        retry, _ = _feedparser(again, url, None)  # the charset it gave was read, or a lie
        if _found(retry):
            notes.append(
                f"read again as UTF-8 after feedparser failed ({failure})"
                if failure
                else "read again as UTF-8: no feed found as declared"
            )
            result, fixed = retry, refixed
        elif result is None:
            return ParsedFeed(title=None, entries=(), malformed=f"feedparser failed: {failure}"[:_MAX_REASON])
    if fixed:
        notes.append(_count(fixed, "invalid character reference") + " replaced by U+FFFD")

    malformed = None
    exc = result.get("bozo_exception")
    if result.get("bozo") and not isinstance(exc, _BENIGN):
        malformed = _reason(exc) if exc else "not well-formed"

    raw: list[dict[str, Any]] = []
    errors: list[str] = []
    for position, entry in enumerate(result.get("entries") or []):
        try:
            raw.append(_raw_entry(entry, position))
        except Exception as e:  # this entry only
            errors.append(_reason(e))

    entries = _identify(raw, errors)
    if errors:
        notes.append(f"{_count(len(errors), 'entry', 'entries')} skipped ({errors[0]})")
    # Newest first; undated entries keep document order after dated ones.
    entries.sort(key=lambda e: (e.published is None, -(e.published.timestamp() if e.published else 0)))
    kept = entries[:max_entries]
    version = clean_text(result.get("version", "") or "")
    if notes:
        malformed = "; ".join(([malformed] if malformed else []) + notes)
    if not kept and not version and not malformed:
        malformed = _reason(exc) if exc else "no feed found in the document"
    return ParsedFeed(
        title=_feed_title(result),
        entries=tuple(kept),
        version=version,
        malformed=malformed[:_MAX_REASON] if malformed else None,
        entries_dropped=len(entries) - len(kept),
    )


def _feed_title(result: Any) -> str | None:
    try:
        feed = result.get("feed")
        return _optional(feed.get("title"), MAX_TITLE) if feed is not None else None
    except Exception:
        return None


def _raw_entry(entry: Any, position: int) -> dict[str, Any]:
    title = _text(entry.get("title_detail"), entry.get("title", ""), MAX_TITLE)
    summary = _text(entry.get("summary_detail"), entry.get("summary", ""), MAX_SUMMARY)
    contents = entry.get("content") or []
    content = " ".join(_text(c, c.get("value", ""), MAX_CONTENT) for c in contents)[:MAX_CONTENT]
    return {
        "guid": _optional(entry.get("id"), 2000, strip=True),
        "link": _optional(entry.get("link"), 2000),
        "title": title,
        "summary": summary,
        "content": content if content != summary else "",
        "published": _when(entry),
        "author": _optional(entry.get("author"), 2000),
        "position": position,
    }


def _identify(raw: list[dict[str, Any]], errors: list[str] | None = None) -> list[ParsedEntry]:
    """Key each entry: GUID, else canonical link, else hash of title+summary.

    A GUID repeated inside one document is not an identity: such entries are keyed by
    GUID plus their link (or content hash). Exact repeats are dropped. An entry that
    cannot be keyed is skipped, and why is added to `errors`.
    """
    guid_counts = Counter(r["guid"] for r in raw if r["guid"])
    seen: set[str] = set()
    out: list[ParsedEntry] = []
    for r in raw:
        try:
            key = clean_text(_key(r, guid_counts))
        except Exception as e:  # this entry only
            if errors is not None:
                errors.append(_reason(e))
            continue
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


def _key(r: dict[str, Any], guid_counts: Counter[str]) -> str:
    link_key = canonical_url(r["link"]) if r["link"] else None
    content_key = _digest(r["title"], r["summary"])
    if r["guid"] and guid_counts[r["guid"]] == 1:
        return "guid:" + r["guid"]
    if r["guid"]:
        return f"guid:{r['guid']}#{link_key or content_key}"
    if link_key:
        return "link:" + link_key
    return "hash:" + content_key
