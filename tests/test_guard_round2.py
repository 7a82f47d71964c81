"""Issue 16, round 2 of the network guard, against real servers on loopback only:

1. trust_config_feeds trusts the URL as written, never where it redirects: one pool, an
   unguarded client for a trusted first hop only, every redirect hop guarded;
2. IPv4-translated ::ffff:0:0:0/96 and site-local fec0::/10 (global to Python's
   ipaddress) are refused, the translated form's IPv4 checked like any embedded IPv4;
3. a URL httpx/httpcore cannot handle (port 99999, an empty host, an odd host name) is a
   RequestFailed, never another exception that aborts the feed's poll; the config check
   refuses such feed URLs at their line and reads `HTTP://` as `http://`;
11. two feed URLs that name the same resource are a config error naming both lines.

Victims listen on 127.0.0.2 (Linux routes all of 127/8 to loopback) outside every
`[network] allow` here; conftest's loopback_only fixture fails any other connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import poll_once, write_config
from seed_fixture import STORY
from server import LocalServer

from watchdesk.cli import main
from watchdesk.config import load_config
from watchdesk.errors import ConfigError
from watchdesk.ingest import guard
from watchdesk.ingest.fetch import fetch_feed
from watchdesk.ingest.guard import AddressPolicy, embedded_ipv4
from watchdesk.ingest.net import HttpPool, Limits, RequestFailed, Response, check_url
from watchdesk.models import FailureKind, FetchFailed
from watchdesk.web import lower_scheme, same_resource_url, url_problem

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'
LIMITS = Limits(timeout=5.0)


@pytest.fixture
def victim() -> Iterator[LocalServer]:
    with LocalServer("127.0.0.2") as srv:
        srv.route("/secret", b"internal secret")
        srv.route("/feed", RSS)
        yield srv


def get(pool: HttpPool, url: str, *, trusted: bool = False) -> Response:
    async def run() -> Response:
        try:
            return await pool.get(url, {}, LIMITS, trusted=trusted)
        finally:
            await pool.aclose()

    return asyncio.run(run())


def refusal(pool: HttpPool, url: str, *, trusted: bool = False) -> RequestFailed:
    with pytest.raises(RequestFailed) as info:
        get(pool, url, trusted=trusted)
    return info.value


def gets(pool: HttpPool, calls: list[tuple[str, bool]]) -> list[Response | RequestFailed]:
    """Several requests on one pool in one loop (so connections can be kept alive)."""

    async def run() -> list[Response | RequestFailed]:
        out: list[Response | RequestFailed] = []
        try:
            for url, trusted in calls:
                try:
                    out.append(await pool.get(url, {}, LIMITS, trusted=trusted))
                except RequestFailed as e:
                    out.append(e)
        finally:
            await pool.aclose()
        return out

    return asyncio.run(run())


# ---- 1. trust belongs to the written URL only --------------------------------------------


def test_a_trusted_first_hop_reaches_a_loopback_feed_the_guard_refuses(server: LocalServer) -> None:
    server.route("/feed", RSS)
    assert get(HttpPool(), server.url("/feed"), trusted=True).status == 200
    e = refusal(HttpPool(), server.url("/feed"))  # the same URL untrusted: refused, as always
    assert e.kind == "refused" and "127.0.0.1 is a loopback address" in str(e)
    assert len(server.hits("/feed")) == 1


@pytest.mark.parametrize("status", [302, 301, 308, 307, 303])
def test_a_trusted_feed_redirecting_to_a_private_address_is_refused_at_the_redirect(
    server: LocalServer, victim: LocalServer, status: int
) -> None:
    target = victim.url("/secret")
    server.route("/feed", status=status, headers={"Location": target})
    e = refusal(HttpPool(), server.url("/feed"), trusted=True)
    assert e.kind == "refused"
    assert f"redirect to {target}" in str(e) and "127.0.0.2 is a loopback address" in str(e)
    assert "trust_config_feeds" in str(e)
    assert len(server.hits("/feed")) == 1  # the written URL was reached (trusted)
    assert victim.requests == []


@pytest.mark.parametrize("status", [301, 308])
def test_fetch_feed_never_reports_a_refused_permanent_target(
    server: LocalServer, victim: LocalServer, status: int
) -> None:
    server.route("/feed", status=status, headers={"Location": victim.url("/feed")})
    pool = HttpPool()

    async def run() -> Any:
        try:
            return await fetch_feed(
                pool, server.url("/feed"), etag=None, last_modified=None, limits=LIMITS, trusted=True
            )
        finally:
            await pool.aclose()

    result = asyncio.run(run())
    assert isinstance(result, FetchFailed) and result.kind == FailureKind.REFUSED
    assert victim.url("/feed") in result.message
    assert victim.requests == []


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2130706434:{port}/secret",
        "http://[::ffff:0:127.0.0.2]:{port}/secret",
        "http://[fec0::1]/x",
    ],
)
def test_a_trusted_redirect_to_any_spelling_of_a_private_address_is_refused(
    server: LocalServer, victim: LocalServer, location: str
) -> None:
    """The guard refuses these before any connect (and loopback_only would stop one)."""
    server.route("/feed", status=302, headers={"Location": location.format(port=victim.port)})
    e = refusal(HttpPool(), server.url("/feed"), trusted=True)
    assert e.kind == "refused" and str(e).startswith("redirect to ")
    assert victim.requests == []


def test_a_trusted_feed_redirecting_within_its_own_host_is_checked_too(server: LocalServer) -> None:
    """Only the URL as written is trusted: a redirect to the same intranet host is a new
    request the guard checks (put the range in [network] allow to follow it)."""
    server.route("/feed", status=301, headers={"Location": "/feed/"})
    server.route("/feed/", RSS)
    e = refusal(HttpPool(), server.url("/feed"), trusted=True)
    assert e.kind == "refused" and server.url("/feed/") in str(e)
    assert server.hits("/feed/") == []
    resp = get(HttpPool(allow=("127.0.0.1/32",)), server.url("/feed"), trusted=True)
    assert resp.status == 200 and resp.permanent_url == server.url("/feed/")


def test_a_permanent_redirect_to_an_allowed_address_is_still_reported(
    server: LocalServer, victim: LocalServer
) -> None:
    server.route("/feed", status=301, headers={"Location": victim.url("/feed")})
    resp = get(HttpPool(allow=("127.0.0.2/32",)), server.url("/feed"), trusted=True)
    assert resp.status == 200 and resp.permanent_url == victim.url("/feed")
    assert [r.path for r in victim.requests] == ["/feed"]


def test_trusted_and_guarded_requests_never_share_a_connection(server: LocalServer) -> None:
    """A trusted first hop's kept-alive connection is not reused by a guarded request to
    the same origin (a link in a feed to the intranet host stays refused), while each
    kind keeps reusing its own."""
    server.route("/feed", RSS)
    server.route("/page", b"page")
    results = gets(
        HttpPool(),
        [(server.url("/feed"), True), (server.url("/page"), False), (server.url("/feed"), True)],
    )
    first, guarded, again = results
    assert isinstance(first, Response) and isinstance(again, Response)
    assert isinstance(guarded, RequestFailed) and guarded.kind == "refused"
    assert server.hits("/page") == []
    peers = [r.peer for r in server.hits("/feed")]
    assert len(peers) == 2 and peers[0] == peers[1]  # one kept-alive trusted connection


def test_guarded_connections_are_still_reused(server: LocalServer) -> None:
    server.route("/a", b"a")
    results = gets(HttpPool(allow=("127.0.0.1/32",)), [(server.url("/a"), False)] * 3)
    assert all(isinstance(r, Response) and r.status == 200 for r in results)
    assert len({r.peer for r in server.requests}) == 1


def test_trusted_first_hops_are_sharded_like_guarded_requests() -> None:
    """Not one client of 5 connections for every trusted origin (they would queue behind
    each other and evict each other's kept-alive connections): one per shard, on demand."""
    pool = HttpPool(concurrency=20)

    async def run() -> None:
        pool._bind()
        try:
            assert pool._trusted == [None] * len(pool._clients) == [None] * 4
            clients = [pool._trusted_client(shard)[0] for shard in range(4)]
            assert len({id(c) for c in clients}) == 4
            assert pool._trusted_client(2)[0] is clients[2]
            assert not {id(c) for c in clients} & {id(c) for c in pool._clients}
        finally:
            await pool.aclose()

    asyncio.run(run())


def intranet_config(tmp_path: Path, url: str, **kw: Any) -> Path:
    """A config whose [network] allow is empty: 127.0.0.1 is private like any intranet."""
    config = write_config(tmp_path, [{"url": url, "name": "Intranet"}], {"w": "match = ['x']\n"}, **kw)
    config.write_text(config.read_text().replace('allow = ["127.0.0.1/32"]', "allow = []"))
    return config


@pytest.mark.parametrize("status", [302, 301])
def test_a_config_feed_on_127_0_0_1_redirecting_to_127_0_0_2_is_refused_end_to_end(
    tmp_path: Path, server: LocalServer, victim: LocalServer, status: int
) -> None:
    server.route("/feed", status=status, headers={"Location": victim.url("/feed")})
    config = intranet_config(tmp_path, server.url("/feed"), network="trust_config_feeds = true")
    [feed] = poll_once(config)[1]
    assert len(server.hits("/feed")) == 1
    assert victim.requests == []
    assert feed.status == "failing" and feed.last_error is not None
    assert victim.url("/feed") in feed.last_error and "loopback" in feed.last_error
    assert feed.url == server.url("/feed")  # never the refused target
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        assert db.execute("SELECT url FROM feeds").fetchall() == [(server.url("/feed"),)]


def test_a_trusted_config_feed_on_127_0_0_1_polls_end_to_end(tmp_path: Path, server: LocalServer) -> None:
    server.route("/feed", RSS)
    config = intranet_config(tmp_path, server.url("/feed"), network="trust_config_feeds = true")
    [feed] = poll_once(config)[1]
    assert feed.status == "ok" and len(server.hits("/feed")) == 1
    untrusted = intranet_config(tmp_path / "b", server.url("/feed"))
    [feed] = poll_once(untrusted)[1]
    assert feed.status == "failing" and len(server.hits("/feed")) == 1


def test_a_moved_feed_url_is_not_trusted(tmp_path: Path, server: LocalServer, victim: LocalServer) -> None:
    """A 301 to a public name stores that URL as the feed's; if the name later resolves to
    a private address it must be refused like any URL the operator did not write. (Here
    the stored URL is set by hand: a test cannot rebind DNS.)"""
    server.route("/feed", RSS)
    config = intranet_config(tmp_path, server.url("/feed"), network="trust_config_feeds = true")
    assert poll_once(config)[1][0].status == "ok"
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        db.execute("UPDATE feeds SET url = ?, next_check_at = 0", [victim.url("/feed")])
    [feed] = poll_once(config)[1]
    assert victim.requests == []
    assert feed.status == "failing"


# ---- 2. IPv4-translated and site-local ----------------------------------------------------

POLICY = AddressPolicy(["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("::ffff:0:127.0.0.2", "::ffff:0:127.0.0.2 embeds 127.0.0.2, a loopback address"),
        ("::ffff:0:7f00:2", "::ffff:0:7f00:2 embeds 127.0.0.2, a loopback address"),
        ("::ffff:0:a9fe:a9fe", "::ffff:0:a9fe:a9fe embeds 169.254.169.254, a private address"),
        ("::ffff:0:a00:1", "::ffff:0:a00:1 embeds 10.0.0.1, a private address"),
        ("::ffff:0:0:0", "::ffff:0:0:0 embeds 0.0.0.0, a private address"),
        ("::ffff:0:808:808", "::ffff:0:808:808 is an IPv4-translated address"),  # refused anyway
        ("fec0::1", "fec0::1 is a site-local address"),
        ("fec0:1234::5", "fec0:1234::5 is a site-local address"),
        ("feff:ffff::1", "feff:ffff::1 is a site-local address"),
    ],
)
def test_translated_and_site_local_addresses_are_refused(address: str, why: str) -> None:
    assert ipaddress.ip_address(address).is_global  # what Python 3.11 says: the hole
    assert POLICY.refusal(address) == why


def test_the_translated_form_embeds_its_ipv4() -> None:
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:0:7f00:2")) == ipaddress.IPv4Address("127.0.0.2")
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:7f00:2")) == ipaddress.IPv4Address("127.0.0.2")
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700:4700::1111")) is None


@pytest.mark.parametrize(
    ("allow", "address"),
    [
        (["fec0::/10"], "fec0::1"),
        (["::ffff:0:0:0/96"], "::ffff:0:808:808"),
        (["127.0.0.1/32"], "::ffff:0:127.0.0.1"),  # its IPv4 in allow, as for ::ffff:127.0.0.1
    ],
)
def test_allow_opens_them(allow: list[str], address: str) -> None:
    assert AddressPolicy(allow).refusal(address) is None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "::ffff:1:808:808"]
)
def test_global_neighbours_of_the_new_ranges_stay_allowed(address: str) -> None:
    assert POLICY.refusal(address) is None


