"""HTML nested deeper than libxml2 parses (256 levels) still gives its text (issue 16).

libxml2 stops for good at the element that would be the 257th level: the whole 300-deep
summary came out empty, so a watchlist term inside it was never seen. parse.html_to_text
reads such a fragment with a tree-less scanner instead (linear, any depth), and the
hostile-input bounds still hold there: scripts, styles, comments and the other dropped
elements never become text, and entities are not expanded. Article pages are parsed again
allowing 2048 levels; deeper ones give no page text and a reason, so the entry keeps the
feed's summary.
"""

from __future__ import annotations

import html
import json
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from conftest import write_config
from server import LocalServer

from watchdesk.ingest.extract import TOO_DEEP, extract_page
from watchdesk.ingest.parse import html_to_text, parse_feed

DEPTHS = [254, 255, 256, 300, 5_000, 100_000]


def nested(depth: int, inner: str = "fentanyl seized", tag: str = "div") -> str:
    return f"<{tag}>" * depth + inner + f"</{tag}>" * depth


def rss(*items: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>Deep</title>{''.join(items)}</channel></rss>"
    ).encode()


def item(title: str, description: str, *, link: str | None = None, cdata: bool = False) -> str:
    body = f"<![CDATA[{description}]]>" if cdata else html.escape(description, quote=False)
    link_tag = f"<link>{link}</link>" if link else ""
    guid = f'<guid isPermaLink="false">{title}</guid>'  # else a permalink, and fetched
    return f"<item><title>{title}</title>{guid}{link_tag}<description>{body}</description></item>"


@pytest.mark.parametrize("depth", DEPTHS)
def test_text_inside_deep_nesting_is_kept(depth: int) -> None:
    feed = parse_feed(rss(item("deep", nested(depth))))
    assert feed.malformed is None
    assert feed.entries[0].summary == "fentanyl seized"


@pytest.mark.parametrize("depth", [255, 300])
def test_text_after_the_deep_part_is_kept_too(depth: int) -> None:
    """libxml2 lost everything from the 257th level on, not only what is inside it."""
    summary = (
        "<p>Before.</p>" + nested(depth, "<b>fentanyl</b> seized") + "<p>After: 40 kg of <i>fentanyl</i>.</p>"
    )
    for cdata in (False, True):
        entry = parse_feed(rss(item("deep", summary, cdata=cdata))).entries[0]
        assert entry.summary == "Before. fentanyl seized After: 40 kg of fentanyl."


def test_content_encoded_and_atom_xhtml_too() -> None:
    deep = nested(300)
    encoded = parse_feed(
        rss(
            "<item><title>t</title><guid>g</guid><description>short</description>"
            f"<content:encoded><![CDATA[{deep} in the port]]></content:encoded></item>"
        )
    )
    assert encoded.entries[0].content == "fentanyl seized in the port"
    atom = parse_feed(
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
        b'<entry><title>t</title><id>urn:x</id><content type="xhtml">'
        b'<div xmlns="http://www.w3.org/1999/xhtml">' + deep.encode() + b"</div></content></entry></feed>"
    )
    assert "fentanyl seized" in (atom.entries[0].summary + atom.entries[0].content)


def test_scripts_styles_and_comments_stay_out_of_deep_text() -> None:
    hidden = (
        "<script>var fentanyl_in_script = 1;</script>"
        "<style>.fentanyl-in-style {}</style>"
        "<!-- fentanyl in a comment -->"
        "<noscript>fentanyl in noscript</noscript>"
        "<iframe>fentanyl in an iframe</iframe>"
        "<svg><svg></svg><text>fentanyl in svg</text></svg>"
        "<template><p>fentanyl in a template</p></template>"
        '<SCRIPT type="a>b">fentanyl in SCRIPT</SCRIPT>'
        "<script>fentanyl in a script</scr<b>ipt> still script</script>"
    )
    text = html_to_text(nested(300, "seen " + hidden + " also seen"))
    assert text == "seen also seen"
    # An unclosed script (or comment) hides the rest, as it does in a browser.
    assert html_to_text(nested(300, "seen") + "<script>fentanyl " * 3) == "seen"
    assert html_to_text(nested(300, "seen") + "<!-- fentanyl") == "seen"
    # Escaped markup is text, and stays text: it is not read as markup a second time.
    assert (
        html_to_text(nested(300, "&lt;script&gt;x&lt;/script&gt; &amp; &#169;")) == "<script>x</script> & ©"
    )


