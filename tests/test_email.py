"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1: headers, both
parts, escaping, threading, failure classification, login, STARTTLS and implicit TLS."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_fixture import free_port, smtp_server

from watchdesk.config import ChannelConfig
from watchdesk.models import Alert, DeliveryResult, Digest
from watchdesk.notify import ChannelNotAvailable, build_channel
from watchdesk.notify.email import EmailChannel, SmtpServer, parse_smtp_url
from watchdesk.notify.email_message import POLICY, alert_message

SENDER = "Watchdesk <watchdesk@example.org>"
RECIPIENTS = ("desk@example.org", "Night Editor <night@example.org>")
T0 = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)


def make_alert(
    title: str = "Darknet vendor charged",
    *,
    story: str = "https://news.example/a",
    watchlist: str = "opioids",
    link: str | None = "https://news.example/a",
    outlet: str = "Metro",
    snippet: str = "pills that contained fentanyl, the synthetic opioid",
) -> Alert:
    return Alert(
        watchlist=watchlist,
        title=title,
        link=link,
        outlet=outlet,
        published=T0,
        terms=("fentanyl",),
        snippet=snippet,
        snippet_marks=((21, 29),),
        story_key=story,
    )


# ---- a real SMTP server ---------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Recorder:
    """An aiosmtpd handler: keeps what it accepts; answers DATA from a script first."""

    def __init__(self, data_replies: tuple[str, ...] = (), rcpt_reply: str | None = None):
        self.received: list[Received] = []
        self.data_replies = list(data_replies)
        self.rcpt_reply = rcpt_reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls))
        return "250 2.0.0 accepted"


def plain_channel(port: int, **options: Any) -> EmailChannel:
    return EmailChannel("desk", SmtpServer("127.0.0.1", port, "none"), SENDER, RECIPIENTS, **options)


def send(channel: EmailChannel, alert: Alert, key: str = "k1") -> DeliveryResult:
    return asyncio.run(channel.send(alert, key=key))


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]


# ---- headers and parts -----------------------------------------------------------------


def test_alert_arrives_with_headers_and_both_parts() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        assert send(plain_channel(port), make_alert()) == DeliveryResult(True)
    [got] = recorder.received
    assert got.mail_from == "watchdesk@example.org"
    assert got.rcpt_tos == ["desk@example.org", "night@example.org"]
    msg = got.message
    assert msg["From"] == SENDER
    assert msg["To"] == "desk@example.org, Night Editor <night@example.org>"
    assert msg["Subject"] == "[watchdesk] opioids: Darknet vendor charged"
    assert msg["Message-ID"].startswith("<alert.") and msg["Message-ID"].endswith("@example.org>")
    assert msg["In-Reply-To"] == msg["References"]
    assert msg["In-Reply-To"].startswith("<story.") and msg["In-Reply-To"].endswith("@example.org>")
    assert msg["List-Id"] == "watchdesk opioids <opioids.watchdesk.example.org>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Reply-To"] is None and msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    text, html = parts(msg)
    assert "Darknet vendor charged" in text and "https://news.example/a" in text
    assert "Metro | 2026-11-02 23:00 UTC | watchlist: opioids" in text
    assert "*fentanyl*" in text
    assert '<a href="https://news.example/a">Darknet vendor charged</a>' in html
    assert "Metro · 2026-11-02 23:00 UTC · watchlist: opioids" in html
    assert "<mark><strong>fentanyl</strong></mark>" in html