def test_a_translated_address_is_refused_before_any_connect(victim: LocalServer) -> None:
    e = refusal(HttpPool(allow=("127.0.0.1/32",)), f"http://[::ffff:0:127.0.0.2]:{victim.port}/secret")
    assert e.kind == "refused" and "embeds 127.0.0.2, a loopback address" in str(e)
    assert victim.requests == []


def test_a_redirect_to_a_translated_address_is_refused(server: LocalServer, victim: LocalServer) -> None:
    server.route("/go", status=302, headers={"Location": f"http://[::ffff:0:7f00:2]:{victim.port}/secret"})
    e = refusal(HttpPool(allow=("127.0.0.1/32",)), server.url("/go"))
    assert e.kind == "refused" and "embeds 127.0.0.2" in str(e)
    assert victim.requests == []


# ---- 3. URLs httpx and httpcore cannot handle --------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999/feed", "has port '99999': a port is a number from 1 to 65535"),
        ("http://127.0.0.1:65536/feed", "has port '65536'"),
        ("http://127.0.0.1:0/feed", "has port '0'"),
        ("http://127.0.0.1:http/feed", "has port 'http'"),
        ("http://[::1]:99999/feed", "has port '99999'"),
        ("http:///feed", "'http:///feed' has no host"),
        ("http://:8080/feed", "has no host"),
        ("http://a..b/feed", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/feed", "not a valid host name"),
        ("http://exa mple.com/feed", "holds a character no host name has"),
        ("http://[::1/feed", "is not a valid URL"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ],
)
def test_check_url_refuses_with_a_clear_message(url: str, why: str) -> None:
    with pytest.raises(RequestFailed) as info:
        check_url(url)
    assert info.value.kind == "refused" and why in str(info.value)


