"""The one place HTTP requests are made: client factory, limits and guarded GET.

Every request: a total deadline (not httpx's per-read timeout), a byte cap on the
inflated body, inflation done by us in bounded steps (httpx does not bound it),
`Accept-Encoding: gzip` only, `trust_env=False`, redirects followed by hand so each
hop is checked, and concurrency bounded globally and per host. Whatever goes wrong with
one request (httpx, httpcore, a URL they cannot encode) is a RequestFailed, never
another exception that would abort the caller's other work.

Opening a connection (DNS, TCP, TLS) has its own deadline, [network] connect_timeout,
inside the request's. A request waiting on the network (connecting, or no bytes for
STALL seconds) lends its global slot to the next request and waits in a separate,
larger allowance (WAITING_PER_SLOT x concurrency), so dead hosts cannot starve the live
ones; it gets a slot back, ahead of new requests, as soon as bytes arrive. Each origin
(scheme, host, port) keeps the client it was first given (deterministic, least loaded
first, a bounded LRU), and clients are added as origins arrive, each holding only as many
origins as it has connections for (per_host each), so one origin never waits for
another's connections and its kept-alive connections serve its next requests (within
httpx's keep-alive expiry, 5 s: the feeds of one site polled together, not a feed's next
poll 15 minutes later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
from httpcore._utils import is_socket_readable  # what httpcore's own streams answer with

from .. import __version__
from ..web import lower_scheme, tls_context, url_problem
from .guard import AddressPolicy, AddressRefused, guarded_transport

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"watchdesk/{__version__} (+https://github.com/watchdesk/watchdesk; feed watcher)"
# Several small clients beat one big one (encode/httpx#3215), and small pools beat big
# ones: httpcore polls every idle pooled connection on each request (encode/httpcore#928).
CONNECTIONS_PER_CLIENT = 5
# Clients are added as origins arrive, up to this many (and a quarter of the file
# descriptor limit's worth of connections); past it, origins share the least loaded.
MAX_CLIENTS = 1024
MAX_ORIGINS = 16_384  # origins whose client is remembered (LRU); ~150 bytes each
STALL = 0.05  # seconds without bytes after which a request lends its global slot
WAITING_PER_SLOT = 4  # requests that may wait on the network, per global slot
_CHUNK = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)


class RequestFailed(Exception):
    """A request that produced no usable response. `kind` is a models.FailureKind value."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    url: str  # the URL that answered
    headers: Mapping[str, str]
    body: bytes
    permanent_url: str | None  # final URL when every redirect hop was 301/308


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0  # total, per request, redirects included
    max_bytes: int = 10 * 2**20
    max_redirects: int = 5


class _Slots:
    """The global limit: `working` slots, and an allowance of requests that wait on the
    network without one. A request that got its first slot earlier (it lent it while
    connecting or waiting for bytes, or follows a redirect) comes before new requests:
    it is on the clock."""

    def __init__(self, working: int, waiting: int):
        self.free = working
        self.waiting_free = waiting
        self._resumed: deque[asyncio.Future[None]] = deque()
        self._fresh: deque[asyncio.Future[None]] = deque()

    async def acquire(self, resumed: bool) -> None:
        fut = asyncio.get_running_loop().create_future()
        (self._resumed if resumed else self._fresh).append(fut)
        self._wake()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # given a slot, then cancelled before it could use it
            raise

    def release(self) -> None:
        self.free += 1
        self._wake()

    def _wake(self) -> None:
        while self.free > 0 and (self._resumed or self._fresh):
            fut = (self._resumed or self._fresh).popleft()
            if not fut.done():  # a cancelled waiter's future is done
                self.free -= 1
                fut.set_result(None)


_NONE, _WORKING, _WAITING = 0, 1, 2


class _Turn:
    """One request's place in _Slots: a working slot, a waiting one, or none."""

    __slots__ = ("slots", "state", "started")

    def __init__(self, slots: _Slots):
        self.slots = slots
        self.state = _NONE
        self.started = False

    async def work(self) -> None:
        if self.state == _WORKING:
            return
        if self.state == _WAITING:
            self.slots.waiting_free += 1
            self.state = _NONE
        await self.slots.acquire(resumed=self.started)
        self.state = _WORKING
        self.started = True

    def lend(self) -> None:
        """Waiting on the network: give the working slot to the next request, if the
        waiting allowance has room (else keep it, as before)."""
        if self.state == _WORKING and self.slots.waiting_free > 0:
            self.slots.waiting_free -= 1
            self.state = _WAITING
            self.slots.release()

    def finish(self) -> None:
        if self.state == _WORKING:
            self.slots.release()
        elif self.state == _WAITING:
            self.slots.waiting_free += 1
        self.state = _NONE


