"""OPML subscription lists in and out: `watchdesk opml import` and `watchdesk opml export`.

Pure functions over bytes and strings (only `import_opml_file` reads a file):

- `import_opml(data, ...)` reads OPML 1.0/1.1/2.0 as feed readers export it (Feedly,
  Inoreader, Miniflux, FreshRSS, NetNewsWire) into `ImportedFeed`s. Folders (outlines
  without xmlUrl that hold outlines) become tags, slugified (lower case, words kept and
  joined by "-"); an outline's `category` attribute ("/tag1,/tag2", as `export_opml`
  writes it) adds its tags as written. The file is untrusted: parsed by defusedxml's expat
  reader with DTDs (so entities, internal or external) refused, at most MAX_BYTES bytes,
  MAX_DEPTH nested elements and MAX_OUTLINES outlines. Nothing raises for any input:
  whatever is wrong is an `OpmlProblem(line, message)` in the result.
- `render_feeds_toml(feeds)` writes them as `[[feed]]` tables, valid TOML that config
  loading accepts (names and tags escaped, whatever characters they hold).
- `export_opml(feeds, tag)` writes OPML 2.0 that `import_opml` reads back to the same
  feeds (url, name, tags).

Attribute and element names are matched in any case (`xmlurl`, `XMLURL`, `Title`).
Names and tags lose control characters, bidi controls and line separators (they are
printed on terminals and in alerts), their whitespace is collapsed, and they are cut to
MAX_NAME / MAX_TAG characters.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import xml.sax
import xml.sax.handler
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ..errors import Problem
from ..web import UNSAFE_CHARS, toml_string

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_OUTLINES",
    "ImportedFeed",
    "OpmlImport",
    "OpmlProblem",
    "export_opml",
    "import_opml",
    "import_opml_file",
    "normalise_url",
    "render_feeds_toml",
    "slugify",
    "toml_string",
]

MAX_BYTES = 10 * 2**20  # an OPML file is refused past this (a feed body's default cap too)
MAX_DEPTH = 64  # nested elements; real exports nest folders two or three deep
MAX_OUTLINES = 50_000  # outlines in one file; a heavy reader's export has a few thousand
MAX_PROBLEMS = 100  # listed one by one; the rest are counted in one last problem
MAX_NAME = 200  # a feed name is cut to this
MAX_TAG = 100  # a tag is cut to this

# Controls, bidi marks and overrides, line/paragraph separators: never in a name or tag.
# What XML 1.0 cannot carry at all, not even as a character reference.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ATTRIBUTES = frozenset({"title", "text", "xmlurl", "htmlurl", "url", "type", "category"})  # read
_FEED_ROOTS = {"rss", "feed", "rdf:rdf", "rdf"}


@dataclass(frozen=True, slots=True)
class OpmlProblem:
    """Something in an OPML file that was not imported, or why none of it was.
    `line` is 1-based in the file; None when the problem is the file as a whole."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"

    def at(self, file: str | Path) -> Problem:
        """As a config Problem, printed `file:line: message` like `watchdesk check`'s."""
        return Problem(str(file), self.line, self.message)


@dataclass(frozen=True, slots=True)
class ImportedFeed:
    """One feed to add as a [[feed]] table. `line`: where its outline starts (0 if not
    read from a file)."""

    url: str
    name: str
    tags: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class OpmlImport:
    """What `import_opml` found. `fatal`: the file as a whole was refused (too big, not
    XML, not OPML, a DTD, nested too deep...) and `feeds` is empty; otherwise `problems`
    are outlines left out, and `feeds` is everything else."""

    feeds: tuple[ImportedFeed, ...] = ()
    problems: tuple[OpmlProblem, ...] = ()
    already_configured: int = 0  # outlines whose feed the config already has
    repeated: int = 0  # outlines repeating a feed earlier in the file (their tags merged)
    fatal: bool = False
    title: str = ""  # the file's <head><title>, cleaned

    @property
    def skipped(self) -> int:
        """Duplicates skipped, of configured feeds and within the file."""
        return self.already_configured + self.repeated