def test_html_part_holds_only_escaped_feed_text() -> None:
    recorder = Recorder()
    hostile = make_alert(
        "<script>alert(1)</script> & <b>bold</b>",
        link="javascript:alert(1)",
        outlet='<img src=x onerror="alert(1)">',
        snippet='pills <iframe src="//evil"> contained fentanyl',
    )
    with smtp_server(recorder) as port:
        assert send(plain_channel(port), hostile).ok
    _, html = parts(recorder.received[0].message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;iframe" in html
    for raw in ("<script", "<img", "<iframe", "<b>", "javascript:"):
        assert raw not in html
    collector = TagCollector()
    collector.feed(html)
    assert collector.tags <= {"html", "head", "meta", "body", "h2", "p", "mark", "strong"}
    assert collector.hrefs == []  # a javascript: link is never made a link


def test_message_id_is_stable_per_key_and_differs_between_keys() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        channel = plain_channel(port)
        for key in ("k1", "k1", "k2"):
            assert send(channel, make_alert(), key).ok
    ids = [r.message["Message-ID"] for r in recorder.received]
    assert ids[0] == ids[1] != ids[2]


def test_alerts_on_the_same_story_thread_together() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        channel = plain_channel(port)
        assert send(channel, make_alert("First report", story="story-1"), "k1").ok
        assert send(channel, make_alert("Follow-up", story="story-1", watchlist="weapons"), "k2").ok
        assert send(channel, make_alert("Other story", story="story-2"), "k3").ok
    first, second, other = (r.message for r in recorder.received)
    assert first["Message-ID"] != second["Message-ID"]
    assert first["References"] == second["References"] == second["In-Reply-To"]
    assert other["References"] != first["References"]
    assert first["List-Id"] != second["List-Id"]


def test_alert_without_story_key_has_no_thread_headers() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        assert send(plain_channel(port), make_alert(story="")).ok
    msg = recorder.received[0].message
    assert msg["In-Reply-To"] is None and msg["References"] is None


@pytest.mark.parametrize(
    "title",
    [
        "x\r\nBcc: evil@example.org",
        "x\nBcc: evil@example.org",
        "x\rBcc: evil@example.org",
        "x\u2028Bcc: evil@example.org",
        "x\x85Bcc: evil@example.org",
        "x\x00\r\n\r\nBcc: evil@example.org",
    ],
)
def test_a_header_injection_title_adds_no_header(title: str) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        assert send(plain_channel(port), make_alert(title)).ok
    got = recorder.received[0]
    assert got.rcpt_tos == ["desk@example.org", "night@example.org"]
    msg = got.message
    assert msg["Bcc"] is None
    subject = msg["Subject"]
    assert subject.startswith("[watchdesk] opioids: x") and subject.endswith("Bcc: evil@example.org")
    assert not any(c in subject for c in "\r\n\x00\x85\u2028")
    head = got.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))


def test_a_long_title_gives_a_capped_subject() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        assert send(plain_channel(port), make_alert("Fentanyl " * 60)).ok
    subject = recorder.received[0].message["Subject"]
    assert len(subject) == 200 and subject.endswith("…")


def test_digest_is_one_message_grouped_with_count_and_cap() -> None:
    alerts = (
        make_alert("Story A again", story="a"),
        make_alert("Story B", story="b", watchlist="weapons"),
        make_alert("Story A", story="a"),
    )
    digest = Digest("Hourly digest, 22:00-23:00 UTC", alerts, capped=2)
    recorder = Recorder()
    with smtp_server(recorder) as port:
        assert asyncio.run(plain_channel(port).send_digest(digest, key="d1")).ok
    [got] = recorder.received
    msg = got.message
    assert msg["Subject"] == (
        "[watchdesk] Hourly digest, 22:00-23:00 UTC: 3 alerts on 2 stories in 2 watchlists"
    )
    assert msg["Message-ID"].startswith("<digest.")
    assert msg["List-Id"] == "watchdesk digest <digest.watchdesk.example.org>"
    text, html = parts(msg)
    assert "2 of these alerts were held back by this channel's hourly cap." in text
    assert "== opioids (2 alerts) ==" in text and "* Story A again — Metro" in text
    assert "2 of these alerts were held back" in html
    assert '<a href="https://news.example/a">Story A again</a>' in html and "(2 hits)" in html
    assert html.index("opioids") < html.index("weapons")


# ---- delivery outcomes ----------------------------------------------------------------


def test_451_is_transient_then_the_next_send_delivers() -> None:
    recorder = Recorder(data_replies=("451 4.3.0 try again later",))
    with smtp_server(recorder) as port:
        channel = plain_channel(port)
        first = send(channel, make_alert())
        assert (first.ok, first.permanent) == (False, False)
        assert first.message.startswith("SMTP 451")
        assert recorder.received == []
        assert send(channel, make_alert()).ok
    assert len(recorder.received) == 1


