"""The one place HTTP requests are made: client factory, limits and guarded GET.

Every request: a total deadline (not httpx's per-read timeout), a byte cap on the
inflated body, inflation done by us in bounded steps (httpx does not bound it),
`Accept-Encoding: gzip` only, `trust_env=False`, redirects followed by hand so each
hop is checked, and concurrency bounded globally and per host. Whatever goes wrong with
one request (httpx, httpcore, a URL they cannot encode) is a RequestFailed, never
another exception that would abort the caller's other work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from .. import __version__
from ..web import lower_scheme, tls_context, url_problem
from .guard import AddressPolicy, AddressRefused, guarded_transport

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"watchdesk/{__version__} (+https://github.com/watchdesk/watchdesk; feed watcher)"
# Several small clients beat one big one (encode/httpx#3215), and small pools beat big
# ones: httpcore polls every idle pooled connection on each request (encode/httpcore#928).
CONNECTIONS_PER_CLIENT = 5
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


class HttpPool:
    """httpx clients sharded by origin, with global and per-host concurrency limits."""

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
        self._shards = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))
        self._user_agent = user_agent or DEFAULT_USER_AGENT
        self._per_host_limit = per_host
        # Clients (their pooled connections) and semaphores belong to one event loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._client_gates: list[asyncio.Semaphore] = []
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        # Unguarded clients, sharded like _clients, made on first use: for the first hop
        # of a trusted=True request only. Their connections are never used by a guarded
        # request (a link inside a feed to the same intranet host is still refused).
        self._trusted: list[httpx.AsyncClient | None] = []
        self._trusted_gates: list[asyncio.Semaphore] = []

    def _client(self, policy: AddressPolicy) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(30.0),
            transport=guarded_transport(
                policy,
                httpx.Limits(
                    max_connections=CONNECTIONS_PER_CLIENT,
                    max_keepalive_connections=CONNECTIONS_PER_CLIENT,
                ),
                ssl_context=tls_context(),
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
        self._clients = [self._client(self.policy) for _ in range(self._shards)]
        self._trusted = [None] * self._shards
        self._trusted_gates = [asyncio.Semaphore(CONNECTIONS_PER_CLIENT) for _ in range(self._shards)]
        self._global = asyncio.Semaphore(self._concurrency)
        self._hosts = {}
        # At most as many requests per client as it has connections: more would queue inside
        # httpcore, which rescans its waiting requests x connections on every change.
        self._client_gates = [asyncio.Semaphore(CONNECTIONS_PER_CLIENT) for _ in self._clients]

    def _host_gate(self, host: str) -> asyncio.Semaphore:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = asyncio.Semaphore(self._per_host_limit)
        return gate

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
        behind the global limit is not the server's slowness and does not count.
        """
        self._bind()
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
                shard = hash((parts.scheme, parts.netloc.lower())) % len(self._clients)
                # Only the URL as written may be trusted; a redirect hop never is.
                client, client_gate = (
                    self._trusted_client(shard)
                    if trusted and hop == 0
                    else (self._clients[shard], self._client_gates[shard])
                )
                # Host gate first: a request waiting for its host's turn holds no global
                # slot, so one busy host cannot starve the others.
                async with self._host_gate(host), client_gate, self._global:
                    if deadline is None:
                        deadline = loop.time() + limits.timeout
                    try:
                        async with asyncio.timeout_at(deadline):
                            status, resp_headers, body = await self._fetch_once(client, url, headers, limits)
                    except TimeoutError:
                        raise RequestFailed(
                            "timeout", f"no complete answer within {limits.timeout:g}s"
                        ) from None
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