# The request the running task is making: the network backend below finds it here
# (httpcore connects and reads in the task of the request that needs it).
_TURN: ContextVar[_Turn | None] = ContextVar("watchdesk_net_turn", default=None)


def _connect_timed_out(host: str, port: int, timeout: float, what: str) -> RequestFailed:
    return RequestFailed(
        "network",
        f"connect timeout: {what} {host}:{port} not done within {timeout:g}s ([network] connect_timeout)",
    )


class _TurnBackend(httpcore.AsyncNetworkBackend):
    """Around the guarded backend: one deadline for DNS + TCP + TLS, and the global slot
    lent while connecting and while no bytes come."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, connect_timeout: float):
        self.inner = inner
        self.connect_timeout = connect_timeout

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        turn = _TURN.get()
        if turn is not None:
            turn.lend()
        deadline = asyncio.get_running_loop().time() + self.connect_timeout
        try:
            async with asyncio.timeout_at(deadline) as cm:
                stream = await self.inner.connect_tcp(
                    host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
        except TimeoutError:
            if cm.expired():
                raise _connect_timed_out(host, port, self.connect_timeout, "connection to") from None
            raise
        return _TurnStream(stream, deadline, host, port, self.connect_timeout)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


_UNKNOWN = object()  # _TurnStream's socket, not looked up yet


class _TurnStream(httpcore.AsyncNetworkStream):
    def __init__(
        self,
        inner: httpcore.AsyncNetworkStream,
        connect_deadline: float,
        host: str,
        port: int,
        timeout: float,
    ):
        self.inner = inner
        self._deadline = connect_deadline
        self._where = (host, port, timeout)
        self._socket: Any = _UNKNOWN

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        turn = _TURN.get()
        if turn is None:
            return await self.inner.read(max_bytes, timeout)
        await turn.work()
        lend = asyncio.get_running_loop().call_later(STALL, turn.lend)
        try:
            data = await self.inner.read(max_bytes, timeout)
        finally:
            lend.cancel()
        await turn.work()  # bytes came: back to work (first in line if it lent its slot)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        turn = _TURN.get()
        if turn is not None:
            await turn.work()  # connected (or reused): the request needs a working slot
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout_at(self._deadline) as cm:
                stream = await self.inner.start_tls(ssl_context, server_hostname, timeout)
        except TimeoutError:
            if cm.expired():
                host, port, t = self._where
                raise _connect_timed_out(host, port, t, "TLS handshake with") from None
            raise
        return _TurnStream(stream, self._deadline, *self._where)

    def get_extra_info(self, info: str) -> Any:
        # httpcore asks "is_readable" of every idle connection in a client's pool at every
        # request (has_expired), and anyio answers each ask with a getpeername() and a new
        # dict of attributes: a sixth of the loop's time at 300 polls/s. The socket does
        # not change, so it is looked up once and polled as httpcore itself polls it.
        if info in ("is_readable", "socket"):
            if self._socket is _UNKNOWN:
                self._socket = self.inner.get_extra_info("socket")
            return self._socket if info == "socket" else is_socket_readable(self._socket)
        return self.inner.get_extra_info(info)


@dataclass(slots=True)
class _HostGate:
    gate: asyncio.Semaphore
    users: int = 0


class HttpPool:
    """httpx clients by origin, with global (working / waiting) and per-host limits."""

    def __init__(
        self,
        *,
        concurrency: int = 20,
        per_host: int = 2,
        user_agent: str = "",
        allow: tuple[str, ...] = (),
        any_address: bool = False,
        connect_timeout: float = 10.0,
    ):
        """`allow`: CIDR ranges reachable although not global. `any_address`: no address
        check at all, for any request or redirect (kept for old callers; for the URLs
        the operator wrote, use `get(..., trusted=True)` instead, which trusts the
        written URL only)."""
        self.policy = AddressPolicy(allow, any_address=any_address)
        self.connect_timeout = connect_timeout  # [network] connect_timeout
        self._concurrency = concurrency
        self._shards = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))  # clients made at once
        self._user_agent = user_agent or DEFAULT_USER_AGENT
        self._per_host_limit = per_host
        # Each origin may use per_host connections at once: a client holds as many origins
        # as its connections allow, so no origin waits for another's (a dead one's) turn.
        # A client keeps CONNECTIONS_PER_CLIENT (httpcore scans all of a pool's connections
        # at every request: 50 in one pool cost 0.5 ms a poll); an origin allowed more than
        # that spreads over `_span` clients of its own.
        self._connections = CONNECTIONS_PER_CLIENT
        self._span = max(1, -(-per_host // CONNECTIONS_PER_CLIENT))
        self._origins_per_client = max(1, CONNECTIONS_PER_CLIENT // max(1, per_host))
        self._turns_taken = 0  # spreads an origin's requests over its clients in turn
        self._max_clients = max(self._shards, min(MAX_CLIENTS, _descriptors() // (4 * self._connections)))
        # Clients (their pooled connections) and semaphores belong to one event loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._client_gates: list[asyncio.Semaphore] = []
        self._slots = _Slots(concurrency, WAITING_PER_SLOT * concurrency)
        self._hosts: dict[str, _HostGate] = {}
        # origin -> index into _clients (LRU), how many origins each client has, and the
        # first client that may have room.
        self._origins: OrderedDict[tuple[str, str], tuple[int, ...]] = OrderedDict()
        self._load: list[int] = []
        self._fill = 0
        # Unguarded clients, sharded like _clients, made on first use: for the first hop
        # of a trusted=True request only. Their connections are never used by a guarded
        # request (a link inside a feed to the same intranet host is still refused).
        self._trusted: list[httpx.AsyncClient | None] = []
        self._trusted_gates: list[asyncio.Semaphore] = []

    def _client(self, policy: AddressPolicy) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(30.0, connect=self.connect_timeout),
            transport=guarded_transport(
                policy,
                httpx.Limits(
                    max_connections=self._connections,
                    max_keepalive_connections=self._connections,
                ),
                ssl_context=tls_context(),
                wrap=lambda backend: _TurnBackend(backend, self.connect_timeout),
            ),
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "gzip"},
        )

    def _trusted_client(self, shard: int) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The client for a URL the operator wrote, with trust_config_feeds: no address
        check for that one request; its redirects go through the guarded clients."""
        client = self._trusted[shard]
        if client is None:
            client = self._trusted[shard] = self._client(AddressPolicy(any_address=True))
        return client, self._trusted_gates[shard]

    def _bind(self) -> None:
        """Use clients of the running loop: a Runtime may be driven by several asyncio.run()
        calls, and a keep-alive connection from a closed loop cannot be reused."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        self._loop = loop
        self._clients, self._client_gates, self._trusted, self._trusted_gates = [], [], [], []
        self._load, self._fill = [], 0
        self._origins = OrderedDict()
        for _ in range(self._shards):
            self._add_client()
        self._slots = _Slots(self._concurrency, WAITING_PER_SLOT * self._concurrency)
        self._hosts = {}

    def _add_client(self) -> int:
        self._clients.append(self._client(self.policy))
        # At most as many requests per client as it has connections: more would queue inside
        # httpcore, which rescans its waiting requests x connections on every change.
        self._client_gates.append(asyncio.Semaphore(self._connections))
        self._trusted.append(None)
        self._trusted_gates.append(asyncio.Semaphore(self._connections))
        self._load.append(0)
        return len(self._clients) - 1

    def _shard(self, origin: tuple[str, str]) -> int:
        """The client of an origin: the same one every time while it is remembered, so its
        kept-alive connections are there for its next request; a new origin goes to the
        first client with room, a new client, or (past the limit) the least loaded."""
        group = self._origins.get(origin)
        if group is not None:
            self._origins.move_to_end(origin)
        else:
            if len(self._origins) >= MAX_ORIGINS:
                _, gone = self._origins.popitem(last=False)
                for old in gone:
                    self._load[old] -= 1
                    self._fill = min(self._fill, old)
            group = self._origins[origin] = tuple(self._place() for _ in range(self._span))
        if len(group) == 1:
            return group[0]
        self._turns_taken += 1
        return group[self._turns_taken % len(group)]

    def _place(self) -> int:
        load, room = self._load, self._origins_per_client
        while self._fill < len(load) and load[self._fill] >= room:
            self._fill += 1
        if self._fill < len(load):
            shard = self._fill
        elif len(load) < self._max_clients:
            shard = self._add_client()
        else:
            shard = min(range(len(load)), key=load.__getitem__)
        load[shard] += 1
        return shard

    @contextlib.asynccontextmanager
    async def _host_turn(self, host: str) -> AsyncIterator[None]:
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _HostGate(asyncio.Semaphore(self._per_host_limit))
        entry.users += 1
        try:
            async with entry.gate:
                yield
        finally:
            entry.users -= 1
            if not entry.users and self._hosts.get(host) is entry:
                del self._hosts[host]  # bounded: only hosts with requests in flight

    async def aclose(self) -> None:
        clients = [*self._clients, *(c for c in self._trusted if c is not None)]
        loop = self._loop
        self._clients, self._loop, self._trusted = [], None, []
        if loop is not asyncio.get_running_loop():
            return  # opened in a loop that has ended: nothing left that can be closed
        for client in clients:
            await client.aclose()

    async def get(
        self, url: str, headers: Mapping[str, str], limits: Limits, *, trusted: bool = False
    ) -> Response:
        """GET url within limits.timeout; raise RequestFailed on any failure.

        `trusted`: `url` itself (as the operator wrote it) skips the address guard; every
        redirect hop is checked as always, so a trusted feed that redirects to a private
        address is refused (kind "refused", naming the target), and no such target is
        ever reported as its permanent URL: only a URL a guarded connection reached is.

        The deadline covers the whole request, redirects included, from the moment it gets
        its turn: time spent queued behind other requests to the same host (per_host) or
        behind the global limit is not the server's slowness and does not count. (Once
        started, a request that lent its slot while waiting on the network gets one back
        before any new request does; that short wait is inside the deadline.) Opening a
        connection has its own deadline inside it, connect_timeout: past it, RequestFailed
        "network", "connect timeout: ...".
        """
        self._bind()
        turn = _Turn(self._slots)
        token = _TURN.set(turn)
        try:
            return await self._get(url, headers, limits, trusted, turn)
        finally:
            turn.finish()
            _TURN.reset(token)

    async def _get(
        self, url: str, headers: Mapping[str, str], limits: Limits, trusted: bool, turn: _Turn
    ) -> Response:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        all_permanent = True
        for hop in range(limits.max_redirects + 1):
            try:
                url = check_url(url)
                parts = urlsplit(url)
                host = parts.hostname or ""
                # Connections belong to an origin (scheme, host, port): one origin, one
                # client, so origins never evict each other's kept-alive connections.
                shard = self._shard((parts.scheme, parts.netloc.lower()))
                # Only the URL as written may be trusted; a redirect hop never is.
                client, client_gate = (
                    self._trusted_client(shard)
                    if trusted and hop == 0
                    else (self._clients[shard], self._client_gates[shard])
                )
                # Host gate first: a request waiting for its host's turn holds no global
                # slot, so one busy host cannot starve the others.
                async with self._host_turn(host), client_gate:
                    await turn.work()
                    if deadline is None:
                        deadline = loop.time() + limits.timeout
                    try:
                        async with asyncio.timeout_at(deadline):
                            status, resp_headers, body = await self._fetch_once(client, url, headers, limits)
                    except TimeoutError:
                        raise RequestFailed(
                            "timeout", f"no complete answer within {limits.timeout:g}s"
                        ) from None
                    finally:
                        turn.finish()  # no slot held while the next hop waits for its host
            except RequestFailed as e:
                if hop and e.kind == "refused":
                    raise RequestFailed("refused", _refused_redirect(url, str(e), trusted)) from None
                raise
            if status in REDIRECTS and "location" in resp_headers:
                all_permanent = all_permanent and status in (301, 308)
                location = resp_headers["location"]
                try:
                    url = urljoin(url, location)
                except ValueError as e:  # 'http://[::1'
                    raise RequestFailed("refused", f"redirect to {location!r}: invalid URL: {e}") from None
                continue
            # Every hop after the first went through a guarded client, so a permanent URL
            # reported here is one the guard let through (never a refused private target).
            return Response(status, url, resp_headers, body, url if all_permanent and hop else None)
        raise RequestFailed("network", f"more than {limits.max_redirects} redirects")

    async def _fetch_once(
        self, client: httpx.AsyncClient, url: str, headers: Mapping[str, str], limits: Limits
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            async with client.stream("GET", url, headers=dict(headers)) as resp:
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                if resp.status_code != 200:
                    with contextlib.suppress(RequestFailed):  # read the (small) rest: keep-alive
                        await read_bounded(resp, _CHUNK)
                    return resp.status_code, resp_headers, b""
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limits.max_bytes:
                    raise RequestFailed(
                        "too_large",
                        f"body of {declared} bytes is over the cap of {limits.max_bytes}",
                    )
                body = await read_bounded(resp, limits.max_bytes)
                return resp.status_code, resp_headers, body
        except RequestFailed:
            raise
        except AddressRefused as e:
            raise RequestFailed("refused", str(e)) from None
        except httpx.InvalidURL as e:
            raise RequestFailed("refused", f"invalid URL: {e}") from None
        except httpx.HTTPError as e:
            raise RequestFailed("network", _describe(e)) from None
        except Exception as e:
            # What httpx and httpcore let out besides HTTPError: an ExceptionGroup from
            # anyio's connect (OverflowError for a port over 65535), UnicodeError or
            # idna.IDNAError for a host they cannot encode, ValueError... One request
            # failed; the caller's other requests must go on.
            leaves = _leaves(e)
            refused = next((x for x in leaves if isinstance(x, AddressRefused)), None)
            if refused is not None:
                raise RequestFailed("refused", str(refused)) from None
            if all(isinstance(x, ValueError | OverflowError) for x in leaves):
                raise RequestFailed(
                    "refused", f"invalid URL {url!r}: {'; '.join(map(_describe, leaves))}"
                ) from None
            raise RequestFailed("network", "; ".join(map(_describe, leaves))) from None


def _descriptors() -> int:
    """The soft limit on open files (kept-alive connections are files)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    return 1 << 20 if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def _refused_redirect(target: str, why: str, trusted: bool) -> str:
    note = " (trust_config_feeds trusts the URL as written, not where it redirects)" if trusted else ""
    return f"redirect to {target}: {why}{note}"