def test_deep_nesting_does_not_reopen_the_entity_bomb() -> None:
    refs = "&a;" * 30_000
    payload = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [\n<!ENTITY a "{"x" * 1_000}">\n]>\n'
        '<rss version="2.0"><channel><title>bomb</title><item><title>t</title><guid>g</guid>'
        f"<description>{html.escape(nested(300, 'fentanyl ' + refs), quote=False)}</description>"
        "</item></channel></rss>"
    ).encode()
    summary = parse_feed(payload).entries[0].summary
    assert "fentanyl" in summary
    assert "x" * 100 not in summary and len(summary) <= 20_000


def test_a_hundred_thousand_levels_stay_bounded() -> None:
    """1.1 MB of nesting: the scanner holds little beyond its input (here about 2 MiB)."""
    fragment = nested(100_000)
    tracemalloc.start()
    try:
        text = html_to_text(fragment)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text == "fentanyl seized"
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def article(depth: int) -> bytes:
    story = (
        "<p>Police said a large quantity of fentanyl was seized at the port after a long investigation.</p>"
    )
    return (
        "<html><head><title>Port seizure</title></head><body><article><h1>Seizure at the port</h1>"
        + nested(depth, story)
        + "<p>After the nest: the arrests that followed the fentanyl seizure in the city.</p>"
        "</article></body></html>"
    ).encode()


@pytest.mark.parametrize("depth", [254, 300, 2_000])
def test_a_deep_article_page_is_extracted(depth: int) -> None:
    result = extract_page(article(depth))
    assert result.reason is None
    assert "fentanyl was seized at the port" in result.text and "After the nest" in result.text


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_page_too_deep_to_parse_gives_no_text_and_a_reason(depth: int) -> None:
    result = extract_page(article(depth))
    assert (result.text, result.reason, result.title) == ("", TOO_DEEP, "Port seizure")


def watchdesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_poll_finds_and_stores_the_hit_in_a_deep_summary(tmp_path: Path, server: LocalServer) -> None:
    summary = nested(300, "Customs officers report <b>fentanyl</b> seized at the port")
    server.route("/page/deep", article(300), headers={"Content-Type": "text/html"})
    server.route("/page/deeper", article(5_000), headers={"Content-Type": "text/html"})
    server.route(
        "/feed.xml",
        rss(
            item("Summary only", summary),
            item("Deep page", nested(300, "see the page"), link=server.url("/page/deep")),
            item("Too deep a page", summary, link=server.url("/page/deeper")),
            item("Unrelated", nested(300, "weather report")),
        ),
        headers={"Content-Type": "application/rss+xml"},
    )
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed.xml"), "name": "Deep"}],
        {"opioids": "match = ['fentanyl']\n"},
        polling='backfill = "all"',
    )
    result = watchdesk(config, "poll", "--once")
    assert result.returncode == 0, result.stderr
    rows = {r["title"]: r for r in map(json.loads, watchdesk(config, "hits", "--json").stdout.splitlines())}
    assert sorted(rows) == ["Deep page", "Summary only", "Too deep a page"]
    assert rows["Summary only"]["text_source"] == "summary"
    assert rows["Deep page"]["text_source"] == "page"
    assert rows["Too deep a page"]["text_source"] == "summary"
    assert all(r["terms"] == ["fentanyl"] for r in rows.values())
    assert "fentanyl" in str(rows["Summary only"]["snippet"])

    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        stored = {t: (s, n) for t, s, n in db.execute("SELECT title, summary, text_note FROM entries")}
    assert stored["Summary only"] == ("Customs officers report fentanyl seized at the port", None)
    assert stored["Too deep a page"][1] == f"extraction: {TOO_DEEP}"
    assert stored["Unrelated"][0] == "weather report"