@pytest.mark.parametrize(
    ("url", "checked"),
    [
        ("HTTP://Example.com/feed", "http://Example.com/feed"),
        ("HtTpS://example.com:8443/Feed", "https://example.com:8443/Feed"),
        ("http://example.com:80/feed", "http://example.com:80/feed"),
        ("https://[2606:4700:4700::1111]:443/", "https://[2606:4700:4700::1111]:443/"),
        ("http://bücher.example/feed", "http://bücher.example/feed"),
    ],
)
def test_check_url_accepts_any_scheme_case_and_lowers_it(url: str, checked: str) -> None:
    assert check_url(url) == checked


def test_an_upper_case_scheme_is_requested(server: LocalServer) -> None:
    server.route("/feed", RSS)
    resp = get(HttpPool(allow=("127.0.0.1/32",)), server.url("/feed").replace("http://", "HTTP://"))
    assert resp.status == 200 and resp.url == server.url("/feed")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/x",
        "http:///x",
        "http://a..b/x",
        "http://" + "a" * 70 + ".com/x",
        "http://xn--zz/x",
        "http://\u2100/x",
        "http://exa mple.com/x",
        "http://[::1/x",
        "http://127.0.0.1:-1/x",
    ],
)
def test_odd_urls_fail_as_request_failed(url: str) -> None:
    e = refusal(HttpPool(allow=("127.0.0.1/32",)), url)
    assert e.kind == "refused" and str(e)