def test_550_is_permanent() -> None:
    recorder = Recorder(rcpt_reply="550 5.1.1 mailbox unavailable")
    with smtp_server(recorder) as port:
        result = send(plain_channel(port), make_alert())
    assert (result.ok, result.permanent) == (False, True)
    assert "550" in result.message and recorder.received == []


def test_a_552_after_data_is_permanent() -> None:
    recorder = Recorder(data_replies=("552 5.3.4 message too big",))
    with smtp_server(recorder) as port:
        result = send(plain_channel(port), make_alert())
    assert (result.ok, result.permanent) == (False, True)


def test_server_down_is_transient() -> None:
    result = send(plain_channel(free_port()), make_alert())
    assert (result.ok, result.permanent) == (False, False)
    assert "cannot reach the SMTP server" in result.message


# ---- login ----------------------------------------------------------------------------


def password_checker(login: bytes, password: bytes) -> Any:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (login, password)
        return AuthResult(success=ok, handled=False)

    return authenticator


def login_config(port: int) -> ChannelConfig:
    options = {
        "smtp": f"smtp://127.0.0.1:{port}",
        "tls": "none",
        "from": SENDER,
        "to": RECIPIENTS,
        "username": "watchdesk",
        "password": "env:WD_TEST_SMTP_PASSWORD",
    }
    return ChannelConfig("desk", "email", options)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_uses_the_password_from_the_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WD_TEST_SMTP_PASSWORD", "correct horse")
    recorder = Recorder()
    checker = password_checker(b"watchdesk", b"correct horse")
    options = {"authenticator": checker, "auth_require_tls": False, "auth_required": True}
    with smtp_server(recorder, **options) as port:
        channel = build_channel(login_config(port))
        assert asyncio.run(channel.send(make_alert(), key="k1")).ok
    assert len(recorder.received) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_login_is_permanent_and_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WD_TEST_SMTP_PASSWORD", "wrong-password-value")
    recorder = Recorder()
    checker = password_checker(b"watchdesk", b"correct horse")
    options = {"authenticator": checker, "auth_require_tls": False, "auth_required": True}
    with smtp_server(recorder, **options) as port:
        result = asyncio.run(build_channel(login_config(port)).send(make_alert(), key="k1"))
    assert (result.ok, result.permanent) == (False, True)
    assert "535" in result.message and "wrong-password-value" not in result.message
    assert recorder.received == []


# ---- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def client_trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_channel(port: int, mode: str, context: ssl.SSLContext | None, **options: Any) -> EmailChannel:
    server = SmtpServer("127.0.0.1", port, mode)
    return EmailChannel("desk", server, SENDER, RECIPIENTS, tls_context=context, **options)


def test_starttls_with_login(ca: trustme.CA) -> None:
    recorder = Recorder()
    checker = password_checker(b"watchdesk@example.org", b"s3cret")
    options = {"tls_context": server_tls(ca), "require_starttls": True, "authenticator": checker}
    with smtp_server(recorder, **options) as port:
        channel = tls_channel(port, "starttls", client_trusting(ca), password="s3cret")
        assert send(channel, make_alert()).ok
    assert recorder.received[0].tls


def test_implicit_tls(ca: trustme.CA) -> None:
    recorder = Recorder()
    with smtp_server(recorder, ssl_context=server_tls(ca)) as port:
        assert send(tls_channel(port, "implicit", client_trusting(ca)), make_alert()).ok
    assert recorder.received[0].tls


def test_an_untrusted_certificate_sends_nothing(ca: trustme.CA) -> None:
    recorder = Recorder()
    with smtp_server(recorder, tls_context=server_tls(ca)) as port:
        result = send(tls_channel(port, "starttls", None), make_alert())
    assert (result.ok, result.permanent) == (False, False)
    assert "TLS" in result.message and recorder.received == []


def test_starttls_not_offered_is_permanent_and_sends_nothing_in_clear() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        result = send(tls_channel(port, "starttls", None), make_alert())
    assert (result.ok, result.permanent) == (False, True)
    assert "STARTTLS" in result.message and recorder.received == []


# ---- config -----------------------------------------------------------------------------


