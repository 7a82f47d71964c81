"""parse_feed on hostile bytes: it never raises, and what it returns can be stored.

A seeded mutator (random.Random(seed string), so every run makes the same variants)
damages small feeds: the RSS 2.0, Atom and RDF feeds below, and -- when
../shared/corpus is present -- every feed of the corpus (larger ones cut to their first
16 KB). Mutations are byte-level (bad character references of each kind, NUL bytes,
invalid UTF-8, truncation, bit flips, lying encoding declarations and Content-Types,
BOMs, re-encoding as UTF-16/32) and structural (doubled and removed tags, copied
spans, junk dates and links). A failure names the seed and its mutations:
`variant(label, document, i)` rebuilds that input. 10,040 variants without the corpus,
about 13,000 with it: about 30 s of one core, parse_feed called in-process.

The regression tests at the end pin one known crash class each and check that the
good entries survive with U+FFFD where the bad reference was.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import pytest
from conftest import CORPUS

import watchdesk.ingest.parse as parse_module
from watchdesk.ingest.parse import parse_feed
from watchdesk.models import ParsedFeed

RSS20 = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
<title>Caf\u00e9 Times \u2014 news</title>
<link>https://example.org/</link>
<description>Daily &amp; nightly</description>
<lastBuildDate>Mon, 01 Jun 2026 10:00:00 GMT</lastBuildDate>
<ttl>60</ttl>
<item>
<title>Police seize pills in Ohio</title>
<link>https://example.org/news/1?utm_source=rss</link>
<guid isPermaLink="false">tag:example.org,2026:1</guid>
<pubDate>Mon, 01 Jun 2026 09:00:00 GMT</pubDate>
<dc:creator>A. Writer</dc:creator>
<description>&lt;p&gt;Officers &lt;b&gt;seized&lt;/b&gt; pills &amp;amp; cash&lt;/p&gt;</description>
<content:encoded><![CDATA[<p>Full text &#169; 2026, <a href="/x">more</a></p>]]></content:encoded>
</item>
<item>
<title>Second story: na\u00efve r\u00e9sum\u00e9</title>
<link>https://example.org/news/2</link>
<guid>https://example.org/news/2</guid>
<pubDate>Sun, 31 May 2026 18:30:00 +0200</pubDate>
<description>Plain text summary two</description>
<enclosure url="https://example.org/a.mp3" length="1234" type="audio/mpeg"/>
</item>
<item>
<title>Third, undated</title>
<description>No link, no guid, just text \u65e5\u672c</description>
</item>
</channel>
</rss>
"""

ATOM10 = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
<title type="text">Atom \u00e9dition</title>
<id>urn:uuid:60a76c80-d399-11d9-b93c-0003939e0af6</id>
<updated>2026-06-01T10:00:00Z</updated>
<link rel="self" href="https://example.org/atom.xml"/>
<author><name>Desk</name></author>
<entry>
<title type="html">Storm &lt;em&gt;warning&lt;/em&gt;</title>
<id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
<link rel="alternate" href="https://example.org/storm"/>
<updated>2026-06-01T09:00:00Z</updated>
<published>2026-06-01T08:00:00+02:00</published>
<summary type="html">&lt;p&gt;Winds of 120 km/h&lt;/p&gt;</summary>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Stay <b>home</b>.</p></div></content>
</entry>
<entry>
<title>Flood update</title>
<id>tag:example.org,2026:flood</id>
<link href="https://example.org/flood?id=2#top"/>
<updated>2026-05-31T22:15:30.123+00:00</updated>
<summary>Rivers rising \u2191</summary>
<author><name>B. Reporter</name><email>b@example.org</email></author>
</entry>
<entry>
<title>Third entry</title>
<id>tag:example.org,2026:third</id>
<updated>2026-05-30T00:00:00Z</updated>
<content type="text">Only content, no summary</content>
</entry>
</feed>
"""

RDF = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://example.org/rdf">
<title>RDF \u00fcber feed</title>
<link>https://example.org/</link>
<description>RSS 1.0</description>
<items><rdf:Seq>
<rdf:li rdf:resource="https://example.org/r1"/>
<rdf:li rdf:resource="https://example.org/r2"/>
</rdf:Seq></items>
</channel>
<item rdf:about="https://example.org/r1">
<title>RDF one</title>
<link>https://example.org/r1</link>
<description>First &amp; foremost</description>
<dc:date>2026-06-01T07:00:00Z</dc:date>
<dc:creator>C. Author</dc:creator>
</item>
<item rdf:about="https://example.org/r2">
<title>RDF two</title>
<link>https://example.org/r2</link>
<description>Second</description>
<dc:date>2026-05-31</dc:date>
</item>
<item rdf:about="https://example.org/r3">
<title>RDF three</title>
<link>https://example.org/r3</link>
</item>
</rdf:RDF>
"""