def test_a_redirect_to_port_99999_is_a_request_failure(server: LocalServer) -> None:
    server.route("/go", status=302, headers={"Location": "http://127.0.0.1:99999/x"})
    e = refusal(HttpPool(allow=("127.0.0.1/32",)), server.url("/go"))
    assert e.kind == "refused" and "redirect to http://127.0.0.1:99999/x" in str(e) and "99999" in str(e)


@pytest.mark.parametrize(
    ("raised", "kind", "text"),
    [
        (
            ExceptionGroup("unhandled errors in a TaskGroup", [OverflowError("port must be 0-65535.")]),
            "refused",
            "OverflowError: port must be 0-65535.",
        ),
        (
            UnicodeError("encoding with 'idna' codec failed"),
            "refused",
            "UnicodeError: encoding with 'idna' codec failed",
        ),
        (ValueError("odd"), "refused", "ValueError: odd"),
        (
            ExceptionGroup("g", [RuntimeError("boom"), OSError("no")]),
            "network",
            "RuntimeError: boom; OSError: no",
        ),
        (
            ExceptionGroup("g", [guard.AddressRefused("x refused: a loopback address")]),
            "refused",
            "x refused",
        ),
    ],
)
def test_any_exception_out_of_httpcore_is_a_request_failure(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, raised: Exception, kind: str, text: str
) -> None:
    """Whatever the connect raises besides httpx's own errors (as anyio's happy eyeballs
    did with ExceptionGroup(OverflowError) for port 99999) fails this request only."""

    async def connect_tcp(*args: object, **kwargs: object) -> object:
        raise raised

    monkeypatch.setattr(guard.GuardedBackend, "connect_tcp", connect_tcp)
    e = refusal(HttpPool(allow=("127.0.0.1/32",)), server.url("/x"))
    assert e.kind == kind and text in str(e)
    assert server.requests == []


