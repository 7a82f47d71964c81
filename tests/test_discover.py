"""Feed discovery (`watchdesk discover URL`): advertised links found and resolved, each
candidate fetched through the guarded pool and parsed, the usual paths tried when nothing
is advertised, private addresses refused (and never contacted), big pages bounded, and the
[[feed]] tables reading back with tomllib. Against real servers on 127.0.0.1 (and a
victim on 127.0.0.2) only."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import write_config
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.ingest import CpuPool, Discovered, HttpPool, Limits, discover, feeds_toml, find_feed_links
from watchdesk.ingest.discover import (
    COMMON_PATHS,
    HEAD_BYTES,
    MAX_CANDIDATES,
    Candidate,
    problem_lines,
    toml_string,
)

LIMITS = Limits(timeout=5.0, max_bytes=2 * 2**20)
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS_TYPE = {"Content-Type": "application/rss+xml"}
ATOM_TYPE = {"Content-Type": "application/atom+xml"}


def rss(title: str, n: int = 3) -> bytes:
    items = "".join(
        f"<item><title>post {i}</title><guid>g{i}</guid>"
        f"<pubDate>Mon, 0{i + 1} Jan 2024 10:00:00 +0000</pubDate></item>"
        for i in range(n)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}</channel></rss>'
    ).encode()


def atom(title: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{title}</title><id>urn:x</id><updated>2024-03-01T00:00:00Z</updated>"
        "<entry><title>a</title><id>urn:a</id><updated>2024-03-01T00:00:00Z</updated></entry>"
        "<entry><title>b</title><id>urn:b</id><updated>2024-02-01T00:00:00Z</updated></entry>"
        "</feed>"
    ).encode()


def page(head: str, body: str = "<p>hello</p>") -> bytes:
    return f"<!DOCTYPE html><html><head><title>Home</title>{head}</head><body>{body}</body></html>".encode()


def link(href: str, kind: str = "application/rss+xml", rel: str = "alternate", title: str = "") -> str:
    return f'<link rel="{rel}" type="{kind}" href="{href}" title="{title}">'


def run(
    url: str, *, allow: tuple[str, ...] = ("127.0.0.1/32",), cpu: CpuPool | None = None
) -> list[Discovered]:
    async def go() -> list[Discovered]:
        pool = HttpPool(concurrency=4, per_host=2, allow=allow)
        try:
            return await discover(pool, url, LIMITS, cpu=cpu)
        finally:
            await pool.aclose()

    return asyncio.run(go())


@pytest.fixture
def victim() -> Iterator[LocalServer]:
    with LocalServer("127.0.0.2") as srv:
        srv.route("/feed.xml", rss("Intranet"), headers=RSS_TYPE)
        yield srv


# ---- the pure part ---------------------------------------------------------------------------


def test_links_are_found_resolved_deduplicated_in_order() -> None:
    head = "".join(
        [
            link("/rss.xml", rel="ALTERNATE"),
            link("https://other.example/atom", "Application/Atom+XML; charset=utf-8", rel="feed  Alternate"),
            link("../rss.xml#top"),  # the same as /rss.xml once resolved, fragment dropped
            link("/style.css", "text/css", rel="alternate stylesheet"),
            link("/oembed", "application/json+oembed"),
            '<link rel="alternate" hreflang="de" href="/de/">',
            link("/comments.rss", rel="nofollow"),
            link("", rel="alternate"),
            link("feed://example.org/legacy"),
            link("/wp-json/wp/v2/pages/2", "application/json"),
            link("/feed.json", "application/feed+json", title="JSON"),
        ]
    )
    found = find_feed_links(page(head), "https://example.com/blog/post")
    assert [(c.url, c.type) for c in found] == [
        ("https://example.com/rss.xml", "application/rss+xml"),
        ("https://other.example/atom", "application/atom+xml"),
        ("http://example.org/legacy", "application/rss+xml"),
        ("https://example.com/wp-json/wp/v2/pages/2", "application/json"),
        ("https://example.com/feed.json", "application/feed+json"),
    ]
    assert found[-1] == Candidate("https://example.com/feed.json", "application/feed+json", "JSON", "link")


def test_base_href_is_honoured_wherever_it_is() -> None:
    body = page(link("feed.xml") + '<base href="https://cdn.example/site/">' + link("../atom.xml"))
    urls = [c.url for c in find_feed_links(body, "https://example.com/a/b")]
    assert urls == ["https://cdn.example/site/feed.xml", "https://cdn.example/atom.xml"]
    # a base that is not http(s) is ignored
    body = page('<base href="javascript:alert(1)">' + link("feed.xml"))
    assert [c.url for c in find_feed_links(body, "https://example.com/a/b")] == [
        "https://example.com/a/feed.xml"
    ]


def test_hrefs_that_are_no_urls_are_skipped() -> None:
    body = page(
        '<base href="http://[oops/">'
        + link("http://[::1")
        + link("x" * 5000)
        + link("/fine.xml")
        + link("http://host:99999/feed")  # a URL, if a useless one: the guard says why
    )
    urls = [c.url for c in find_feed_links(body, "http://x.example/")]
    assert urls == ["http://x.example/fine.xml", "http://host:99999/feed"]


def test_encoding_of_the_page_is_used_for_hrefs() -> None:
    body = ('<meta charset="iso-8859-1">' + link("/caf\u00e9.xml")).encode("latin-1")
    assert [c.url for c in find_feed_links(body, "http://x.example/")] == ["http://x.example/caf\u00e9.xml"]
    body = link("/caf\u00e9.xml").encode("utf-8")
    assert [c.url for c in find_feed_links(body, "http://x.example/")] == ["http://x.example/caf\u00e9.xml"]
    body = ("\ufeff" + link("/caf\u00e9.xml")).encode("utf-16-le")
    assert [c.url for c in find_feed_links(body, "http://x.example/")] == ["http://x.example/caf\u00e9.xml"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"\x00\x01\x02" * 1000,
        b"<" * 100_000,
        b"{}",
        rss("x"),
        "\ud800".encode("utf-8", "surrogatepass"),
    ],
)
def test_odd_documents_give_no_links_and_never_raise(body: bytes) -> None:
    assert find_feed_links(body, "http://x.example/", "text/html; charset=bogus-42") == []


def test_only_the_head_of_a_page_is_searched() -> None:
    filler = "<p>" + "x" * 1000 + "</p>"
    early = link("/early.xml")
    late = link("/late.xml")
    body = page(early, filler * (HEAD_BYTES // 1000 + 10) + late)
    assert len(body) > HEAD_BYTES
    assert [c.url for c in find_feed_links(body, "http://x.example/")] == ["http://x.example/early.xml"]


# ---- against a server ----------------------------------------------------------------------


def test_home_page_advertising_rss_and_atom(server: LocalServer) -> None:
    server.route(
        "/blog/",
        page(
            link("feeds/rss.xml", title="Posts")  # relative to the page
            + link(server.url("/site-atom"), "application/atom+xml")  # absolute
            + link("./feeds/rss.xml")  # the first again
        ),
        headers=HTML,
    )
    server.route("/blog/feeds/rss.xml", rss("Blog posts", n=3), headers=RSS_TYPE)
    server.route("/site-atom", atom("Blog (Atom)"), headers=ATOM_TYPE)
    found = run(server.url("/blog/"))
    assert [(d.url, d.ok, d.format, d.title, d.entries) for d in found] == [
        (server.url("/blog/feeds/rss.xml"), True, "rss", "Blog posts", 3),
        (server.url("/site-atom"), True, "atom", "Blog (Atom)", 2),
    ]
    assert found[0].newest == datetime(2024, 1, 3, 10, tzinfo=UTC)
    assert found[1].newest == datetime(2024, 3, 1, tzinfo=UTC)
    assert found[0].source == "link" and found[0].declared_type == "application/rss+xml"
    assert found[0].version == "rss20"
    assert len(server.hits("/blog/feeds/rss.xml")) == 1  # the duplicate was not fetched twice
    assert not any(server.hits(p) for p in COMMON_PATHS)  # feeds advertised: nothing guessed
    assert problem_lines(found) == []


def test_a_link_through_base_href(server: LocalServer) -> None:
    server.route("/x/page", page(f'<base href="{server.url("/base/")}">' + link("feed.xml")), headers=HTML)
    server.route("/base/feed.xml", rss("Based"), headers=RSS_TYPE)
    server.route("/x/feed.xml", rss("Wrong"), headers=RSS_TYPE)
    found = run(server.url("/x/page"))
    assert [(d.url, d.ok, d.title) for d in found] == [(server.url("/base/feed.xml"), True, "Based")]
    assert server.hits("/x/feed.xml") == []


def test_nothing_advertised_but_feed_xml_present(server: LocalServer) -> None:
    server.route("/", page(""), headers=HTML)
    server.route("/feed.xml", rss("Found by guessing"), headers=RSS_TYPE)
    server.route("/rss", page(""), headers=HTML)  # an HTML page at a usual path is no feed
    found = run(server.url("/"))
    assert {d.url for d in found} == {server.url(p) for p in COMMON_PATHS}
    assert all(d.source == "guess" for d in found)
    ok = [d for d in found if d.ok]
    assert [(d.url, d.title) for d in ok] == [(server.url("/feed.xml"), "Found by guessing")]
    assert problem_lines(found) == []  # misses at guessed paths are expected
    text = feeds_toml(found)
    assert tomllib.loads(text)["feed"] == [{"url": server.url("/feed.xml"), "name": "Found by guessing"}]


def test_guessed_paths_that_all_miss_are_one_line(server: LocalServer) -> None:
    server.route("/", page(""), headers=HTML)
    found = run(server.url("/"))
    assert found and not any(d.ok for d in found)
    assert {d.status for d in found} == {404}
    lines = problem_lines(found)
    assert len(lines) == 1 and "advertises no feed" in lines[0] and "/feed.xml" in lines[0]
    assert feeds_toml(found) == ""


def test_guesses_that_redirect_to_one_feed_are_one_result(server: LocalServer) -> None:
    server.route("/", page(""), headers=HTML)
    server.route("/feed", status=301, headers={"Location": "/feed/"})
    server.route("/feed/", rss("WordPress"), headers=RSS_TYPE)
    found = [d for d in run(server.url("/")) if d.ok]
    assert [(d.url, d.config_url) for d in found] == [(server.url("/feed"), server.url("/feed/"))]


def test_broken_link_and_non_feed_are_reported(server: LocalServer) -> None:
    server.route(
        "/",
        page(link("/gone.xml") + link("/page.html", "application/atom+xml") + link("/good.xml")),
        headers=HTML,
    )
    server.route("/page.html", page(""), headers=HTML)
    server.route("/good.xml", rss("Good"), headers=RSS_TYPE)
    found = run(server.url("/"))
    gone, html, good = found
    assert (gone.ok, gone.status, gone.kind, gone.problem) == (False, 404, "http", "HTTP 404")
    assert (html.ok, html.status, html.kind) == (False, 200, "malformed")
    assert html.problem == "not a feed: an HTML page (text/html)"
    assert good.ok and good.title == "Good"
    assert problem_lines(found) == [
        f"{server.url('/gone.xml')}: HTTP 404",
        f"{server.url('/page.html')}: not a feed: an HTML page (text/html)",
    ]
    assert [f["url"] for f in tomllib.loads(feeds_toml(found))["feed"]] == [server.url("/good.xml")]


def test_a_non_feed_served_as_a_feed_type(server: LocalServer) -> None:
    server.route("/", page(link("/junk.xml")), headers=HTML)
    server.route("/junk.xml", b"<?xml version='1.0'?><config><a>1</a></config>", headers=RSS_TYPE)
    (junk,) = run(server.url("/"))
    assert not junk.ok and junk.kind == "malformed" and junk.problem.startswith("not a feed:")


def test_the_url_itself_is_a_feed(server: LocalServer) -> None:
    server.route("/feed", rss("Direct", n=2), headers={"Content-Type": "text/html"})  # a lying type
    (found,) = run(server.url("/feed"))
    assert (found.url, found.ok, found.source, found.title, found.entries) == (
        server.url("/feed"),
        True,
        "page",
        "Direct",
        2,
    )
    assert len(server.requests) == 1  # nothing else fetched


def test_the_page_itself_failing_is_one_result(server: LocalServer) -> None:
    (found,) = run(server.url("/missing"))
    assert (found.ok, found.source, found.status, found.kind) == (False, "page", 404, "http")
    assert problem_lines([found]) == [f"{server.url('/missing')}: HTTP 404"]


def test_private_link_is_refused_and_never_contacted(server: LocalServer, victim: LocalServer) -> None:
    server.route("/go", status=302, headers={"Location": victim.url("/feed.xml")})
    server.route(
        "/",
        page(
            link(victim.url("/feed.xml"))
            + link(f"http://2130706434:{victim.port}/feed.xml")  # 127.0.0.2, spelled as a number
            + link("/go")  # a redirect there
            + link("file:///etc/passwd")
            + link("/ok.xml")
        ),
        headers=HTML,
    )
    server.route("/ok.xml", rss("Fine"), headers=RSS_TYPE)
    found = run(server.url("/"))
    assert [d.ok for d in found] == [False, False, False, False, True]
    for d in found[:3]:
        assert d.kind == "refused" and "127.0.0.2" in (d.problem or ""), d
        assert d.problem and d.problem.startswith("refused by the network guard:")
    assert found[3].kind == "refused" and "scheme 'file'" in (found[3].problem or "")
    assert victim.requests == []
    assert len(server.hits("/go")) == 1
    assert [f["url"] for f in tomllib.loads(feeds_toml(found))["feed"]] == [server.url("/ok.xml")]


def test_a_private_page_is_refused(victim: LocalServer) -> None:
    (found,) = run(victim.url("/feed.xml"))
    assert (found.ok, found.source, found.kind) == (False, "page", "refused")
    assert victim.requests == []


def test_a_huge_page_is_bounded(server: LocalServer) -> None:
    filler = ("<p>" + "lorem ipsum " * 80 + "</p>") * (1_500_000 // 1000)
    server.route("/big", page(link("/early.xml"), filler + link("/late.xml")), headers=HTML)
    server.route("/early.xml", rss("Early"), headers=RSS_TYPE)
    server.route("/late.xml", rss("Late"), headers=RSS_TYPE)
    assert HEAD_BYTES < len(filler) < LIMITS.max_bytes
    found = run(server.url("/big"))
    assert [(d.url, d.ok) for d in found] == [(server.url("/early.xml"), True)]
    assert server.hits("/late.xml") == []

    server.route("/huge", page("", "x" * (LIMITS.max_bytes + 1)), headers=HTML)
    (failed,) = run(server.url("/huge"))
    assert (failed.ok, failed.source, failed.kind) == (False, "page", "too_large")


def test_a_page_advertising_very_many_feeds_gets_only_a_few_checked(server: LocalServer) -> None:
    server.route("/", page("".join(link(f"/f{i}.xml") for i in range(500))), headers=HTML)
    found = run(server.url("/"))
    assert len(found) == MAX_CANDIDATES
    assert len(server.requests) == 1 + MAX_CANDIDATES


def test_json_feed_is_found_but_not_supported(server: LocalServer) -> None:
    json_feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Jason",
        "items": [{"id": "1", "content_text": "x"}, {"id": "2", "content_text": "y"}],
    }
    server.route(
        "/",
        page(
            link("/feed.json", "application/feed+json") + link("/wp-json/wp/v2/pages/2", "application/json")
        ),
        headers=HTML,
    )
    server.route(
        "/feed.json", json.dumps(json_feed).encode(), headers={"Content-Type": "application/feed+json"}
    )
    server.route("/wp-json/wp/v2/pages/2", b'{"id": 2, "title": {"rendered": "About"}}')
    jf, wp = run(server.url("/"))
    assert (jf.ok, jf.format, jf.kind, jf.title, jf.entries) == (
        False,
        "json feed",
        "unsupported",
        "Jason",
        2,
    )
    assert "JSON Feed" in (jf.problem or "") and "cannot read" in (jf.problem or "")
    assert (wp.ok, wp.kind, wp.problem) == (False, "malformed", "not a feed: JSON, but not a JSON Feed")
    assert "application/feed+json" in server.hits("/feed.json")[0].headers["accept"]
    assert feeds_toml([jf, wp]) == ""
    (direct,) = run(server.url("/feed.json"))  # given directly: reported, not searched further
    assert (direct.source, direct.kind) == ("page", "unsupported")


def test_parsing_in_a_cpu_pool(server: LocalServer) -> None:
    server.route("/", page(link("/a.xml")), headers=HTML)
    server.route("/a.xml", rss("In a worker"), headers=RSS_TYPE)
    cpu = CpuPool(workers=1)
    try:
        (found,) = run(server.url("/"), cpu=cpu)
    finally:
        cpu.close()
    assert found.ok and found.title == "In a worker" and found.entries == 3


# ---- the TOML ------------------------------------------------------------------------------


HOSTILE_TITLES = [
    'Quotes " and \\ backslashes \\"',
    "Line\nbreak\r\nand\ttab",
    ']]\n[[feed]]\nurl = "http://evil.example/"',
    "Bidi \u202eevil\u202c and \u2066isolate\u2069 and NUL \x00 and C1 \x85 and \x1b[31mred",
    "Line separator \u2028 and surrogate \ud800 here",
    "  ",
    "Ünïcödé 日本語 ✓",
    "x" * 5000,
]


def ok(url: str, title: str | None, fmt: str = "rss", entries: int = 1) -> Discovered:
    return Discovered(url, True, "link", format=fmt, title=title, entries=entries)


def test_toml_reads_back_with_tomllib(tmp_path: Path) -> None:
    results = [ok(f"https://example.com/{i}.xml", t) for i, t in enumerate(HOSTILE_TITLES)]
    results += [
        ok("https://example.com/dup-rss", "Same", "rss"),
        ok("https://example.com/dup-atom", "Same", "atom"),
        ok("https://example.com/dup-3", "Same", "atom"),
        ok("https://example.com/dup-rss", "Same again"),  # a URL listed twice: once
        ok("https://example.com/untitled/feed/", None),
        ok("https://example.com/untitled/other.xml", ""),
        ok('https://example.com/q?a="b"&c=\\d', "Taken"),
        Discovered("https://example.com/broken", False, "link", kind="http", problem="HTTP 404"),
    ]
    text = feeds_toml(results, taken_names=["Taken"])
    feeds = tomllib.loads(text)["feed"]
    assert [f["url"] for f in feeds] == list(dict.fromkeys(r.url for r in results if r.ok))
    names = [f["name"] for f in feeds]
    assert len(set(names)) == len(names) and "Taken" not in names
    assert all(set(f) == {"url", "name"} for f in feeds)
    for name in names:
        assert name.strip() and name == " ".join(name.split())
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E for c in name)
        assert len(name) <= 200
    assert names[0] == 'Quotes " and \\ backslashes \\"'
    assert names[1] == "Line break and tab"
    assert names[2] == ']] [[feed]] url = "http://evil.example/"'
    assert names[6] == "Ünïcödé 日本語 ✓"
    assert names[5] == "example.com/5.xml"  # a blank title: host and path
    assert names[8:11] == ["Same", "Same (Atom)", "Same (2)"]
    assert names[11:13] == ["example.com/untitled/feed", "example.com/untitled/other.xml"]
    assert names[13] == "Taken (RSS)"
    # printable as it is: no raw control, bidi or separator characters in the text
    assert not any(
        ord(c) < 0x20 and c != "\n" or 0x202A <= ord(c) <= 0x202E or c in "\u2028\u2029" for c in text
    )

    # and watchdesk itself takes it
    config = write_config(tmp_path, [], {"w": "match = ['x']\n"}, extra=text)
    loaded = load_config(config)
    assert [f.name for f in loaded.feeds] == names


def test_toml_comment_summarises_each_feed() -> None:
    d = Discovered(
        "https://e.example/f",
        True,
        "link",
        format="atom",
        title="T",
        entries=12,
        newest=datetime(2024, 5, 2, 9, 30, tzinfo=UTC),
    )
    assert feeds_toml([d]) == (
        '[[feed]]  # Atom, 12 entries, newest 2024-05-02 09:30 UTC\nurl = "https://e.example/f"\nname = "T"\n'
    )


@pytest.mark.parametrize("text", ["", '"', "\\", "\x00\x7f\x9f", "\ud83d", "a\u2028b", "tab\there", "é"])
def test_toml_string_round_trips(text: str) -> None:
    expected = text.replace("\ud83d", "\ufffd")
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == expected


def test_discovered_feeds_paste_into_a_config(tmp_path: Path, server: LocalServer) -> None:
    server.route(
        "/",
        page(link("/a.xml") + link("/b.xml", "application/atom+xml")),
        headers=HTML,
    )
    server.route("/a.xml", rss('The "Daily" \\ News'), headers=RSS_TYPE)
    server.route("/b.xml", atom('The "Daily" \\ News'), headers=ATOM_TYPE)
    found = run(server.url("/"))
    text = feeds_toml(found)
    assert tomllib.loads(text)["feed"] == [
        {"url": server.url("/a.xml"), "name": 'The "Daily" \\ News'},
        {"url": server.url("/b.xml"), "name": 'The "Daily" \\ News (Atom)'},
    ]


def test_an_unusable_candidate_url_fails_alone(server: LocalServer) -> None:
    server.route("/", page(link("http://127.0.0.1:99999/feed") + link("/ok.xml")), headers=HTML)
    server.route("/ok.xml", rss("Fine"), headers=RSS_TYPE)
    bad, good = run(server.url("/"))
    assert not bad.ok and bad.problem and good.ok


def test_the_discover_command(tmp_path: Path, server: LocalServer) -> None:
    """`watchdesk discover URL` prints [[feed]] tables that load as config."""
    import subprocess
    import sys

    server.route(
        "/",
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/rss.xml"></head></html>',
        headers={"Content-Type": "text/html"},
    )
    server.route(
        "/rss.xml",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Metro News</title>'
        b"<item><guid>1</guid><title>t</title></item></channel></rss>",
        headers={"Content-Type": "application/rss+xml"},
    )
    config = write_config(tmp_path, [], {})
    done = subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "discover", server.url("/")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout)["feed"] == [{"url": server.url("/rss.xml"), "name": "Metro News"}]
    missing = subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "discover", server.url("/nothing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
