"""parse.py: feedparser on bytes, entity expansion off, identity, caps, plain text."""

from __future__ import annotations

import inspect

import feedparser
import feedparser.sanitizer

from watchdesk.ingest.parse import NEVER_MATCHES, html_to_text, parse_feed


def entity_bomb(refs: int = 30_000, size: int = 1_000) -> bytes:
    """An RSS feed whose DTD declares a 'safe' internal entity and uses it many times.

    Stock feedparser expands it without limit in its lenient parser: about
    90 KB of feed becomes a 30 MB summary. The &amp; and &#169; must still decode.
    """
    refs_text = "&a;" * refs
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE rss [\n<!ENTITY a "{"x" * size}">\n]>\n'
        '<rss version="2.0"><channel><title>bomb &amp; co &#169;</title>'
        f"<item><title>t</title><guid>g1</guid><description>{refs_text}</description></item>"
        "</channel></rss>"
    ).encode()


def test_safe_entity_patch_canary() -> None:
    """We override a module global of feedparser 6; if feedparser stops reading it there,
    this fails and the entity fix must be redone (pyproject pins feedparser < 7)."""
    assert feedparser.__version__.startswith("6.")
    assert feedparser.sanitizer.RE_SAFE_ENTITY_PATTERN is NEVER_MATCHES
    assert "RE_SAFE_ENTITY_PATTERN" in inspect.getsource(feedparser.sanitizer.replace_doctype)


def test_internal_entities_are_not_expanded() -> None:
    payload = entity_bomb()
    assert len(payload) < 120_000
    raw = feedparser.parse(payload)  # what parse_feed hands on, before our own truncation
    expanded = sum(len(e.get("summary", "")) for e in raw.entries)
    assert expanded < 200_000, f"entity expanded to {expanded} characters"
    feed = parse_feed(payload)
    assert "x" * 100 not in feed.entries[0].summary
    assert feed.title == "bomb & co ©"  # ordinary entities still decode


def test_utf16_copy_of_the_bomb_is_defused_too() -> None:
    payload = (
        entity_bomb().decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-16"?>')
    )
    raw = feedparser.parse(payload.encode("utf-16"))
    assert sum(len(e.get("summary", "")) for e in raw.entries) < 200_000


def rss(items: str) -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


def test_identity_guid_then_canonical_link_then_hash() -> None:
    feed = parse_feed(
        rss(
            "<item><title>a</title><guid>guid-a</guid><link>https://x.org/a</link></item>"
            "<item><title>b</title><link>https://X.org/b?utm_source=rss&amp;id=2#frag</link></item>"
            "<item><title>c</title><description>only text</description></item>"
        )
    )
    keys = {e.title: e.key for e in feed.entries}
    assert keys["a"] == "guid:guid-a"
    assert keys["b"] == "link:https://x.org/b?id=2"
    assert keys["c"].startswith("hash:")


def test_repeated_guid_is_not_an_identity() -> None:
    feed = parse_feed(
        rss(
            "<item><title>one</title><guid>same</guid><link>https://x.org/1</link></item>"
            "<item><title>two</title><guid>same</guid><link>https://x.org/2</link></item>"
            "<item><title>one</title><guid>same</guid><link>https://x.org/1</link></item>"
        )
    )
    assert sorted(e.title for e in feed.entries) == ["one", "two"]  # exact repeat dropped
    assert len({e.key for e in feed.entries}) == 2


def test_entries_capped_newest_first() -> None:
    items = "".join(
        f"<item><title>n{i}</title><guid>g{i}</guid><pubDate>Mon, {i + 1:02d} Jun 2026 10:00:00 GMT</pubDate></item>"
        for i in range(20)
    )
    feed = parse_feed(rss(items), max_entries=5)
    assert [e.title for e in feed.entries] == ["n19", "n18", "n17", "n16", "n15"]
    assert feed.entries_dropped == 15


def test_long_fields_truncated() -> None:
    feed = parse_feed(
        rss(f"<item><title>{'t' * 5000}</title><description>{'d ' * 50_000}</description></item>")
    )
    assert len(feed.entries[0].title) == 1000
    assert len(feed.entries[0].summary) <= 20_000


def test_html_is_stripped_to_visible_text() -> None:
    text = html_to_text(
        '<p>Police <b>seized</b> pills</p><script>var fentanyl=1</script><p>in <a href="/fentanyl">Ohio</a></p>'
    )
    assert text == "Police seized pills in Ohio"


def test_not_a_feed_has_no_version() -> None:
    feed = parse_feed(b"<html><body><p>Hello</p></body></html>")
    assert feed.version == "" and feed.entries == ()


def test_a_string_is_never_treated_as_a_path() -> None:
    feed = parse_feed(b"/etc/passwd")
    assert feed.entries == () and feed.title is None