def test_odd_article_links_do_not_abort_the_feeds_poll(tmp_path: Path, server: LocalServer) -> None:
    """Issue 16 item 3: a link with port 99999 raised ExceptionGroup out of the poll."""
    links = {
        "port": "http://127.0.0.1:99999/story",
        "upper": "HTTP://127.0.0.1:99999/story",
        "label": "http://a..b/story",
        "zero": "http://127.0.0.1:0/story",
        "space": "http://exa mple.com/story",
        "good": server.url("/story/good"),
    }
    server.route("/story/good", (STORY / "article.html").read_bytes(), headers={"Content-Type": "text/html"})
    items = "".join(
        f"<item><title>{name}</title><guid>{name}</guid><link>{url}</link>"
        "<description>fentanyl seized</description></item>"
        for name, url in links.items()
    )
    server.route(
        "/feed",
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{items}</channel></rss>'.encode(),
    )
    config = write_config(
        tmp_path,
        [{"url": server.url("/feed"), "name": "F"}],
        {"w": "match = ['fentanyl']\n"},
        polling='backfill = "all"',
        network='per_host_delay = "0s"\ntimeout = "5s"',
    )
    summary, [feed] = poll_once(config)
    assert feed.status == "ok" and summary.new_entries == len(links)
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        notes = dict(db.execute("SELECT title, text_note FROM entries").fetchall())
        sources = dict(db.execute("SELECT title, text_source FROM entries").fetchall())
    for name in ("port", "upper", "label", "zero", "space"):
        assert (notes[name] or "").startswith("refused:"), (name, notes[name])
        assert sources[name] == "summary"
    assert "a port is a number from 1 to 65535" in notes["port"]
    assert "not a valid host name" in notes["label"]
    assert sources["good"] == "page"


# ---- 3. the config check refuses such feed URLs, accepts HTTP:// -----------------------


def config_file(tmp_path: Path, feeds: list[str]) -> Path:
    (tmp_path / "watchlists").mkdir(exist_ok=True)
    (tmp_path / "watchlists" / "w.toml").write_text("match = ['fentanyl']\n")
    body = "".join(f'[[feed]]\nurl = "{url}"\nname = "F{i}"\n\n' for i, url in enumerate(feeds))
    path = tmp_path / "watchdesk.toml"
    path.write_text('[watchdesk]\ndatabase = "watchdesk.db"\n\n' + body)
    return path


def line_of(path: Path, text: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line][nth]


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, check_secrets=False)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.org:99999/feed", "has port '99999': a port is a number from 1 to 65535"),
        ("http://example.org:0/feed", "has port '0'"),
        ("https://example.org:65536/feed", "has port '65536'"),
        ("http:///feed", "'http:///feed' has no host"),
        ("http://exa mple.org/feed", "holds a character no host name has"),
    ],
)
def test_watchdesk_check_refuses_a_feed_url_the_network_would_refuse(
    tmp_path: Path, url: str, why: str
) -> None:
    path = config_file(tmp_path, ["https://example.org/ok", url])
    result = CliRunner().invoke(main, ["--config", str(path), "check", "--no-secrets"])
    assert result.exit_code == 2
    assert f"{path}:{line_of(path, url)}: feed.url: {url!r}" in result.stderr
    assert why in result.stderr


def test_watchdesk_check_accepts_an_upper_case_scheme(tmp_path: Path) -> None:
    path = config_file(tmp_path, ["HTTP://Example.com/feed", "HtTpS://example.org/other"])
    result = CliRunner().invoke(main, ["--config", str(path), "check", "--no-secrets"])
    assert result.exit_code == 0, result.output
    config = load_config(path, check_secrets=False)
    assert [f.url for f in config.feeds] == ["http://Example.com/feed", "https://example.org/other"]


def test_a_channel_url_gets_the_same_checks(tmp_path: Path) -> None:
    path = config_file(tmp_path, ["https://example.org/feed"])
    path.write_text(
        path.read_text()
        + textwrap.dedent(
            """
            [channel.hook]
            type = "webhook"
            url = "https://hooks.example.org:99999/in"
            """
        )
    )
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line_of(path, 'hooks.example.org')}: channel.hook.url: ")
    assert "a port is a number from 1 to 65535" in problem


