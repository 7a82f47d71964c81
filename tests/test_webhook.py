"""The webhook channel against a local HTTP receiver: the JSON hit, the signature, and
answers classified. Also the optional Apprise channel (its json:// service posts to the
same kind of receiver)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from server import LocalServer

from watchdesk.config import ChannelConfig
from watchdesk.models import Alert, DeliveryResult, Digest
from watchdesk.notify import Channel, ChannelNotAvailable, build_channel
from watchdesk.notify.webhook import WebhookChannel, sign, verify_signature

# Apprise 1.x-2.x imports the deprecated imghdr module.
pytestmark = pytest.mark.filterwarnings("ignore:.imghdr. is deprecated:DeprecationWarning")

SECRET = "whsec-test-value"
T0 = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)


def make_alert(
    title: str = "Darknet vendor charged", *, story: str = "a", watchlist: str = "opioids"
) -> Alert:
    return Alert(
        watchlist=watchlist,
        title=title,
        link="https://news.example/a",
        outlet="Metro",
        published=T0,
        terms=("fentanyl",),
        snippet="pills that contained fentanyl",
        snippet_marks=((21, 29),),
        query="fentanyl",
        story_key=story,
    )


def run(channel: Channel, alert: Alert | None = None, digest: Digest | None = None) -> DeliveryResult:
    async def go() -> DeliveryResult:
        try:
            if digest is not None:
                return await channel.send_digest(digest, key="d1")
            return await channel.send(alert or make_alert(), key="k1")
        finally:
            await channel.aclose()

    return asyncio.run(go())


def signed_channel(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Channel:
    monkeypatch.setenv("WD_TEST_WEBHOOK_SECRET", SECRET)
    options = {"url": server.url("/hook"), "secret": "env:WD_TEST_WEBHOOK_SECRET"}
    return build_channel(ChannelConfig("ops", "webhook", options))


def test_body_is_the_json_hit(server: LocalServer) -> None:
    server.route("/hook", b"", status=204)
    hostile = make_alert('<script>"x"</script>\u2028line')
    channel = build_channel(ChannelConfig("ops", "webhook", {"url": server.url("/hook")}))
    assert run(channel, hostile) == DeliveryResult(True)
    [request] = server.hits("/hook")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-watchdesk-event"] == "alert"
    assert request.headers["x-watchdesk-delivery"] == "k1"
    assert "x-watchdesk-signature" not in request.headers  # no secret, no signature
    assert request.body.isascii()
    assert json.loads(request.body) == {
        "event": "alert",
        "channel": "ops",
        "key": "k1",
        "alert": {
            "watchlist": "opioids",
            "title": '<script>"x"</script>\u2028line',
            "link": "https://news.example/a",
            "outlet": "Metro",
            "published": "2026-11-02T23:00:00+00:00",
            "terms": ["fentanyl"],
            "snippet": "pills that contained fentanyl",
            "snippet_marks": [[21, 29]],
            "query": "fentanyl",
            "story_key": "a",
            "test": False,
            "kind": "hit",
            "also_in": [],
        },
    }


def test_a_non_http_link_is_sent_as_null(server: LocalServer) -> None:
    server.route("/hook", b"ok")
    alert = Alert("w", "t", "javascript:alert(1)", None, None, (), "")
    assert run(WebhookChannel("ops", server.url("/hook")), alert).ok
    assert json.loads(server.hits("/hook")[0].body)["alert"]["link"] is None


def test_signature_verifies_with_the_secret(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route("/hook", b"ok")
    before = int(time.time())
    assert run(signed_channel(server, monkeypatch)).ok
    [request] = server.hits("/hook")
    timestamp = request.headers["x-watchdesk-timestamp"]
    signature = request.headers["x-watchdesk-signature"]
    assert before <= int(timestamp) <= time.time() + 1
    # What a receiver computes, independently of our code: HMAC-SHA256 over "<ts>.<body>".
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert signature == "sha256=" + expected.hexdigest()
    assert verify_signature(SECRET, request.body, timestamp, signature)
    assert not verify_signature("another secret", request.body, timestamp, signature)
    assert not verify_signature(SECRET, request.body + b" ", timestamp, signature)
    assert not verify_signature(SECRET, request.body, str(int(timestamp) + 1), signature)


def test_a_replayed_request_is_refused_by_the_timestamp() -> None:
    body = b'{"event":"alert"}'
    signature = sign(SECRET, "1800000000", body)
    assert verify_signature(SECRET, body, "1800000000", signature, now=1_800_000_100)
    assert not verify_signature(SECRET, body, "1800000000", signature, now=1_800_000_000 + 301)
    assert not verify_signature(SECRET, body, "not-a-number", signature, now=1_800_000_000)


def test_the_clock_sets_the_timestamp(server: LocalServer) -> None:
    server.route("/hook", b"ok")
    channel = WebhookChannel("ops", server.url("/hook"), secret=SECRET, clock=lambda: 1_800_000_000.7)
    assert run(channel).ok
    request = server.hits("/hook")[0]
    assert request.headers["x-watchdesk-timestamp"] == "1800000000"
    assert request.headers["x-watchdesk-signature"] == sign(SECRET, "1800000000", request.body)


def test_digest_is_one_post_grouped_by_watchlist_and_story(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.route("/hook", b"ok")
    alerts = (
        make_alert("A2", story="a"),
        make_alert("B", story="b", watchlist="weapons"),
        make_alert("A1", story="a"),
    )
    assert run(signed_channel(server, monkeypatch), digest=Digest("Hourly digest", alerts, capped=1)).ok
    [request] = server.hits("/hook")
    assert request.headers["x-watchdesk-event"] == "digest"
    assert verify_signature(
        SECRET,
        request.body,
        request.headers["x-watchdesk-timestamp"],
        request.headers["x-watchdesk-signature"],
    )
    doc = json.loads(request.body)
    assert (doc["event"], doc["title"], doc["count"], doc["capped"]) == ("digest", "Hourly digest", 3, 1)
    opioids, weapons = doc["watchlists"]
    assert (opioids["watchlist"], opioids["count"], weapons["watchlist"]) == ("opioids", 2, "weapons")
    [story] = opioids["stories"]
    assert (story["story_key"], story["count"]) == ("a", 2)
    assert [a["title"] for a in story["alerts"]] == ["A2", "A1"]


def test_500_is_transient(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route("/hook", b"boom", status=500)
    result = run(signed_channel(server, monkeypatch))
    assert (result.ok, result.permanent) == (False, False)
    assert result.message == "webhook answered HTTP 500: boom"


def test_400_is_permanent(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.route("/hook", b"bad payload", status=400)
    result = run(signed_channel(server, monkeypatch))
    assert (result.ok, result.permanent) == (False, True)
    assert SECRET not in result.message


def test_429_honours_retry_after(server: LocalServer) -> None:
    server.route("/hook", b"", status=429, headers={"Retry-After": "30"})
    result = run(WebhookChannel("ops", server.url("/hook")))
    assert (result.ok, result.permanent, result.retry_after) == (False, False, 30.0)


def test_a_redirect_is_not_followed_and_is_permanent(server: LocalServer) -> None:
    server.route("/hook", b"", status=301, headers={"Location": server.url("/elsewhere")})
    server.route("/elsewhere", b"ok")
    result = run(WebhookChannel("ops", server.url("/hook")))
    assert (result.ok, result.permanent) == (False, True)
    assert server.hits("/elsewhere") == []


# ---- apprise (optional extra) ---------------------------------------------------------


def apprise_config() -> ChannelConfig:
    return ChannelConfig("phones", "apprise", {"urls": "env:WD_TEST_APPRISE_URLS"})


def test_apprise_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # as if it were not installed
    monkeypatch.setenv("WD_TEST_APPRISE_URLS", "json://127.0.0.1/")
    with pytest.raises(ChannelNotAvailable, match=r"pip install 'watchdesk\[apprise\]'"):
        build_channel(apprise_config())


def apprise_receiver(server: LocalServer, monkeypatch: pytest.MonkeyPatch, status: int = 200) -> Channel:
    pytest.importorskip("apprise")
    server.route("/apprise", b"{}", status=status)
    monkeypatch.setenv("WD_TEST_APPRISE_URLS", f"json://127.0.0.1:{server.port}/apprise")
    return build_channel(apprise_config())


def test_apprise_delivers_an_alert(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(apprise_receiver(server, monkeypatch), make_alert("x\r\nBcc: y"))
    assert result.ok
    posted: dict[str, Any] = json.loads(server.hits("/apprise")[0].body)
    assert posted["title"] == "[watchdesk] opioids: x Bcc: y"
    assert "pills that contained *fentanyl*" in posted["message"]


def test_apprise_delivers_a_digest(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = Digest("Hourly digest", (make_alert(), make_alert("Other", story="b")), capped=1)
    assert run(apprise_receiver(server, monkeypatch), digest=digest).ok
    posted = json.loads(server.hits("/apprise")[0].body)
    assert posted["title"] == "[watchdesk] Hourly digest: 2 alerts on 2 stories"
    assert "1 of these alerts was held back" in posted["message"]


def test_apprise_failure_is_transient(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(apprise_receiver(server, monkeypatch, status=500))
    assert (result.ok, result.permanent) == (False, False)