# An older RSS, really in ISO-8859-1 as it says.
RSS091 = """<?xml version="1.0" encoding="iso-8859-1"?>
<rss version="0.91"><channel>
<title>Vieux flux fran\u00e7ais</title>
<link>http://example.org/</link>
<description>0.91</description>
<item><title>Premi\u00e8re nouvelle</title><link>http://example.org/1</link>
<description>\u00c9t\u00e9 chaud</description></item>
<item><title>Deuxi\u00e8me</title><link>http://example.org/2</link></item>
</channel></rss>
""".encode("iso-8859-1")

BUILTIN: dict[str, bytes] = {
    "rss20": RSS20.encode("utf-8"),
    "atom10": ATOM10.encode("utf-8"),
    "rdf": RDF.encode("utf-8"),
    "rss091-latin1": RSS091,
}
BUILTIN_VARIANTS = 2_000  # per built-in feed, of 1-3 mutations each
SINGLE_VARIANTS = 30  # per built-in feed and mutation, alone: with the above, 10,040 corpus or not
CORPUS_VARIANTS = 10  # per corpus feed (~300 feeds)
CORPUS_MAX_BYTES = 16_384  # larger corpus documents are cut to this many bytes

# ---- the mutator ----------------------------------------------------------------------

BAD_CHARREFS = [
    # surrogates
    b"&#xD800;",
    b"&#xDFFF;",
    b"&#xdbff;",
    b"&#55296;",
    b"&#57343;",
    b"&#x0000D800;",
    # past U+10FFFF
    b"&#x110000;",
    b"&#1114112;",
    b"&#99999999999;",
    b"&#xFFFFFFFFFFFFFFFFFFFF;",
    b"&#" + b"9" * 5000 + b";",  # over int()'s 4300-digit limit
    b"&#x" + b"f" * 300 + b";",
    # NUL and other code points XML forbids
    b"&#0;",
    b"&#x0;",
    b"&#00000;",
    b"&#1;",
    b"&#x1F;",
    b"&#x8;",
    b"&#xFFFE;",
    b"&#xFFFF;",
    b"&#65535;",
    # without the semicolon, or in odd spellings
    b"&#xD800",
    b"&#0",
    b"&#X110000;",
    b"&#;",
    b"&#x;",
    b"&#-1;",
    # escaped once: a reference inside HTML content
    b"&amp;#xD800;",
    b"&amp;#99999999999;",
    b"&amp;#0;",
    # inside CDATA
    b"<![CDATA[&#xD800; &#0;]]>",
]
BAD_UTF8 = [
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf8\x88\x80\x80\x80",
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",
    b"\x80",
    b"\xbf\xbf",
    b"\xe2\x82",  # cut short
    b"\xff",
    b"\xfe\xff",
    b"\x01\x02\x1b\x7f",
    b"\x0b\x0c",
]
ENCODING_NAMES = [
    "utf-8",
    "UTF-8",
    "utf-16",
    "utf-16le",
    "utf-16be",
    "utf-32",
    "ucs-4",
    "iso-10646-ucs-2",
    "cp037",
    "ebcdic-cp-us",
    "utf-7",
    "undefined",
    "idna",
    "punycode",
    "unicode_escape",
    "raw_unicode_escape",
    "hex",
    "base64",
    "rot13",
    "zlib",
    "bz2",
    "x-nonexistent",
    "",
    "utf-8\x00",
    "u" * 300,
    "shift_jis",
    "big5",
    "gb2312",
    "euc-jp",
    "koi8-r",
    "windows-1252",
    "iso-8859-1",
    "us-ascii",
    "mbcs",
]
REENCODINGS = [
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "utf-32-le",
    "utf-32-be",
    "latin-1",
    "cp1252",
    "shift_jis",
    "big5",
    "cp037",
    "utf-7",
    "koi8-r",
]
BOMS = [
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xff\xfe\x00\x00",
    b"\x00\x00\xfe\xff",
    b"\xef\xbb\xbf\xef\xbb\xbf",
    b"\xff",
    b"\xef\xbb",
    b"\xfe\xff\x00\x00",
]
CONTENT_TYPES = [
    "application/rss+xml; charset=utf-16",
    "application/xml; charset=undefined",
    "application/atom+xml; charset=idna",
    "text/xml; charset=utf-7",
    "text/xml",
    "text/html; charset=x-bogus",
    "text/plain",
    "application/xml; charset=unicode_escape",
    "application/octet-stream",
    "application/xml; charset=",
    'application/rss+xml; charset="utf-8',
]
JUNK_DATES = [
    "Mon, 01 Jan 99999999999 00:00:00 GMT",
    "Thu, 31 Dec 9999 23:59:59 +9999",
    "Fri, 01 Jan 0000 00:00:00 GMT",
    "-0001-01-01T00:00:00Z",
    "-99999999999-01-01",
    "9999-12-31T23:59:60+99:99",
    "10000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "2026-13-45T25:61:61Z",
    "2026-02-30",
    "99999999999999999999",
    "-99999999999999999999",
    "1e308",
    "Mon, 32 Foo 2026 99:99:99 PST",
    "2026-06-01T10:00:00.99999999999999999999Z",
    "\u0663\u0660\u0662\u0666-06-01",  # Arabic-Indic digits
    "",
    " ",
    "Sat, 01 Jan 1 00:00:00 -0000",
    "Tue, 19 Jan 2038 03:14:08 GMT",
    "1969-12-31T23:59:59Z",
]
JUNK_LINKS = [
    "http://example.org:99999/a",
    "http://example.org:-1/",
    "http://example.org:0/",
    "https://example.org:65536/x",
    "http:///x",
    "http://",
    "//",
    "",
    " ",
    "http://[::1",
    "http://[zz]/",
    "http://[::1]:99999/",
    "http://user:pa@ss@example.org:80:80/",
    "http://%zz%00/",
    "http://xn--/",
    "http://" + "a" * 300 + ".org/" + "p" * 3000,
    "javascript:alert(1)",
    "data:text/html,<b>x</b>",
    "mailto:",
    "file:///etc/passwd",
    "http://example.org/?utm_source=&=&&a=%ZZ&b=%ED%A0%80",
    "http://example.org/&#xD800;/&#0;",
    "http://ex\u00e4mple.org/\u2603",
    "\\\\server\\share",
    "http://example.org/\t\n\r",
]
DATE_TAGS = re.compile(
    rb"(<(pubDate|updated|published|dc:date|lastBuildDate|created|issued|modified)\b[^>]*>)(.*?)(</\2>)", re.S
)
LINK_TAGS = re.compile(rb"(<(link|guid|id|comments)\b[^>/]*>)(.*?)(</\2>)", re.S)
LINK_ATTRS = re.compile(rb'((?:href|url|rdf:about|rdf:resource)=")([^"]*)(")')
TAG = re.compile(rb"<[^<>]{1,200}>")
XML_DECL = re.compile(rb"^(.{0,8})<\?xml[^>]*\?>", re.S)