# ---- 11. the same feed under another spelling -------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://example.org", "https://example.org/"),
        ("https://example.org/feed", "https://example.org/feed#top"),
        ("https://example.org/feed", "https://example.org/fee%64"),
        ("https://example.org/feed", "https://example.org/%66%65%65%64"),
        ("https://example.org/feed", "https://example.org/./feed"),
        ("https://example.org/feed", "https://example.org/a/../feed"),
        ("https://example.org/feed", "https://example.org:443/feed"),
        ("http://example.org/feed", "http://example.org:80/feed"),
        ("https://example.org/feed", "https://EXAMPLE.org/feed"),
        ("https://example.org/feed", "HTTPS://example.org/feed#x"),
        ("https://example.org/a%2fb", "https://example.org/a%2Fb"),
        ("https://example.org/feed?x=%7e", "https://example.org/feed?x=~"),
    ],
)
def test_the_same_feed_under_another_spelling_is_an_error_naming_both_lines(
    tmp_path: Path, first: str, second: str
) -> None:
    path = config_file(tmp_path, [first, second])
    [problem] = problems(path)
    line1, line2 = line_of(path, "url = ", 0), line_of(path, "url = ", 1)
    read = lower_scheme(second)  # HTTPS:// is read as https://
    assert (
        problem == f"{path}:{line2}: feed URL {read} is the same feed as line {line1} ({first}); list it once"
    )


def test_an_exact_duplicate_names_the_other_line_too(tmp_path: Path) -> None:
    path = config_file(tmp_path, ["https://example.org/feed", "HTTPS://example.org/feed"])
    [problem] = problems(path)
    line1, line2 = line_of(path, "url = ", 0), line_of(path, "url = ", 1)
    assert (
        problem
        == f"{path}:{line2}: feed https://example.org/feed is listed twice (also feed #1, line {line1})"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://example.org/feed", "https://example.org/feed/"),  # a non-empty path's '/' counts
        ("https://example.org/feed", "https://example.org/Feed"),  # paths are case-sensitive
        ("https://example.org/feed", "https://example.org/feed?page=2"),
        ("https://example.org/feed?a=1&b=2", "https://example.org/feed?b=2&a=1"),
        ("https://example.org/feed", "http://example.org/feed"),
        ("https://example.org/feed", "https://example.org:8443/feed"),
        ("https://example.org/a%2Fb", "https://example.org/a/b"),  # %2F is reserved: not '/'
        ("https://example.org/feed", "https://www.example.org/feed"),
    ],
)
def test_different_feeds_are_not_duplicates(tmp_path: Path, first: str, second: str) -> None:
    config = load_config(config_file(tmp_path, [first, second]), check_secrets=False)
    assert [f.url for f in config.feeds] == [first, second]


def test_a_feed_url_is_stored_and_polled_as_written(tmp_path: Path, server: LocalServer) -> None:
    """The comparison form is for comparing only: the URL keeps its spelling."""
    server.route("/fee%64", RSS)
    written = server.url("/./fee%64#top")
    config = write_config(tmp_path, [{"url": written, "name": "F"}], {"w": "match = ['x']\n"})
    assert [f.url for f in load_config(config).feeds] == [written]
    [feed] = poll_once(config)[1]
    assert feed.url == written and feed.status == "ok"
    assert [r.path for r in server.requests] == ["/fee%64"]  # httpx drops dot segments, as before


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("HTTPS://Example.COM", "https://example.com/"),
        ("https://example.com:443/./a/b/../c/#frag", "https://example.com/a/c/"),
        ("http://example.com:8080/%7euser/%2f", "http://example.com:8080/~user/%2F"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
        ("http://u:P@Example.com/", "http://u:P@example.com/"),
        ("https://example.com/a/..", "https://example.com/"),
        ("https://example.com/..", "https://example.com/"),
        ("https://example.com/a//../b", "https://example.com/a/b"),
        ("http://[::1/", "http://[::1/"),  # does not parse: left alone
    ],
)
def test_same_resource_url(url: str, same: str) -> None:
    assert same_resource_url(url) == same


def test_url_problem_is_none_for_usable_urls() -> None:
    for url in (
        "https://example.org/feed",
        "http://127.0.0.1:8080/",
        "https://[::1]/",
        "http://bücher.example/",
    ):
        assert url_problem(url) is None, url
