"""The Slack channel against a local HTTP receiver: Block Kit within its limits, feed text
inert everywhere, only http(s) links, answers classified, the webhook URL never shown."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from server import LocalServer, Reply, Request

from watchdesk.config import ChannelConfig
from watchdesk.models import Alert, DeliveryResult, Digest
from watchdesk.notify import ChannelNotAvailable, build_channel
from watchdesk.notify.http import failure_result, url_secrets
from watchdesk.notify.slack import SlackChannel, alert_payload, digest_payload

HOOK_PATH = "/services/T0001/B0002/s3cr3tT0k3nV4lu3"
TOKEN = "s3cr3tT0k3nV4lu3"
T0 = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
HOSTILE = "<!channel> <!here> <@U123> <http://x|y> &lt; *bold* `code`"


def make_alert(
    title: str = "Darknet vendor charged",
    *,
    link: str | None = "https://news.example/a?id=1&ref=rss",
    snippet: str = "pills that contained fentanyl, the synthetic opioid",
    marks: tuple[tuple[int, int], ...] = ((21, 29),),
    outlet: str = "Metro",
    watchlist: str = "opioids",
    story: str = "a",
    minutes_ago: int = 0,
) -> Alert:
    return Alert(
        watchlist=watchlist,
        title=title,
        link=link,
        outlet=outlet,
        published=T0 - timedelta(minutes=minutes_ago),
        terms=("fentanyl",),
        snippet=snippet,
        snippet_marks=marks,
        story_key=story,
    )


# ---- a Block Kit validator (the limits Slack enforces) --------------------------------


def validate(payload: dict[str, Any]) -> None:
    assert "link_names" not in payload
    assert isinstance(payload["text"], str) and 0 < len(payload["text"]) <= 3000
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert block["text"]["type"] in ("mrkdwn", "plain_text")
            assert 1 <= len(block["text"]["text"]) <= 3000
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] in ("mrkdwn", "plain_text")
                assert 1 <= len(element["text"]) <= 3000
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                assert element["type"] == "button"
                assert element["text"]["type"] == "plain_text" and len(element["text"]["text"]) <= 75
                assert element["url"].startswith(("https://", "http://")) and len(element["url"]) <= 3000
        else:
            assert kind == "divider", kind


def text_fields(payload: dict[str, Any]) -> list[str]:
    """Every string Slack renders as text: the fallback and each text object."""
    found = [payload["text"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload["blocks"])
    return found


def links_in(text: str) -> list[str]:
    """The targets of every Slack control sequence `<...>` in a text."""
    return [m.split("|", 1)[0] for m in re.findall(r"<([^>]*)>", text)]


def assert_inert(payload: dict[str, Any], allowed_links: set[str]) -> None:
    for text in text_fields(payload):
        for target in links_in(text):
            assert target in allowed_links, (target, text)
        for raw in ("<!channel>", "<!here>", "<@U123>", "<http://x|y>"):
            assert raw not in text


# ---- rendering ------------------------------------------------------------------------


def test_alert_payload_has_header_snippet_context_and_link() -> None:
    payload = alert_payload(make_alert())
    validate(payload)
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Darknet vendor charged", "emoji": False},
    }
    assert section["text"]["text"] == (
        "pills that contained *fentanyl*, the synthetic opioid\n"
        "<https://news.example/a?id=1&amp;ref=rss|Read the article>"
    )
    assert [e["text"] for e in context["elements"]] == [
        "*Metro*",
        "2026-11-02 23:00 UTC",
        "watchlist *opioids*",
        "matched: fentanyl",
    ]
    assert payload["text"] == "[watchdesk] opioids: Darknet vendor charged"


@pytest.mark.parametrize("field", ["title", "snippet", "outlet", "watchlist"])
def test_feed_text_arrives_inert_in_every_text_field(field: str) -> None:
    def value(name: str) -> str:
        return HOSTILE if field == name else name[0]

    alert = make_alert(
        value("title"),
        snippet=value("snippet"),
        marks=(),
        outlet=value("outlet"),
        watchlist=value("watchlist"),
    )
    payload = alert_payload(alert)
    validate(payload)
    assert_inert(payload, {"https://news.example/a?id=1&amp;ref=rss"})
    escaped = "&lt;!channel&gt; &lt;!here&gt; &lt;@U123&gt; &lt;http://x|y&gt; &amp;lt;"
    hits = [t for t in text_fields(payload) if escaped in t]
    assert hits, text_fields(payload)
    if field in ("title", "watchlist"):
        assert escaped in payload["text"]  # the notification fallback too


def test_marked_terms_inside_hostile_text_stay_escaped() -> None:
    snippet = "<@U123> sold fentanyl & <!channel>"
    payload = alert_payload(make_alert(snippet=snippet, marks=((13, 21),)))
    section = payload["blocks"][1]["text"]["text"]
    assert section.startswith("&lt;@U123&gt; sold *fentanyl* &amp; &lt;!channel&gt;")


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "//evil.example", None]
)
def test_a_non_http_link_is_never_made_a_link(link: str | None) -> None:
    payload = alert_payload(make_alert(link=link))
    validate(payload)
    assert_inert(payload, set())
    dumped = json.dumps(payload).lower()
    assert "javascript" not in dumped and "data:text" not in dumped and "evil.example" not in dumped


def test_a_link_with_a_pipe_or_brackets_cannot_break_out_of_its_link() -> None:
    payload = alert_payload(make_alert(link="https://news.example/a|<!channel>"))
    section = payload["blocks"][1]["text"]["text"]
    assert links_in(section) == ["https://news.example/a%7C&lt;!channel&gt;"]


def test_long_fields_are_cut_to_the_block_kit_limits() -> None:
    alert = make_alert("&" * 400, snippet="<word> " * 1000, marks=(), outlet="O" * 500, watchlist="w" * 300)
    payload = alert_payload(alert)
    validate(payload)
    header = payload["blocks"][0]["text"]["text"]
    assert header.endswith("…") and re.fullmatch("(&amp;)+", header[:-1])  # no entity cut in half


def many_alerts(stories: int, watchlists: int = 3) -> tuple[Alert, ...]:
    return tuple(
        make_alert(
            f"Story {i} <@U123> with a fairly long headline about seized pills {'x' * 80}",
            watchlist=f"list{i % watchlists}",
            story=f"s{i}",
            link=f"https://news.example/story/{i}",
            minutes_ago=i,
        )
        for i in range(stories)
    )


def test_digest_payload_groups_counts_and_notes_the_cap() -> None:
    alerts = (
        make_alert("Story A again", story="a"),
        make_alert("Story B", story="b", watchlist="weapons"),
        make_alert("Story A", story="a"),
    )
    payload = digest_payload(Digest("Hourly digest", alerts, capped=2))
    validate(payload)
    blocks = payload["blocks"]
    assert blocks[0]["text"]["text"] == "watchdesk: Hourly digest"
    assert blocks[1]["text"]["text"] == (
        "*3 alerts on 2 stories in 2 watchlists*\n2 of these alerts were held back by this channel's hourly cap."
    )
    opioids, weapons = blocks[2]["text"]["text"], blocks[3]["text"]["text"]
    assert opioids.startswith(
        "*opioids* — 2 alerts\n• <https://news.example/a?id=1&amp;ref=rss|Story A again>"
    )
    assert "(2 hits)" in opioids and weapons.startswith("*weapons* — 1 alert")
    assert "held back" in payload["text"]


def test_a_large_digest_keeps_to_50_blocks_and_summarises_the_rest() -> None:
    alerts = many_alerts(2000)
    payload = digest_payload(Digest("Daily digest", alerts))
    validate(payload)
    blocks = payload["blocks"]
    assert len(blocks) == 50
    shown = sum(t.count("\n• ") for t in (b["text"]["text"] for b in blocks if b["type"] == "section"))
    last = blocks[-1]
    assert last["type"] == "context"
    more = re.search(r"and (\d+) more stories \((\d+) alerts\) not shown", last["elements"][0]["text"])
    assert more is not None
    assert shown + int(more.group(1)) == 2000 and int(more.group(2)) == 2000 - shown
    assert_inert(payload, {f"https://news.example/story/{i}" for i in range(2000)})


def test_a_small_digest_has_no_overflow_line() -> None:
    payload = digest_payload(Digest("Hourly digest", many_alerts(20)))
    validate(payload)
    assert all("not shown" not in t for t in text_fields(payload))


# ---- delivery -------------------------------------------------------------------------


def slack_config() -> ChannelConfig:
    return ChannelConfig("newsroom", "slack", {"webhook": "env:WD_TEST_SLACK_WEBHOOK"})


def deliver(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, alert: Alert | None = None
) -> DeliveryResult:
    monkeypatch.setenv("WD_TEST_SLACK_WEBHOOK", server.url(HOOK_PATH))

    async def run() -> DeliveryResult:
        channel = build_channel(slack_config())
        try:
            return await channel.send(alert or make_alert(), key="k1")
        finally:
            await channel.aclose()

    return asyncio.run(run())


def test_delivered_payload_is_json_block_kit(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route(HOOK_PATH, b"ok")
    assert deliver(server, monkeypatch, make_alert(HOSTILE)) == DeliveryResult(True)
    [request] = server.hits(HOOK_PATH)
    assert request.method == "POST" and request.headers["content-type"].startswith("application/json")
    assert request.headers["accept-encoding"] == "identity"  # answers are never inflated
    payload = json.loads(request.body)
    validate(payload)
    assert_inert(payload, {"https://news.example/a?id=1&amp;ref=rss"})


def test_digest_is_delivered_as_one_post(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route(HOOK_PATH, b"ok")
    monkeypatch.setenv("WD_TEST_SLACK_WEBHOOK", server.url(HOOK_PATH))

    async def run() -> DeliveryResult:
        channel = build_channel(slack_config())
        try:
            return await channel.send_digest(Digest("Hourly digest", many_alerts(300), capped=5), key="d1")
        finally:
            await channel.aclose()

    assert asyncio.run(run()).ok
    [request] = server.hits(HOOK_PATH)
    validate(json.loads(request.body))


def test_429_is_transient_with_retry_after(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route(HOOK_PATH, b"rate_limited", status=429, headers={"Retry-After": "120"})
    result = deliver(server, monkeypatch)
    assert (result.ok, result.permanent, result.retry_after) == (False, False, 120.0)
    assert TOKEN not in result.message and HOOK_PATH not in result.message


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"no_service"), (403, b"invalid_token"), (410, b"channel_is_archived"), (400, b"invalid_blocks")],
)
def test_revoked_or_rejected_is_permanent(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, status: int, body: bytes
) -> None:
    server.route(HOOK_PATH, body, status=status)
    result = deliver(server, monkeypatch)
    assert (result.ok, result.permanent) == (False, True)
    assert str(status) in result.message and body.decode() in result.message
    assert TOKEN not in result.message and HOOK_PATH not in result.message


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    server.route(HOOK_PATH, b"oops", status=status)
    result = deliver(server, monkeypatch)
    assert (result.ok, result.permanent) == (False, False)


def test_a_200_without_ok_is_not_success(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route(HOOK_PATH, b"<html>captive portal</html>")
    result = deliver(server, monkeypatch)
    assert (result.ok, result.permanent) == (False, False)
    assert "without 'ok'" in result.message


def test_an_answer_echoing_the_url_is_redacted(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def echo(request: Request) -> Reply:
        return Reply(400, f"bad request to {server.url(HOOK_PATH)} ({request.path})".encode())

    server.route(HOOK_PATH, handler=echo)
    result = deliver(server, monkeypatch)
    assert result.permanent and "[redacted]" in result.message
    assert TOKEN not in result.message


def test_a_closed_port_is_transient_and_hides_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WD_TEST_SLACK_WEBHOOK", f"http://127.0.0.1:{port}{HOOK_PATH}")

    async def run() -> DeliveryResult:
        channel = build_channel(slack_config())
        try:
            return await channel.send(make_alert(), key="k1")
        finally:
            await channel.aclose()

    result = asyncio.run(run())
    assert (result.ok, result.permanent) == (False, False)
    assert TOKEN not in result.message


def test_transport_error_text_is_redacted() -> None:
    url = f"https://hooks.slack.example{HOOK_PATH}"
    errors = [
        httpx.ConnectError(f"cannot connect to {url}"),
        httpx.RemoteProtocolError(f"bad answer for POST {HOOK_PATH}"),
    ]
    for error in errors:
        result = failure_result(error, "Slack", *url_secrets(url))
        assert TOKEN not in result.message and "[redacted]" in result.message


def test_a_webhook_secret_that_is_not_a_url_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad in ("javascript:" + TOKEN, "https://[::1/" + TOKEN, "https://hooks.example/ " + TOKEN):
        monkeypatch.setenv("WD_TEST_SLACK_WEBHOOK", bad)
        with pytest.raises(ChannelNotAvailable) as raised:
            build_channel(slack_config())
        assert TOKEN not in str(raised.value)
    monkeypatch.delenv("WD_TEST_SLACK_WEBHOOK")
    with pytest.raises(ChannelNotAvailable, match="WD_TEST_SLACK_WEBHOOK is not set"):
        build_channel(slack_config())


def test_the_channel_is_a_slack_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WD_TEST_SLACK_WEBHOOK", "https://hooks.slack.example" + HOOK_PATH)
    channel = build_channel(slack_config())
    assert isinstance(channel, SlackChannel) and channel.name == "newsroom"
    asyncio.run(channel.aclose())