Mutation = Callable[[random.Random, bytes], bytes]


def _spot(rng: random.Random, doc: bytes) -> int:
    """A position to insert at: right after a tag half the time, anywhere otherwise."""
    if rng.random() < 0.5:
        ends = [m.end() for m in TAG.finditer(doc)]
        if ends:
            return rng.choice(ends)
    return rng.randrange(len(doc) + 1)


def _insert(rng: random.Random, doc: bytes, piece: bytes) -> bytes:
    at = _spot(rng, doc)
    return doc[:at] + piece + doc[at:]


def bad_charref(rng: random.Random, doc: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        doc = _insert(rng, doc, rng.choice(BAD_CHARREFS))
    return doc


def nul_bytes(rng: random.Random, doc: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        doc = _insert(rng, doc, b"\x00" * rng.choice((1, 1, 2, 7)))
    return doc


def bad_utf8(rng: random.Random, doc: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        doc = _insert(rng, doc, rng.choice(BAD_UTF8))
    return doc


def truncate(rng: random.Random, doc: bytes) -> bytes:
    return doc[: rng.randrange(len(doc) + 1)]


def flip_bytes(rng: random.Random, doc: bytes) -> bytes:
    if not doc:
        return doc
    data = bytearray(doc)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] = rng.randrange(256) if rng.random() < 0.5 else data[i] ^ (1 << rng.randrange(8))
    return bytes(data)


def delete_span(rng: random.Random, doc: bytes) -> bytes:
    if not doc:
        return doc
    start = rng.randrange(len(doc))
    return doc[:start] + doc[start + rng.randint(1, 64) :]


def copy_span(rng: random.Random, doc: bytes) -> bytes:
    if not doc:
        return doc
    start = rng.randrange(len(doc))
    piece = doc[start : start + rng.randint(1, 400)]
    return _insert(rng, doc, piece * rng.choice((1, 1, 2, 5)))


def double_tag(rng: random.Random, doc: bytes) -> bytes:
    tags = list(TAG.finditer(doc))
    if not tags:
        return doc
    m = rng.choice(tags)
    return doc[: m.end()] + m.group() * rng.choice((1, 1, 3, 20)) + doc[m.end() :]


def remove_tag(rng: random.Random, doc: bytes) -> bytes:
    tags = list(TAG.finditer(doc))
    if not tags:
        return doc
    m = rng.choice(tags)
    return doc[: m.start()] + doc[m.end() :]


def deep_nesting(rng: random.Random, doc: bytes) -> bytes:
    depth = rng.choice((20, 100, 300))
    name = rng.choice((b"div", b"item", b"entry", b"x:y"))
    return _insert(rng, doc, b"<" + name + b">" * depth + b"t" + (b"</" + name + b">") * (depth // 2))


def declare_encoding(rng: random.Random, doc: bytes) -> bytes:
    decl = b'<?xml version="1.0" encoding="' + rng.choice(ENCODING_NAMES).encode("latin-1") + b'"?>'
    m = XML_DECL.match(doc)
    if m:
        return doc[: m.start()] + m.group(1) + decl + doc[m.end() :]
    return decl + b"\n" + doc


def reencode(rng: random.Random, doc: bytes) -> bytes:
    """The same text in another encoding; the declaration (if any) left as it was: a lie."""
    text = doc.decode("utf-8", "replace")
    out = text.encode(rng.choice(REENCODINGS), "replace")
    return rng.choice(BOMS) + out if rng.random() < 0.3 else out


def add_bom(rng: random.Random, doc: bytes) -> bytes:
    return rng.choice(BOMS) + doc


def junk_dates(rng: random.Random, doc: bytes) -> bytes:
    junk = rng.choice(JUNK_DATES).encode()
    if DATE_TAGS.search(doc) and rng.random() < 0.8:
        return DATE_TAGS.sub(
            lambda m: m.group(1) + (junk if rng.random() < 0.6 else m.group(3)) + m.group(4), doc
        )
    return re.sub(
        rb"(<item\b[^>]*>|<entry\b[^>]*>)", lambda m: m.group(1) + b"<pubDate>" + junk + b"</pubDate>", doc
    )


def junk_links(rng: random.Random, doc: bytes) -> bytes:
    def link() -> bytes:
        return rng.choice(JUNK_LINKS).encode()

    doc = LINK_TAGS.sub(
        lambda m: m.group(1) + (link() if rng.random() < 0.5 else m.group(3)) + m.group(4), doc
    )
    return LINK_ATTRS.sub(
        lambda m: m.group(1) + (link().replace(b'"', b"") if rng.random() < 0.5 else m.group(2)) + m.group(3),
        doc,
    )


def junk_entities(rng: random.Random, doc: bytes) -> bytes:
    piece = rng.choice(
        (b"&nbsp;", b"&bogus;", b"&", b"&amp", b"&#x41", b"&;", b"&" + b"a" * 300 + b";", b"&lt;<&gt;>")
    )
    if rng.random() < 0.2:
        dtd = b'<!DOCTYPE rss [<!ENTITY e "&#xD800;"><!ENTITY f "&e;&e;">]>'
        m = XML_DECL.match(doc)
        at = m.end() if m else 0
        return doc[:at] + dtd + _insert(rng, doc[at:], b"&e;&f;")
    return _insert(rng, doc, piece)


def huge_numbers(rng: random.Random, doc: bytes) -> bytes:
    number = rng.choice((b"99999999999999999999", b"-1", b"-99999999999", b"1e999", b"NaN", b"0x10"))
    piece = rng.choice(
        (
            b"<ttl>" + number + b"</ttl>",
            b'<enclosure url="http://example.org/e" length="' + number + b'" type="a/b"/>',
            b"<itunes:duration>" + number + b"</itunes:duration>",
            b'<media:content url="http://example.org/m" width="' + number + b'"/>',
        )
    )
    return _insert(rng, doc, piece)


MUTATIONS: dict[str, Mutation] = {
    f.__name__: f
    for f in (
        bad_charref,
        nul_bytes,
        bad_utf8,
        truncate,
        flip_bytes,
        delete_span,
        copy_span,
        double_tag,
        remove_tag,
        deep_nesting,
        declare_encoding,
        reencode,
        add_bom,
        junk_dates,
        junk_links,
        junk_entities,
        huge_numbers,
    )
}
# Order matters for some: re-encoding after inserting a bad reference hides it in UTF-16.
NAMES = sorted(MUTATIONS)


def variant(label: str, doc: bytes, i: int) -> tuple[bytes, str | None, list[str]]:
    """Variant `i` of `doc`: the bytes, a Content-Type (usually none), the mutations applied."""
    rng = random.Random(f"{label}:{i}")
    names = [rng.choice(NAMES) for _ in range(rng.choice((1, 1, 2, 2, 3)))]
    for name in names:
        doc = MUTATIONS[name](rng, doc)
    content_type = rng.choice(CONTENT_TYPES) if rng.random() < 0.15 else None
    return doc, content_type, names


# ---- the checks -----------------------------------------------------------------------


def _bad_text(value: object) -> str | None:
    """Why `value` could not be stored as text, or None when it can."""
    if not isinstance(value, str):
        return f"not a str: {type(value).__name__}"
    if "\x00" in value:
        return "contains NUL"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a surrogate"
    return None


def problems(feed: object) -> list[str]:
    """What is wrong with a parse_feed result; [] when it is fine."""
    if not isinstance(feed, ParsedFeed):
        return [f"returned {type(feed).__name__}, not ParsedFeed"]
    out: list[str] = []
    if not (feed.entries or feed.version or (feed.malformed and feed.malformed.strip())):
        out.append("no entries, no version and no malformed reason")
    for name, value in (("title", feed.title), ("malformed", feed.malformed), ("version", feed.version)):
        if value is not None and (why := _bad_text(value)):
            out.append(f"feed {name}: {why}")
    for entry in feed.entries:
        for name in ("key", "title", "summary", "content"):
            if why := _bad_text(getattr(entry, name)):
                out.append(f"entry {name}: {why}")
        for name in ("guid", "link", "author"):
            value = getattr(entry, name)
            if value is not None and (why := _bad_text(value)):
                out.append(f"entry {name}: {why}")
        published = entry.published
        if published is not None and (not isinstance(published, datetime) or published.tzinfo is None):
            out.append(f"entry published: {published!r} is not an aware datetime")
    return out


class Findings:
    """Problems found, each with the expression that rebuilds its input, and by class."""

    def __init__(self) -> None:
        self.total = 0
        self.failures: list[str] = []
        self.classes: Counter[str] = Counter()

    def check(self, where: str, body: bytes, content_type: str | None = None) -> None:
        self.total += 1
        try:
            found = problems(parse_feed(body, url="https://example.org/feed", content_type=content_type))
        except Exception as e:  # what the test is for: nothing may escape
            found = [f"raised {type(e).__name__}: {str(e)[:60]}"]
        for problem in found:
            self.classes[problem] += 1
            self.failures.append(f"{where}: {problem}")

    def report(self) -> str:
        lines = [f"{len(self.failures)} problems in {self.total} variants, by class:"]
        lines += [f"  {n:5d}  {kind}" for kind, n in self.classes.most_common(30)]
        lines.append("first ones:")
        lines += ["  " + f for f in self.failures[:15]]
        return "\n".join(lines)


def fuzz(findings: Findings, label: str, doc: bytes, count: int) -> None:
    """Parse `count` variants of `doc`."""
    for i in range(count):
        body, content_type, names = variant(label, doc, i)
        findings.check(
            f"variant({label!r}, doc, {i}) [{' + '.join(names)}; {content_type=}]", body, content_type
        )


def test_mutator_is_deterministic() -> None:
    for i in range(50):
        assert variant("rss20", BUILTIN["rss20"], i) == variant("rss20", BUILTIN["rss20"], i)
    assert len({variant("rss20", BUILTIN["rss20"], i)[0] for i in range(50)}) > 40


def test_builtin_feeds_parse_cleanly_unmutated() -> None:
    for label, doc in BUILTIN.items():
        feed = parse_feed(doc)
        assert feed.malformed is None, (label, feed.malformed)
        assert len(feed.entries) == (2 if label == "rss091-latin1" else 3), label
        assert not problems(feed), label


@pytest.mark.parametrize("label", sorted(BUILTIN))
def test_fuzz_builtin_feeds(label: str) -> None:
    findings = Findings()
    fuzz(findings, label, BUILTIN[label], BUILTIN_VARIANTS)
    assert not findings.failures, findings.report()


def _corpus_documents() -> dict[str, bytes]:
    index_path = CORPUS / "feeds" / "INDEX.json"
    if not index_path.is_file():
        pytest.skip(f"feed corpus not found at {CORPUS / 'feeds'} (set WATCHDESK_CORPUS to fuzz it too)")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    documents: dict[str, bytes] = {}
    for item in index["items"]:
        if item["kind"] != "feed":
            continue
        body = (CORPUS / item["path"]).read_bytes()
        if item["path"].endswith(".gz"):
            body = gzip.decompress(body)
        documents[item["path"]] = body[:CORPUS_MAX_BYTES]
    return documents


def test_fuzz_corpus_feeds() -> None:
    documents = _corpus_documents()
    assert len(documents) > 100
    findings = Findings()
    for label, doc in sorted(documents.items()):
        fuzz(findings, label, doc, CORPUS_VARIANTS)
    assert not findings.failures, findings.report()


def test_fuzz_one_mutation_of_each_kind_per_feed() -> None:
    """Every mutation alone, many times, on every built-in feed (the random stacks above
    can hide one mutation behind another, e.g. a truncation after a bad reference)."""
    findings = Findings()
    for label, doc in BUILTIN.items():
        for name in NAMES:
            for i in range(SINGLE_VARIANTS):
                seed = f"{label}:{name}:{i}"
                body = MUTATIONS[name](random.Random(seed), doc)
                findings.check(f"{name}(random.Random({seed!r}), BUILTIN[{label!r}])", body)
    assert not findings.failures, findings.report()


# ---- one regression test per known crash class ---------------------------------------


def three_items(middle: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>first</title><guid>g1</guid></item>"
        f"<item><title>{middle}</title><guid>g2</guid><description>d {middle} e</description></item>"
        "<item><title>third</title><guid>g3</guid></item>"
        "</channel></rss>"
    ).encode()


def titles(feed: ParsedFeed) -> dict[str, str]:
    return {e.guid or "": e.title for e in feed.entries}


@pytest.mark.parametrize(
    "ref", ["&#xD800;", "&#xdfff;", "&#55296;", "&#99999999999;", "&#x110000;", "&#" + "9" * 5000 + ";"]
)
def test_surrogate_or_out_of_range_reference_becomes_replacement_char(ref: str) -> None:
    feed = parse_feed(three_items(f"bad {ref} ref"))
    assert titles(feed) == {"g1": "first", "g2": "bad \ufffd ref", "g3": "third"}
    assert [e.summary for e in feed.entries if e.guid == "g2"] == ["d bad \ufffd ref e"]
    assert feed.version == "rss20" and feed.malformed  # recovered, but said to be broken
    assert not problems(feed)


@pytest.mark.parametrize("ref", ["&#0;", "&#x0;", "&#x1;", "&#xFFFE;"])
def test_xml_invalid_reference_becomes_replacement_char(ref: str) -> None:
    feed = parse_feed(three_items(f"bad {ref} ref"))
    assert titles(feed) == {"g1": "first", "g2": "bad \ufffd ref", "g3": "third"}
    assert feed.malformed and not problems(feed)


def test_embedded_nul_bytes_are_dropped() -> None:
    body = three_items("nul\x00 here").replace(b"<title>third", b"<title>th\x00\x00ird")
    feed = parse_feed(body)
    assert titles(feed) == {"g1": "first", "g2": "nul here", "g3": "third"}
    assert feed.malformed and not problems(feed)


def test_encoding_declared_as_a_codec_that_cannot_decode() -> None:
    """'undefined' is a Python codec that raises UnicodeError (not UnicodeDecodeError) on
    any input, which feedparser does not catch."""
    for charset in ("undefined", "idna"):
        body = three_items("caf\u00e9").replace(b'encoding="utf-8"', f'encoding="{charset}"'.encode())
        feed = parse_feed(body)
        assert titles(feed) == {"g1": "first", "g2": "caf\u00e9", "g3": "third"}, charset
        assert not problems(feed)
        feed = parse_feed(three_items("caf\u00e9"), content_type=f"application/rss+xml; charset={charset}")
        assert titles(feed) == {"g1": "first", "g2": "caf\u00e9", "g3": "third"}, charset


def test_encoding_that_decodes_to_surrogates() -> None:
    """UTF-7 (and unicode_escape) can decode to a lone surrogate: UTF-8 cannot hold it."""
    body = three_items("a +2AA- b").replace(b'encoding="utf-8"', b'encoding="utf-7"')
    feed = parse_feed(body)
    assert {"g1", "g3"} <= set(titles(feed)) and not problems(feed)
    body = three_items("a \\ud800 b").replace(b'encoding="utf-8"', b'encoding="unicode_escape"')
    feed = parse_feed(body)
    assert {"g1", "g3"} <= set(titles(feed)) and not problems(feed)


def test_utf8_bytes_declared_as_utf16_are_read_as_utf8() -> None:
    """Decoded as UTF-16 (which works when the length is even) they are CJK soup."""
    for pad in (b"", b"\n"):  # one of the two has an even length
        body = three_items("caf\u00e9").replace(b'encoding="utf-8"?>', b'encoding="utf-16"?>' + pad)
        feed = parse_feed(body)
        assert titles(feed) == {"g1": "first", "g2": "caf\u00e9", "g3": "third"}, pad


def test_bad_reference_in_a_utf16_body() -> None:
    body = (
        three_items("x &#xD800; y").decode().replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    )
    feed = parse_feed(body)
    assert titles(feed) == {"g1": "first", "g2": "x \ufffd y", "g3": "third"}


def test_nothing_recoverable_still_says_why() -> None:
    for body in (b"", b"\x00" * 100, b"\xff\xfe\x00", b"<rss", b"\x89PNG\r\n\x1a\n"):
        feed = parse_feed(body)
        assert feed.entries == () and feed.malformed, body
        assert not problems(feed)


def test_one_entry_failing_post_processing_skips_only_that_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in one entry's text extraction, or in keying it, loses that entry only."""
    real_html_to_text, real_canonical_url = parse_module.html_to_text, parse_module.canonical_url

    def html_to_text(html: str) -> str:
        if "explode" in html:
            raise RuntimeError("text extraction blew up")
        return real_html_to_text(html)

    def canonical_url(url: str) -> str:
        if "bad-link" in url:
            raise RuntimeError("link blew up")
        return real_canonical_url(url)

    monkeypatch.setattr(parse_module, "html_to_text", html_to_text)
    monkeypatch.setattr(parse_module, "canonical_url", canonical_url)
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>first</title><guid>g1</guid></item>"
        b"<item><title>second</title><guid>g2</guid><description>explode</description></item>"
        b"<item><title>third</title><link>https://example.org/bad-link</link></item>"
        b"<item><title>fourth</title><link>https://example.org/4</link></item>"
        b"</channel></rss>"
    )
    feed = parse_feed(body)
    assert sorted(e.title for e in feed.entries) == ["first", "fourth"]
    assert feed.malformed is not None and "2 entries skipped (RuntimeError: " in feed.malformed