def _leaves(e: BaseException) -> list[BaseException]:
    """The exceptions inside an (arbitrarily nested) exception group; `e` if it is none."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for inner in e.exceptions for leaf in _leaves(inner)] or [e]
    return [e]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".rstrip(": ")


async def read_bounded(resp: httpx.Response, max_bytes: int) -> bytes:
    """Read the raw stream and inflate gzip/deflate ourselves, never past max_bytes."""
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    inflater: zlib._Decompress | None = None
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding not in ("", "identity"):
        raise RequestFailed("network", f"unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    async for chunk in resp.aiter_raw(_CHUNK):
        if inflater is None:
            out += chunk
        else:
            data = chunk
            while data:
                try:
                    piece = inflater.decompress(data, max_bytes + 1 - len(out))
                except zlib.error as e:
                    raise RequestFailed("network", f"corrupt {encoding} body: {e}") from None
                out += piece
                if len(out) > max_bytes:
                    break
                data = inflater.unconsumed_tail
        if len(out) > max_bytes:
            raise RequestFailed("too_large", f"body is over the cap of {max_bytes} bytes")
    return bytes(out)


def check_url(url: str) -> str:
    """Only http(s) URLs with a host and, if any, a port from 1 to 65535 (web.url_problem);
    raise RequestFailed("refused") saying what is wrong. Returns `url` with its scheme in
    lower case (schemes are case-insensitive: `HTTP://Example.com/feed` is fine)."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # url_problem says why
        scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        raise RequestFailed("refused", f"scheme {scheme!r} is not allowed (only http and https)")
    problem = url_problem(url)
    if problem is not None:
        raise RequestFailed("refused", problem)
    return lower_scheme(url)
