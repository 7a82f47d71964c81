"""The channels' HTTP POST (notify/http.py Endpoint) against real servers on 127.0.0.1:
one kept-alive connection, replaced when the server closes it or says something unasked,
answers read to their end or cut at MAX_ANSWER_BYTES, the deadline, a server that hangs
up, HTTPS with the certificate verified, and use from several event loops."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
import trustme
from server import LocalServer, Reply, Request, drip

from watchdesk.models import Alert, DeliveryResult
from watchdesk.notify.http import MAX_ANSWER_BYTES, USER_AGENT, Answer, Endpoint
from watchdesk.notify.webhook import WebhookChannel

JSON = {"Content-Type": "application/json"}
ALERT = Alert(
    watchlist="opioids",
    title="Darknet vendor charged",
    link="https://news.example/a",
    outlet="Metro",
    published=datetime(2026, 11, 2, 23, 0, tzinfo=UTC),
    terms=("fentanyl",),
    snippet="pills that contained fentanyl",
)


def deliver(channel: WebhookChannel) -> DeliveryResult:
    async def go() -> DeliveryResult:
        try:
            return await channel.send(ALERT, key="k1")
        finally:
            await channel.aclose()

    return asyncio.run(go())


def post_all(endpoint: Endpoint, bodies: list[bytes], deadline: float = 10.0) -> list[Answer]:
    """POST each body in turn within one event loop, then close the endpoint."""

    async def go() -> list[Answer]:
        try:
            return [await endpoint.post(body, JSON, deadline=deadline) for body in bodies]
        finally:
            await endpoint.aclose()

    return asyncio.run(go())


def peers(server: LocalServer, path: str) -> list[int]:
    return [r.peer for r in server.hits(path)]


def test_consecutive_posts_share_one_kept_alive_connection(server: LocalServer) -> None:
    server.route("/hook", b"ok")
    answers = post_all(Endpoint(server.url("/hook?a=1")), [b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert answers[0].headers["content-length"] == "2"  # lower-case names
    requests = server.hits("/hook")
    assert [r.body for r in requests] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert len(set(peers(server, "/hook"))) == 1
    first = requests[0]
    assert (first.method, first.path) == ("POST", "/hook?a=1")
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == "7"
    assert first.headers["accept-encoding"] == "identity"
    assert first.headers["user-agent"] == USER_AGENT


def test_a_connection_the_server_closes_is_replaced(server: LocalServer) -> None:
    server.route("/hook", b"ok", headers={"Connection": "close"})
    answers = post_all(Endpoint(server.url("/hook")), [b"1", b"2", b"3"])
    assert [a.status for a in answers] == [200] * 3
    assert len(set(peers(server, "/hook"))) == 3


def test_an_answer_is_read_only_to_its_cap_and_the_next_post_opens_a_new_connection(
    server: LocalServer,
) -> None:
    server.route("/big", b"x" * (MAX_ANSWER_BYTES * 50))
    server.route("/hook", b"ok")
    endpoint = Endpoint(server.url("/big"))
    big, again = post_all(endpoint, [b"1", b"2"])
    assert big.status == 200 and big.body == b"x" * MAX_ANSWER_BYTES
    assert again.body == b"x" * MAX_ANSWER_BYTES
    assert len(set(peers(server, "/big"))) == 2  # the unread rest made the first one unusable


def test_an_answer_without_length_is_read_to_the_close(server: LocalServer) -> None:
    server.route("/hook", handler=lambda req: Reply(200, chunks=[b"o", b"k"]))
    answers = post_all(Endpoint(server.url("/hook")), [b"1", b"2"])
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 2


def test_a_slow_answer_misses_the_deadline_and_the_next_post_is_answered(server: LocalServer) -> None:
    def slow_then_quick(req: Request) -> Reply:
        if req.body == b"slow":
            return Reply(200, chunks=drip(b"x" * 40, 0.1))
        return Reply(200, b"ok")

    server.route("/hook", handler=slow_then_quick)
    endpoint = Endpoint(server.url("/hook"))

    async def go() -> tuple[bool, Answer]:
        try:
            try:
                await endpoint.post(b"slow", JSON, deadline=0.3)
            except TimeoutError:
                timed_out = True
            else:
                timed_out = False
            return timed_out, await endpoint.post(b"quick", JSON)
        finally:
            await endpoint.aclose()

    timed_out, answer = asyncio.run(go())
    assert timed_out and (answer.status, answer.body) == (200, b"ok")


def test_a_missed_deadline_is_transient(server: LocalServer) -> None:
    server.route("/hook", handler=lambda req: Reply(200, chunks=drip(b"x" * 40, 0.1)))
    result = deliver(WebhookChannel("ops", server.url("/hook"), timeout=0.3))
    assert (result.ok, result.permanent) == (False, False)
    assert result.message == "webhook: no answer in time (TimeoutError)"


@contextmanager
def raw_server(script: Callable[[int, socket.socket], None]) -> Iterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that runs script(connection number, socket) for each
    connection it accepts; yields its port and the list of connection numbers so far."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(len(accepted))
            threading.Thread(target=script, args=(accepted[-1], conn), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()


def read_request(conn: socket.socket) -> bytes:
    """One request, head and body (by its Content-Length); b"" once the client has closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    ]
    while len(body) < int(lengths[0]):
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_bytes_after_an_answer_retire_the_connection() -> None:
    """A server that sends more than the answer (here an unasked 408 right behind it) must
    not have those bytes taken for the answer to the next POST."""

    def script(number: int, conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(
                OK + (b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n" if number == 0 else b"")
            )
            while read_request(conn):
                conn.sendall(OK)

    with raw_server(script) as (port, accepted):
        answers = post_all(Endpoint(f"http://127.0.0.1:{port}/hook"), [b"1", b"2", b"3"])
        assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
        assert accepted == [0, 1]


@pytest.mark.parametrize("then", ["answers unasked", "hangs up"])
def test_a_connection_the_server_touches_while_idle_is_replaced(then: str) -> None:
    def script(number: int, conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(OK)
            if number == 0:
                time.sleep(0.05)  # the client is done with the answer: the connection is idle
                if then == "hangs up":
                    return
                conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            while read_request(conn):
                conn.sendall(OK)

    async def go(port: int) -> list[Answer]:
        endpoint = Endpoint(f"http://127.0.0.1:{port}/hook")
        first = await endpoint.post(b"1", JSON)
        await asyncio.sleep(0.3)
        second = await endpoint.post(b"2", JSON)
        await endpoint.aclose()
        return [first, second]

    with raw_server(script) as (port, accepted):
        answers = asyncio.run(go(port))
        assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 2
        assert accepted == [0, 1]


def test_a_server_that_hangs_up_without_answering_is_transient() -> None:
    def script(number: int, conn: socket.socket) -> None:
        with conn:
            read_request(conn)

    with raw_server(script) as (port, _):
        result = deliver(WebhookChannel("ops", f"http://127.0.0.1:{port}/hook"))
    assert (result.ok, result.permanent) == (False, False)
    assert result.message == "webhook: RemoteProtocolError: Server disconnected without sending a response."


def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        post_all(Endpoint(f"http://127.0.0.1:{port}/hook"), [b"1"])


def test_an_answer_of_exactly_the_cap_keeps_the_connection(server: LocalServer) -> None:
    server.route("/hook", b"x" * MAX_ANSWER_BYTES)
    answers = post_all(Endpoint(server.url("/hook")), [b"1", b"2"])
    assert [a.body for a in answers] == [b"x" * MAX_ANSWER_BYTES] * 2
    assert len(set(peers(server, "/hook"))) == 1


def test_credentials_in_the_url_are_sent_as_basic_auth_and_redacted(server: LocalServer) -> None:
    server.route("/hook", b"no", status=401)
    url = server.url("/hook").replace("http://", "http://ops:s%3Acret%20pw@")
    result = deliver(WebhookChannel("ops", url))
    sent = server.hits("/hook")[0].headers["authorization"]
    assert sent == "Basic " + base64.b64encode(b"ops:s:cret pw").decode()
    assert (result.ok, result.permanent) == (False, True)
    assert "cret" not in result.message


@pytest.mark.parametrize("url", ["ftp://example.org/hook", "http:///hook", "http://127.0.0.1:0/hook"])
def test_an_unusable_url_raises_before_connecting(url: str) -> None:
    with pytest.raises((httpx.UnsupportedProtocol, httpx.InvalidURL)):
        post_all(Endpoint(url), [b"1"])


def test_one_endpoint_used_from_two_event_loops(server: LocalServer) -> None:
    server.route("/hook", b"ok")
    endpoint = Endpoint(server.url("/hook"))
    for body in (b"1", b"2"):
        answer = asyncio.run(endpoint.post(body, JSON))
        assert (answer.status, answer.body) == (200, b"ok")
    assert len(set(peers(server, "/hook"))) == 2  # a connection does not outlive its loop
    asyncio.run(endpoint.aclose())


def test_ipv6_loopback() -> None:
    try:
        srv = LocalServer("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with srv:
        srv.route("/hook", b"ok")
        [answer] = post_all(Endpoint(srv.url("/hook")), [b"1"])
        assert answer.status == 200
        assert srv.hits("/hook")[0].headers["host"] == f"[::1]:{srv.port}"


# ---- HTTPS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[LocalServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with LocalServer(tls=context) as srv:
        srv.route("/hook", b"ok")
        yield srv


def test_https_with_a_trusted_certificate_keeps_one_connection(
    ca: trustme.CA, tls_server: LocalServer
) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    assert tls_server.url("/hook").startswith("https://")
    answers = post_all(Endpoint(tls_server.url("/hook"), tls=trusting), [b"1", b"2"])
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 2
    assert len(set(peers(tls_server, "/hook"))) == 1


def test_https_with_an_untrusted_certificate_sends_nothing(tls_server: LocalServer) -> None:
    result = deliver(WebhookChannel("ops", tls_server.url("/hook")))  # certifi's CAs only
    assert (result.ok, result.permanent) == (False, False)
    assert (
        result.message.startswith("webhook: ConnectError") and "CERTIFICATE_VERIFY_FAILED" in result.message
    )
    assert tls_server.hits("/hook") == []
