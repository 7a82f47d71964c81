"""POSTing to an HTTP endpoint for the channels that do (Slack, webhook), and what an
answer means for the outbox.

| answer                                    | DeliveryResult                          |
|-------------------------------------------|-----------------------------------------|
| 2xx                                       | ok (Slack also needs the body `ok`)     |
| 408, 425, 429, 5xx                        | transient; retry_after from Retry-After |
| 3xx (redirects are not followed)          | permanent                               |
| any other 4xx (400, 401, 403, 404, 410...) | permanent                               |
| timeout, connection or protocol error     | transient                               |
| invalid URL or scheme                     | permanent                               |

Messages never contain the URL or any other secret passed as `secrets` (or `scrub`, a
config.secrets.Redactor): an answer's text is scrubbed before it is cut to be shown, and
its end is treated as cut when the answer was read only to MAX_ANSWER_BYTES.

A channel POSTs through an `Endpoint`: one kept-alive connection (asyncio) that speaks
HTTP/1.1 through h11, the protocol engine httpx itself uses. The httpx client, and even
httpcore's pool under it, spent ~0.45 ms of CPU a POST (request and response models,
cookies, auth and redirect hooks, anyio cancel scopes and locks): with the renderer, half
of what a Slack delivery cost, while the POST itself needs ~0.1 ms. What the client did
and this does too: no environment proxies, redirects not followed, certificates
verified (certifi's CA store, as httpx), answers never inflated and read only to
MAX_ANSWER_BYTES, one deadline for the whole exchange. Channel URLs are the operator's (a
secret or the config), so, as before, they do not go through the guard of feed links.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import h11
import httpx

from .. import __version__
from ..config.secrets import Redactor
from ..config.secrets import url_secrets as secret_url_pieces
from ..models import DeliveryResult
from ..web import parse_retry_after, tls_context
from .sanitize import one_line

USER_AGENT = f"watchdesk/{__version__}"
DEFAULT_TIMEOUT = 30.0
MAX_ANSWER_BYTES = 4096  # we only read the start of an answer: enough for an error text
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # at most MAX_ANSWER_BYTES

    @property
    def text(self) -> str:
        return self.said()

    def said(self, scrub: Redactor | None = None) -> str:
        """The start of the answer on one line, scrubbed (before it is cut) of the secrets."""
        text = self.body.decode("utf-8", "replace")
        if scrub is not None:
            text = scrub(text, cut=len(self.body) >= MAX_ANSWER_BYTES)
        return one_line(text)[:200]


KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept for the next POST (httpx's default)
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305, as anyio (under httpx) connects
UNREAD_LIMIT = 1 << 20  # bytes a peer may send ahead of our reading before we hang up


class _Wire(asyncio.Protocol):
    """One connection's incoming bytes, kept until read; whether the peer has closed."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.received = bytearray()
        self.closed = False  # the peer sent EOF, or the connection is gone
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # done: gone
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > UNREAD_LIMIT and self.transport is not None:
            # Far more than an answer we read (MAX_ANSWER_BYTES), or bytes sent to an
            # idle connection: the peer is not answering our request. Hang up.
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """The bytes that arrived (waiting for some); b"" once the peer has closed."""
        while not self.received and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self.received)
        self.received.clear()
        return data