class ExportableFeed(Protocol):
    """A FeedConfig, an ImportedFeed: what export_opml needs of a feed."""

    @property
    def url(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> Sequence[str]: ...


# ---- import ---------------------------------------------------------------------------


def import_opml_file(
    path: Path,
    *,
    configured_urls: Iterable[str] = (),
    configured_names: Iterable[str] = (),
    tag: str | None = None,
) -> OpmlImport:
    """`import_opml` of a file, reading at most MAX_BYTES + 1 bytes of it; a file that
    cannot be read is a fatal problem, not an exception."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        return _refused(None, f"cannot read {path}: {e.strerror or e}")
    return import_opml(data, configured_urls=configured_urls, configured_names=configured_names, tag=tag)


def import_opml(
    data: bytes,
    *,
    configured_urls: Iterable[str] = (),
    configured_names: Iterable[str] = (),
    tag: str | None = None,
) -> OpmlImport:
    """The feeds an OPML file lists, ready for `render_feeds_toml`.

    `configured_urls`: the URLs of the feeds already configured; an outline whose xmlUrl
    is one of them (compared by `normalise_url`) is skipped and counted, and so is one
    repeating a feed earlier in the file (readers list a feed once per folder it is in:
    the repeat's tags are added to the first). `configured_names`: the names already
    taken; an imported feed whose name is taken (or repeats an earlier one's) is renamed
    "Name (host)", else "Name (2)", since feed names are unique. `tag` (`--tag T`): a
    tag added to every imported feed, as written (blank is a fatal problem).

    The CLI (`watchdesk opml import FILE [--into feeds/imported.toml] [--tag T]`) should
    print each problem as `FILE:LINE: message` (`problem.at(FILE)`) on stderr; when
    `result.fatal`, print "nothing imported" and exit 2. Otherwise append
    `render_feeds_toml(result.feeds, comment=...)` to the --into file (when there are
    feeds) and print one line, e.g. "imported 12 feeds into feeds/imported.toml (skipped
    3 already configured, 1 listed twice; 2 outlines not imported, see above)", or
    "nothing new to import (...)" when `result.feeds` is empty; exit 0.
    """
    extra: str | None = None
    if tag is not None:
        extra = _clean(tag)[:MAX_TAG].rstrip()
        if not extra:
            return _refused(None, "the tag to add to every imported feed (--tag) is blank")
    if len(data) > MAX_BYTES:
        size = "more than " + _mb(MAX_BYTES) if len(data) == MAX_BYTES + 1 else _mb(len(data))
        return _refused(None, f"the file is {size}: an OPML file may be at most {_mb(MAX_BYTES)}")
    # Here, not at the top: xml.sax.expatreader pulls in urllib.request (~30 ms where
    # nothing has loaded it yet), and only this function needs it.
    from defusedxml import DefusedXmlException
    from defusedxml.expatreader import DefusedExpatParser

    data, line_offset = _trim_start(bytes(data))
    reader = _Reader()
    parser = DefusedExpatParser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    parser.setContentHandler(reader)
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setFeature(xml.sax.handler.feature_external_pes, False)
    try:
        parser.parse(io.BytesIO(data))  # parse, not feed: it hands the reader its locator
    except _Refusal as e:
        return _refused(e.line + line_offset, e.message)
    except DefusedXmlException:
        line = reader.line() + line_offset
        return _refused(
            line,
            "<!DOCTYPE> is not allowed in an OPML file: DTDs and entities are refused"
            " (they are how XML bombs and local-file reads are made)",
        )
    except xml.sax.SAXParseException as e:
        return _refused((e.getLineNumber() or 1) + line_offset, f"not well-formed XML: {e.getMessage()}")
    except (xml.sax.SAXException, ValueError, LookupError) as e:  # e.g. an unknown encoding
        return _refused(reader.line() + line_offset or None, f"cannot be read as XML: {e}")
    if not reader.root:
        return _refused(None, "the file is empty: no OPML in it")
    if not reader.body_seen:
        return _refused(None, "no <body> in this OPML file: it lists no feeds")
    return _collect(reader, line_offset, set(configured_urls), set(configured_names), extra)


def _collect(
    reader: _Reader, offset: int, configured_urls: set[str], taken: set[str], extra: str | None
) -> OpmlImport:
    configured = {normalise_url(u) for u in configured_urls}
    problems: list[OpmlProblem] = []
    feeds: dict[str, _Draft] = {}
    slugs: dict[str, str] = {}
    already = repeated = 0
    for outline in reader.outlines:
        line = outline.line + offset
        attrs = outline.attrs
        label = _label(attrs)
        quoted = f'outline "{label[:60]}"' if label else "an outline"
        xml_url = attrs.get("xmlurl", "").strip()
        if not xml_url:
            if outline.has_children:
                continue  # a folder: its outlines carry its tag
            if attrs.get("type", "").strip().lower() == "include":
                where = _one_line(attrs.get("url", ""))
                problems.append(
                    OpmlProblem(
                        line, f"{quoted} includes another OPML file ({where}): import that file itself"
                    )
                )
            elif page := attrs.get("htmlurl", "").strip() or attrs.get("url", "").strip():
                hint = f"htmlUrl only: run watchdesk discover {_one_line(page)}"
                problems.append(OpmlProblem(line, f"{quoted} has no xmlUrl ({hint})"))
            continue  # an outline with nothing in it: a note, an empty folder
        checked = _feed_url(xml_url)
        if isinstance(checked, str):
            problems.append(OpmlProblem(line, f"{quoted}: xmlUrl {checked}"))
            continue
        url, key, host = checked
        categories = _categories(attrs.get("category", ""))
        folder_tags = [
            slugs.get(f) or slugs.setdefault(f, slugify(f)) for f in outline.folders if f not in categories
        ]
        tags = _unique_list([*folder_tags, *categories, *([extra] if extra else [])])
        if key in configured:
            already += 1
        elif key in feeds:
            repeated += 1
            feeds[key].tags = _unique_list([*feeds[key].tags, *tags])
        else:
            name = _unique_name(label[:MAX_NAME].rstrip() or host, host, taken)
            taken.add(name)
            feeds[key] = _Draft(url, name, tags, line)
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], OpmlProblem(None, f"and {more} more outlines not imported")]
    return OpmlImport(
        feeds=tuple(ImportedFeed(d.url, d.name, tuple(d.tags), d.line) for d in feeds.values()),
        problems=tuple(problems),
        already_configured=already,
        repeated=repeated,
        title=reader.title_text(),
    )


@dataclass(slots=True)
class _Draft:
    url: str
    name: str
    tags: list[str]
    line: int


@dataclass(slots=True)
class _Outline:
    line: int
    attrs: dict[str, str]
    folders: tuple[str, ...]  # the labels of the folders it sits in, outermost first
    has_children: bool = False


@dataclass(slots=True)
class _Open:
    """An element being read: its name, and for an outline what its children inherit."""

    tag: str
    outline: _Outline | None = None
    folders: tuple[str, ...] = ()


class _Refusal(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class _Reader(xml.sax.handler.ContentHandler):
    """Collects the outlines under <body>, checking the bounds as elements open (so a
    hostile file is given up on at once, not after it has all been read)."""

    def __init__(self) -> None:
        super().__init__()
        self._locator: xml.sax.xmlreader.Locator | None = None
        self.root = ""
        self.body_seen = False
        self.outlines: list[_Outline] = []
        self._open: list[_Open] = []
        self._in_title = False
        self._title: list[str] = []

    def setDocumentLocator(self, locator: xml.sax.xmlreader.Locator) -> None:
        self._locator = locator

    def line(self) -> int:
        return (self._locator.getLineNumber() or 0) if self._locator else 0

    def startElement(self, name: str, attrs: xml.sax.xmlreader.AttributesImpl) -> None:
        tag = name.lower()
        path = [o.tag for o in self._open]
        if len(path) >= MAX_DEPTH:
            raise _Refusal(self.line(), f"elements nested more than {MAX_DEPTH} deep: refused")
        if not path:
            self.root = tag
            if tag != "opml":
                hint = " (a feed: add its URL as a [[feed]] url instead)" if tag in _FEED_ROOTS else ""
                raise _Refusal(self.line(), f"not an OPML file: its root element is <{name}>{hint}")
        if path == ["opml"] and tag == "body":
            self.body_seen = True
        self._in_title = path == ["opml", "head"] and tag == "title" and not self._title
        parent = self._open[-1] if self._open else None
        folders = parent.folders if parent else ()
        if tag != "outline" or path[1:2] != ["body"]:
            self._open.append(_Open(tag, None, folders))
            return
        if len(self.outlines) >= MAX_OUTLINES:
            raise _Refusal(self.line(), f"more than {MAX_OUTLINES} outlines: refused")
        if parent is not None and parent.outline is not None:
            parent.outline.has_children = True
        kept = {k.lower(): v for k, v in attrs.items() if k.lower() in _ATTRIBUTES}
        outline = _Outline(self.line(), kept, folders)
        self.outlines.append(outline)
        label = "" if outline.attrs.get("xmlurl", "").strip() else _label(outline.attrs)
        self._open.append(_Open(tag, outline, (*folders, label) if label else folders))

    def endElement(self, name: str) -> None:
        if self._open:
            self._open.pop()
        self._in_title = False

    def characters(self, content: str) -> None:
        if self._in_title and sum(map(len, self._title)) < 4 * MAX_NAME:
            self._title.append(content)

    def title_text(self) -> str:
        return _clean("".join(self._title))[:MAX_NAME].rstrip()


def _refused(line: int | None, message: str) -> OpmlImport:
    return OpmlImport(problems=(OpmlProblem(line, message),), fatal=True)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB")


def _trim_start(data: bytes) -> tuple[bytes, int]:
    """A UTF-8 BOM and blank lines before `<?xml`, which some exporters write and expat
    refuses: dropped. Returns the bytes and the number of lines dropped."""
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    stripped = body.lstrip(b" \t\r\n")
    if len(stripped) == len(body) or not stripped.startswith(b"<?xml"):
        return data, 0
    return stripped, body[: len(body) - len(stripped)].count(b"\n")


def _label(attrs: dict[str, str]) -> str:
    """An outline's title, else its text, cleaned."""
    return _clean(attrs.get("title", "")) or _clean(attrs.get("text", ""))


def _clean(text: str) -> str:
    return " ".join(UNSAFE_CHARS.sub(" ", text).split())


def _one_line(text: str) -> str:
    return _clean(text)[:300]


def _categories(value: str) -> list[str]:
    """OPML 2.0 `category`: comma-separated, each "/tag" (or a "/path/like/this", kept
    after its first slash)."""
    tags = []
    for item in value.split(","):
        cleaned = _clean(item)
        cleaned = _clean(cleaned[1:] if cleaned.startswith("/") else cleaned)[:MAX_TAG].rstrip()
        if cleaned:
            tags.append(cleaned)
    return tags


def slugify(label: str) -> str:
    """A folder's name as a tag: lower case, its words (letters, digits, and their
    accents) joined by "-": "Local News & Politics" -> "local-news-politics",
    "Österreich" -> "österreich". "" when it has no word at all."""
    text = unicodedata.normalize("NFKC", label).lower()
    kept = "".join(ch if ch.isalnum() or unicodedata.category(ch)[0] == "M" else " " for ch in text)
    return "-".join(kept.split())[:MAX_TAG].strip("-")


def _unique_list(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def _unique_name(name: str, host: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    if f"{name} ({host})" not in taken:
        return f"{name} ({host})"
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def _feed_url(raw: str) -> tuple[str, str, str] | str:
    """(the URL as the config will have it, its normalise_url form, its host), or what is
    wrong with it."""
    if _CONTROLS.search(raw):
        return f"{_shown(raw)} has control characters in it"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return f"{_shown(raw)} is not a URL"
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        hint = " (write it with https://)" if scheme == "feed" else ""
        return f"{_shown(raw)} is not an http(s) URL{hint}"
    host = parts.hostname
    if not host or not raw[len(scheme) :].startswith("://"):
        return f"{_shown(raw)} has no host"
    return scheme + raw[len(scheme) :], _normalised(parts, port, host), host


def _shown(raw: str) -> str:
    return f'"{_one_line(raw)[:200]}"'


def normalise_url(url: str) -> str:
    """A URL as compared for duplicates: scheme and host in lower case, no default port,
    "/" for an empty path, no fragment. Userinfo, path and query stay as written."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    return _normalised(parts, port, parts.hostname or "")


def _normalised(parts: SplitResult, port: int | None, host: str) -> str:
    scheme = parts.scheme.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and _DEFAULT_PORTS.get(scheme) != port:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if "@" in parts.netloc else host
    path = parts.path or ("/" if netloc else "")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


# ---- TOML -----------------------------------------------------------------------------


def render_feeds_toml(feeds: Iterable[ImportedFeed], *, comment: str | None = None) -> str:
    """`[[feed]]` tables (url, name, tags when there are any), one blank line between,
    ending in a newline: ready to append to a feeds file or the main config (after a
    newline when that file does not end with one). `comment`, e.g.
    "imported from subscriptions.opml on 2026-01-05", goes first as `# ` lines.
    "" when there are no feeds and no comment."""
    blocks = []
    if comment is not None:
        blocks.append(
            "".join(f"# {UNSAFE_CHARS.sub(' ', line)}".rstrip() + "\n" for line in comment.splitlines())
        )
    for feed in feeds:
        lines = ["[[feed]]", f"url = {toml_string(feed.url)}", f"name = {toml_string(feed.name)}"]
        if feed.tags:
            lines.append(f"tags = [{', '.join(toml_string(t) for t in feed.tags)}]")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


# ---- export ---------------------------------------------------------------------------


def export_opml(
    feeds: Iterable[ExportableFeed],
    tag: str | None = None,
    *,
    title: str | None = None,
    now: datetime | None = None,
) -> str:
    """OPML 2.0 listing `feeds` (only those tagged `tag`, when given): a feed in the folder
    of its first tag, with all its tags in `category` ("/tag1,/tag2"), untagged feeds at
    the top level. `import_opml` reads it back to the same urls, names and tags (a tag
    holding a comma comes back as two: `category` cannot say otherwise). Characters XML
    cannot hold at all (controls other than tab and newline) are left out.

    The CLI (`watchdesk opml export [--tag T]`) should print the result as is (UTF-8) on
    stdout and nothing else there, passing every configured feed (disabled ones too: an
    export is the subscription list). With --tag T matching no feed, it should say
    "no feed is tagged T" on stderr and exit 1 rather than print an empty list."""
    chosen = [f for f in feeds if tag is None or tag in f.tags]
    when = (now or datetime.now(UTC)).astimezone(UTC)
    title = title if title is not None else "watchdesk feeds" + (f" tagged {tag}" if tag else "")
    folders: dict[str, list[ExportableFeed]] = {}
    top: list[ExportableFeed] = []
    for feed in chosen:
        if feed.tags:
            folders.setdefault(feed.tags[0], []).append(feed)
        else:
            top.append(feed)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{_xml(title)}</title>",
        f"    <dateCreated>{format_datetime(when, usegmt=True)}</dateCreated>",
        "  </head>",
        "  <body>",
    ]
    out += [f"    {_feed_outline(feed)}" for feed in top]
    for folder, members in folders.items():
        out.append(f'    <outline text="{_xml(folder)}" title="{_xml(folder)}">')
        out += [f"      {_feed_outline(feed)}" for feed in members]
        out.append("    </outline>")
    out += ["  </body>", "</opml>", ""]
    return "\n".join(out)


def _feed_outline(feed: ExportableFeed) -> str:
    attrs = f'type="rss" text="{_xml(feed.name)}" title="{_xml(feed.name)}" xmlUrl="{_xml(feed.url)}"'
    if feed.tags:
        attrs += f' category="{_xml(",".join("/" + t for t in feed.tags))}"'
    return f"<outline {attrs}/>"


def _xml(text: str) -> str:
    """Text for an attribute value or an element, quotes and whitespace kept exactly."""
    text = _NOT_XML.sub("", text)
    for ch, ref in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        text = text.replace(ch, ref)
    return text.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")
