"""SSRF: a feed served from 127.0.0.1 (allowed on purpose) links to, and redirects to,
victim servers on 127.0.0.2 and [::1] under every spelling; the victims receive nothing,
the entries are stored with the refusal reason, and the other entries proceed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import poll_once, write_config
from seed_fixture import STORY
from server import LocalServer


@pytest.fixture
def victim4() -> Iterator[LocalServer]:
    with LocalServer("127.0.0.2") as srv:
        srv.route("/secret", b"<html><body><p>fentanyl internal secret page</p></body></html>")
        yield srv


@pytest.fixture
def victim6() -> Iterator[LocalServer]:
    with LocalServer("::1") as srv:
        srv.route("/secret", b"<html><body><p>fentanyl internal secret page</p></body></html>")
        yield srv


def links(v4: LocalServer, v6: LocalServer, server: LocalServer) -> dict[str, str]:
    p4, p6 = v4.port, v6.port
    return {
        "plain": f"http://127.0.0.2:{p4}/secret",
        "decimal": f"http://2130706434:{p4}/secret",
        "octal": f"http://0177.0.0.2:{p4}/secret",
        "hex": f"http://0x7f000002:{p4}/secret",
        "short": f"http://127.2:{p4}/secret",
        "mapped": f"http://[::ffff:127.0.0.2]:{p4}/secret",
        "mapped-hex": f"http://[::ffff:7f00:2]:{p4}/secret",
        "nat64": f"http://[64:ff9b::7f00:2]:{p4}/secret",
        "6to4": f"http://[2002:7f00:2::]:{p4}/secret",
        "v6-loopback": f"http://[::1]:{p6}/secret",
        "redirect-v4": server.url("/go4"),
        "redirect-v6": server.url("/go6"),
        "redirect-decimal": server.url("/go-decimal"),
        "file": "file:///etc/passwd",
        "ftp": f"ftp://127.0.0.2:{p4}/secret",
    }


def test_victims_receive_nothing(
    tmp_path: Path, server: LocalServer, victim4: LocalServer, victim6: LocalServer
) -> None:
    targets = links(victim4, victim6, server)
    server.route("/go4", status=302, headers={"Location": targets["plain"]})
    server.route("/go6", status=301, headers={"Location": targets["v6-loopback"]})
    server.route("/go-decimal", status=307, headers={"Location": targets["decimal"]})
    server.route("/story/good", (STORY / "article.html").read_bytes(), headers={"Content-Type": "text/html"})
    items = "".join(
        f"<item><title>{name}</title><guid>{name}</guid><link>{url}</link>"
        "<description>a dark web market</description></item>"
        for name, url in targets.items()
    )
    items += f"<item><title>good</title><guid>good</guid><link>{server.url('/story/good')}</link></item>"
    server.route(
        "/feed",
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{items}</channel></rss>'.encode(),
    )
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "F"}],
        {"w": "match = ['fentanyl', '\"dark web\"']\n"},
        polling='backfill = "all"',
        network='per_host_delay = "0s"\ntimeout = "5s"',
    )
    summary, _feeds = poll_once(config)
    assert summary.new_entries == len(targets) + 1
    assert victim4.requests == [] and victim6.requests == []

    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        rows = dict(db.execute("SELECT title, text_note FROM entries").fetchall())
        sources = dict(db.execute("SELECT title, text_source FROM entries").fetchall())
    for name in targets:
        note = rows[name] or ""
        assert note.startswith("refused:"), (name, note)
        assert sources[name] == "summary"  # kept with the feed's own text
    assert "loopback" in rows["plain"] and "127.0.0.2" in rows["plain"]
    assert "embeds 127.0.0.2" in rows["mapped"]
    assert "scheme 'file' is not allowed" in rows["file"]
    assert sources["good"] == "page" and rows["good"] is None


def test_a_private_feed_url_is_refused_with_the_reason(tmp_path: Path, victim4: LocalServer) -> None:
    victim4.route(
        "/feed", b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'
    )
    config = write_config(
        tmp_path, [{"url": victim4.url("/feed"), "name": "Intranet"}], {"w": "match = ['x']\n"}
    )
    [feed] = poll_once(config)[1]
    assert victim4.requests == []
    assert feed.status == "failing" and feed.last_error is not None
    assert "127.0.0.2 is a loopback address" in feed.last_error and "[network] allow" in feed.last_error
    assert (
        feed.next_check_at is not None and feed.next_check_at > feed.last_polled_at + 60
    )  # not a tight loop


def test_trust_config_feeds_lets_the_operator_reach_an_intranet_feed(
    tmp_path: Path, victim4: LocalServer
) -> None:
    victim4.route(
        "/feed",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>'
        b"<item><title>t</title><guid>g</guid><link>http://127.0.0.2:1/x</link></item></channel></rss>",
    )
    config = write_config(
        tmp_path,
        [{"url": victim4.url("/feed"), "name": "Intranet"}],
        {"w": "match = ['x']\n"},
        polling='backfill = "all"',
        network="trust_config_feeds = true",
    )
    [feed] = poll_once(config)[1]
    assert feed.status == "ok"
    assert [r.path for r in victim4.requests] == ["/feed"]  # the link inside it was still refused
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        assert db.execute("SELECT text_note FROM entries").fetchone()[0].startswith("refused:")


@pytest.mark.parametrize("status", [302, 301, 308])
def test_trust_belongs_to_the_written_url_not_its_redirects(
    tmp_path: Path, victim4: LocalServer, status: int
) -> None:
    """Issue 16 item 1: a trusted config feed (on 127.0.0.3, outside [network] allow) that
    redirects to another private address is refused at the redirect: the victim sees no
    request, and a permanent redirect never becomes the feed's stored URL."""
    with LocalServer("127.0.0.3") as intranet:
        intranet.route("/feed", status=status, headers={"Location": victim4.url("/secret")})
        config = write_config(
            tmp_path,
            [{"url": intranet.url("/feed"), "name": "Intranet"}],
            {"w": "match = ['x']\n"},
            network="trust_config_feeds = true",
        )
        [feed] = poll_once(config)[1]
        assert [r.path for r in intranet.requests] == ["/feed"]  # the written URL: trusted
    assert victim4.requests == []
    assert feed.status == "failing" and feed.last_error is not None
    assert "127.0.0.2" in feed.last_error
    assert feed.url == intranet.url("/feed")  # not the refused target