@dataclass
class _Connection:
    wire: _Wire
    transport: asyncio.Transport
    protocol: h11.Connection
    loop: asyncio.AbstractEventLoop
    idle_since: float = 0.0

    def reusable(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Idle, open, recent, silent (an answer nobody asked for, or the peer closing,
        means it is done) and of this event loop."""
        return (
            loop is self.loop
            and self.protocol.our_state is h11.IDLE
            and not self.wire.closed
            and not self.wire.received
            and loop.time() - self.idle_since <= KEEPALIVE_EXPIRY
        )

    def close(self) -> None:
        if not self.loop.is_closed():  # a closed loop's transports can only be left to GC
            self.transport.close()

    async def wait_closed(self, timeout: float = 1.0) -> None:
        """Until the transport is gone (a TLS close takes a round trip), at most `timeout`."""
        if self.loop is asyncio.get_running_loop() and not self.wire.lost.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.wire.lost), timeout)


@dataclass(frozen=True)
class _Target:
    host: str  # as connected to (no IPv6 brackets)
    port: int
    tls: bool
    path: bytes  # path and query
    headers: tuple[tuple[bytes, bytes], ...]  # sent with every POST


def _target(url: str) -> _Target:
    """Raises httpx.InvalidURL or httpx.UnsupportedProtocol (permanent in failure_result).
    Credentials in the URL (https://user:password@host/...) are sent as Basic auth, as
    httpx does."""
    parts = httpx.URL(url)
    if parts.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{parts.scheme}://'.")
    host = parts.raw_host.decode("ascii")  # IDNA-encoded; IPv6 without brackets
    if not host:
        raise httpx.InvalidURL("Request URL has no host.")
    tls = parts.scheme == "https"
    port = (443 if tls else 80) if parts.port is None else parts.port
    if not 0 < port < 65536:
        raise httpx.InvalidURL(f"Request URL has an invalid port {port}.")
    headers = [
        (b"Host", parts.netloc),
        (b"Accept", b"*/*"),
        # Answers are read raw and only their start: nothing to inflate (no gzip bombs).
        (b"Accept-Encoding", b"identity"),
        (b"User-Agent", USER_AGENT.encode()),
    ]
    if parts.userinfo:
        user, _, password = parts.userinfo.partition(b":")
        credentials = base64.b64encode(unquote_to_bytes(user) + b":" + unquote_to_bytes(password))
        headers.append((b"Authorization", b"Basic " + credentials))
    return _Target(host, port, tls, parts.raw_path, tuple(headers))


class Endpoint:
    """POSTs to one URL (a channel's webhook), one at a time, over a kept-alive connection.

    Connections belong to one event loop: a channel may be used by several asyncio.run()
    calls (notify-test, tests), so a new loop opens a new connection.
    """

    def __init__(self, url: str, *, tls: ssl.SSLContext | None = None):
        self.url = url
        self._tls = tls
        self._target: _Target | None = None
        self._connection: _Connection | None = None
        self._turn: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def post(
        self, body: bytes, headers: Mapping[str, str], *, deadline: float = DEFAULT_TIMEOUT
    ) -> Answer:
        """POST body; the whole exchange within `deadline` seconds. Raises httpx.HTTPError or
        TimeoutError (see failure_result)."""
        if self._target is None:
            self._target = _target(self.url)
        target = self._target
        request = h11.Request(
            method=b"POST",
            target=target.path,
            headers=[
                *target.headers,
                *((name.encode(), value.encode()) for name, value in headers.items()),
                (b"Content-Length", str(len(body)).encode()),
            ],
        )
        async with self._lock():
            try:
                async with asyncio.timeout(deadline):
                    return await self._exchange(target, request, body)
            except BaseException:
                self._drop()  # a connection left mid-exchange is in no state to be reused
                raise

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Lock())
        return self._turn[1]

    async def _exchange(self, target: _Target, request: h11.Request, body: bytes) -> Answer:
        connection = await self._connect(target)
        protocol = connection.protocol
        try:
            out = (
                protocol.send(request)
                + protocol.send(h11.Data(data=body))
                + protocol.send(h11.EndOfMessage())
            )
        except h11.LocalProtocolError as e:  # e.g. a header value with a line break
            raise httpx.LocalProtocolError(str(e)) from None
        connection.transport.write(out)
        status, answer_headers, head = 0, {}, bytearray()
        try:
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    data = await connection.wire.read()
                    if not data and not status:
                        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
                    protocol.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    answer_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    head += event.data
                    if len(head) > MAX_ANSWER_BYTES:
                        self._drop()  # the rest is not read: the connection cannot be reused
                        break
                elif isinstance(event, h11.EndOfMessage):
                    self._done(connection)
                    break
                # h11.InformationalResponse (1xx): the answer follows
        except h11.RemoteProtocolError as e:
            raise httpx.RemoteProtocolError(str(e)) from None
        return Answer(status, answer_headers, bytes(head[:MAX_ANSWER_BYTES]))

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is not None and connection.reusable(loop):
            return connection
        self._drop()
        tls = (self._tls or tls_context()) if target.tls else None
        try:
            transport, wire = await loop.create_connection(
                _Wire,
                target.host,
                target.port,
                ssl=tls,
                server_hostname=target.host if tls else None,
                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,  # a dead IPv6 route costs 0.25 s, not the POST
            )
        except (OSError, ValueError) as e:  # refused, unreachable, DNS, TLS (an OSError too)
            raise httpx.ConnectError(str(e) or type(e).__name__) from None
        self._connection = _Connection(wire, transport, h11.Connection(h11.CLIENT), loop)
        return self._connection

    def _done(self, connection: _Connection) -> None:
        """The exchange is complete: keep the connection when both sides may go on."""
        protocol = connection.protocol
        unread, closed = protocol.trailing_data  # bytes after the answer: not ours to read
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE and not (unread or closed):
            protocol.start_next_cycle()
            connection.idle_since = connection.loop.time()
        else:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def aclose(self) -> None:
        connection = self._connection
        self._drop()
        if connection is not None:
            await connection.wait_closed()


def status_result(answer: Answer, service: str, scrub: Redactor | None = None) -> DeliveryResult:
    """The outcome of an answer by its status alone (see the table above); what the
    answer said is scrubbed by `scrub`."""
    status = answer.status
    text = answer.said(scrub)
    said = f": {text}" if text else ""
    if 200 <= status < 300:
        return DeliveryResult(True)
    if status in TRANSIENT_STATUSES or status >= 500:
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        return DeliveryResult(False, f"{service} answered HTTP {status}{said}", retry_after=retry_after)
    if 300 <= status < 400:
        return DeliveryResult(
            False, f"{service} answered HTTP {status} (a redirect; check the configured URL)", permanent=True
        )
    return DeliveryResult(False, f"{service} answered HTTP {status}{said}", permanent=True)


def failure_result(
    error: BaseException, service: str, *secrets: str, scrub: Redactor | None = None
) -> DeliveryResult:
    """The outcome of a request that got no answer; the text is redacted of `secrets`
    (and by `scrub`)."""
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return DeliveryResult(False, f"{service}: no answer in time ({type(error).__name__})")
    redactor = (scrub or Redactor()).with_values(*secrets)
    detail = redactor(f"{type(error).__name__}: {error}".rstrip(": "))
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return DeliveryResult(
            False, f"{service}: the configured URL is not usable ({detail})", permanent=True
        )
    return DeliveryResult(False, f"{service}: {detail}")


def url_secrets(url: str) -> tuple[str, ...]:
    """The strings to redact for a secret URL (config.secrets.url_secrets), as given and
    as httpx sends it (its path and query percent-encoded). Raises ValueError (without
    the URL) when httpx cannot use it."""
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError("not a usable URL") from None
    found = {*secret_url_pieces(url), *secret_url_pieces(str(parts))}
    return tuple(sorted(found, key=len, reverse=True))  # the whole URL is replaced before its pieces


def url_redactor(url: str, *secrets: str) -> Redactor:
    """A Redactor of a secret URL and `secrets`. Raises ValueError as url_secrets."""
    return Redactor(*url_secrets(url), *secrets)