def test_smtp_urls() -> None:
    assert parse_smtp_url("smtp://relay.example.org") == SmtpServer("relay.example.org", 587, "starttls")
    assert parse_smtp_url("smtps://relay.example.org") == SmtpServer("relay.example.org", 465, "implicit")
    assert parse_smtp_url("smtp://127.0.0.1:2525", "none") == SmtpServer("127.0.0.1", 2525, "none")
    assert parse_smtp_url("smtp://[::1]", "none") == SmtpServer("::1", 25, "none")
    for url, tls in [
        ("smtp://relay.example.org", "none"),
        ("smtp://user:pw@relay.example.org", None),
        ("http://relay.example.org", None),
        ("smtp://relay.example.org:port", None),
    ]:
        with pytest.raises(ValueError):
            parse_smtp_url(url, tls)


def test_an_unresolvable_password_makes_the_channel_unavailable_without_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WD_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(ChannelNotAvailable, match="WD_TEST_SMTP_PASSWORD is not set"):
        build_channel(login_config(2525))


def test_the_date_header_is_the_send_time() -> None:
    recorder = Recorder()
    sent_at = T0 + timedelta(hours=1)
    with smtp_server(recorder) as port:
        assert send(plain_channel(port, clock=lambda: sent_at), make_alert()).ok
    assert recorder.received[0].message["Date"].datetime == sent_at


class SessionCounter(Recorder):
    """Also counts SMTP sessions (each starts with EHLO)."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname  # what aiosmtpd does when no hook is installed
        return responses


def test_consecutive_messages_share_one_session_and_a_dropped_one_is_replaced() -> None:
    counter = SessionCounter()
    with smtp_server(counter) as port:
        channel = plain_channel(port)
        for key in ("k1", "k2", "k3"):
            assert send(channel, make_alert(), key).ok
        assert counter.sessions == 1
    assert len(counter.received) == 3
    # The server went away with the session open; a new server on the same port:
    from aiosmtpd.controller import Controller

    again = SessionCounter()
    controller = Controller(again, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert send(channel, make_alert(), "k4").ok
    finally:
        controller.stop()
    assert again.sessions == 1 and len(again.received) == 1
    asyncio.run(channel.aclose())


# ---- serialisation short cut (email_message.FastCompat32) --------------------------------

HEADER_NAMES = ["Subject", "To", "Message-ID", "List-Id", "Content-Type", "X-A"]


def assert_folds_alike(name: str, value: str) -> None:
    for linesep in ("\n", "\r\n"):
        fast, slow = POLICY.clone(linesep=linesep), email.policy.compat32.clone(linesep=linesep)
        assert fast.fold(name, value) == slow.fold(name, value)
        assert fast.fold_binary(name, value) == slow.fold_binary(name, value)


@settings(max_examples=2000, deadline=None)
@given(
    name=st.sampled_from(HEADER_NAMES),
    value=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90),
        st.text(max_size=90),  # anything: what is not short printable ASCII takes compat32's way
    ),
)
def test_fast_header_serialisation_is_compat32s(name: str, value: str) -> None:
    assert_folds_alike(name, value)


@settings(max_examples=1000, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES), over=st.integers(-3, 3), data=st.data())
def test_fast_header_serialisation_is_compat32s_at_the_line_length(
    name: str, over: int, data: st.DataObject
) -> None:
    size = 78 - len(name) - 2 + over  # around where compat32 starts folding
    assert_folds_alike(name, data.draw(st.text(alphabet="ab ;,\t", min_size=size, max_size=size)))


def test_a_message_serialises_as_with_compat32() -> None:
    message = alert_message(
        make_alert("Fentanyl " * 20), key="k1", sender=SENDER, recipients=RECIPIENTS, now=T0
    )
    assert message.as_bytes(policy=email.policy.compat32) == message.as_bytes()
    # email_message.boundary() relies on this: no base64 line can start with "--".
    assert [part["Content-Transfer-Encoding"] for part in message.get_payload()] == ["base64", "base64"]
    text, html = parts(Received("", [], message.as_bytes(), False).message)
    assert "Fentanyl" in text and "<h2" in html
