"""Article page -> main text and metadata, via trafilatura. Pure; runs in the bounded worker.

trafilatura is given a tree we parsed with its own loader (so encodings are detected the
way it does) after we read title, date and language from the page's markup ourselves:
that costs about 0.7 ms a page, where trafilatura's `with_metadata` costs +35%.
Comments are kept in the text, as stock `trafilatura.extract` does.

libxml2 stops reading a page for good at an element nested deeper than 256 (trafilatura's
parser): the rest of the page, and often its whole article, would be missing. Such a page
is parsed again allowing 2048 levels; one deeper still gives no text and a reason, so the
entry keeps the feed's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.etree
import lxml.html
import trafilatura
import trafilatura.utils
from trafilatura.utils import decode_file, load_html, repair_faulty_html

MAX_PAGE_BYTES = 2 * 2**20  # trafilatura's cost grows with the page: cap what it sees
MAX_TEXT = 500_000
_SPACE = re.compile(r"[ \t\r\f\v]+")
# trafilatura's parser, allowing 2048 levels of nesting instead of 256 (huge_tree also lifts
# libxml2's 10 MB text-node limit, which MAX_PAGE_BYTES keeps out of reach).
_DEEP_PARSER = lxml.html.HTMLParser(
    collect_ids=False,
    default_doctype=False,
    encoding="utf-8",
    remove_comments=True,
    remove_pis=True,
    huge_tree=True,
)
TOO_DEEP = "page nested deeper than 2048 elements: libxml2 stopped reading it"

_TITLE_XPATHS = (
    'string(//meta[@property="og:title"]/@content)',
    'string(//meta[@name="twitter:title"]/@content)',
    "string(//head/title)",
    "string(//h1)",
)
_DATE_XPATHS = (
    'string(//meta[@property="article:published_time"]/@content)',
    'string(//meta[@itemprop="datePublished"]/@content)',
    'string(//*[@itemprop="datePublished"]/@datetime)',
    'string(//meta[@name="date"]/@content)',
    'string(//meta[@name="pubdate"]/@content)',
    "string(//time[@datetime][1]/@datetime)",
)
_LANG_XPATHS = (
    "string(/html/@lang)",
    'string(//meta[@http-equiv="content-language"]/@content)',
    'string(//meta[@property="og:locale"]/@content)',
)


@dataclass(frozen=True, slots=True)
class Extraction:
    text: str  # main text ("" when none was found)
    title: str | None = None
    date: str | None = None  # as the page states it (ISO 8601 usually)
    language: str | None = None  # e.g. "en", "de"
    reason: str | None = None  # why there is no text, when there is none
    truncated: bool = False  # the page was over MAX_PAGE_BYTES and was cut


def _first(tree: object, xpaths: tuple[str, ...], limit: int) -> str | None:
    for xpath in xpaths:
        value = " ".join(str(tree.xpath(xpath)).split())  # type: ignore[attr-defined]
        if value:
            return value[:limit]
    return None


def _language(tree: object) -> str | None:
    value = _first(tree, _LANG_XPATHS, 35)
    if not value:
        return None
    return value.replace("_", "-").split("-")[0].lower() or None


def _halted(parser: lxml.etree._FeedParser) -> bool:
    """Whether the parser's last run stopped at a fatal error (its tree is cut short there).

    The error log is the parser's, not the thread's: in the extraction worker one page is
    parsed at a time; two threads sharing a process could at worst cost a needless retry."""
    return any(e.level >= lxml.etree.ErrorLevels.FATAL for e in parser.error_log)


def _load_deep(html: str) -> tuple[lxml.html.HtmlElement, bool] | None:
    """load_html's parse of the decoded page with 2048 levels allowed, and whether libxml2
    still stopped; None if it cannot be parsed so."""
    html = repair_faulty_html(html, html[:50].lower())
    try:
        try:
            tree = lxml.html.fromstring(html, parser=_DEEP_PARSER)
        except ValueError:  # "Unicode strings with encoding declaration are not supported."
            tree = lxml.html.fromstring(html.encode("utf-8", "surrogatepass"), parser=_DEEP_PARSER)
    except (lxml.etree.LxmlError, ValueError):
        return None
    return tree, _halted(_DEEP_PARSER)


def extract_page(page: bytes, url: str | None = None, *, max_bytes: int = MAX_PAGE_BYTES) -> Extraction:
    """The main text of an HTML page, with its title, date and language when stated."""
    truncated = len(page) > max_bytes
    html = decode_file(page[:max_bytes])  # what load_html does first with bytes
    tree = load_html(html)
    if tree is None:
        return Extraction("", reason="not an HTML page", truncated=truncated)
    deep = _halted(trafilatura.utils.HTML_PARSER)
    if deep:
        tree, deep = _load_deep(html) or (tree, True)
    title = _first(tree, _TITLE_XPATHS, 1000)
    date = _first(tree, _DATE_XPATHS, 64)
    language = _language(tree)
    if deep:  # what was read is a stump: trafilatura is slow on it, and finds too little
        return Extraction("", title, date, language, TOO_DEEP, truncated)
    document = trafilatura.bare_extraction(tree, url=url)  # a Document (as_dict is False)
    text = ""
    if document is not None and not isinstance(document, dict):
        parts = [document.text or "", document.comments or ""]
        text = "\n".join(p for p in parts if p)
    text = "\n".join(_SPACE.sub(" ", line).strip() for line in text.splitlines()).strip()[:MAX_TEXT]
    if not text:
        return Extraction("", title, date, language, "no main text found", truncated)
    return Extraction(text, title, date, language, None, truncated)
