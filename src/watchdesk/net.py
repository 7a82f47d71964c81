"""The one place HTTP requests are made: client factory, limits and guarded GET.

Every request: a total deadline (not httpx's per-read timeout), a byte cap on the
inflated body, inflation done by us in bounded steps (httpx does not bound it),
`Accept-Encoding: gzip` only, `trust_env=False`, redirects followed by hand so each
hop is checked, and concurrency bounded globally and per host.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"watchdesk/{__version__} (+https://github.com/watchdesk/watchdesk; feed watcher)"
CONNECTIONS_PER_CLIENT = 10  # several small clients beat one big one (encode/httpx#3215)
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
    """httpx clients sharded by host, with global and per-host concurrency limits."""

    def __init__(
        self,
        *,
        concurrency: int = 20,
        per_host: int = 2,
        user_agent: str = "",
    ):
        shards = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))
        self._clients = [
            httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(30.0),
                limits=httpx.Limits(
                    max_connections=CONNECTIONS_PER_CLIENT,
                    max_keepalive_connections=CONNECTIONS_PER_CLIENT,
                ),
                headers={
                    "User-Agent": user_agent or DEFAULT_USER_AGENT,
                    "Accept-Encoding": "gzip",
                },
            )
            for _ in range(shards)
        ]
        self._global = asyncio.Semaphore(concurrency)
        self._per_host_limit = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def _client(self, host: str) -> httpx.AsyncClient:
        return self._clients[hash(host) % len(self._clients)]

    def _host_gate(self, host: str) -> asyncio.Semaphore:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = asyncio.Semaphore(self._per_host_limit)
        return gate

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def get(self, url: str, headers: Mapping[str, str], limits: Limits) -> Response:
        """GET url within limits.total deadline; raise RequestFailed on any failure."""
        try:
            async with asyncio.timeout(limits.timeout):
                return await self._get(url, headers, limits)
        except TimeoutError:
            raise RequestFailed("timeout", f"no complete answer within {limits.timeout:g}s") from None

    async def _get(self, url: str, headers: Mapping[str, str], limits: Limits) -> Response:
        permanent: str | None = None
        all_permanent = True
        for _hop in range(limits.max_redirects + 1):
            check_url(url)
            host = urlsplit(url).hostname or ""
            async with self._global, self._host_gate(host):
                status, resp_headers, body = await self._fetch_once(url, headers, limits)
            if status in REDIRECTS and "location" in resp_headers:
                target = urljoin(url, resp_headers["location"])
                all_permanent = all_permanent and status in (301, 308)
                permanent = target if all_permanent else None
                url = target
                continue
            return Response(status, url, resp_headers, body, permanent)
        raise RequestFailed("network", f"more than {limits.max_redirects} redirects")

    async def _fetch_once(
        self, url: str, headers: Mapping[str, str], limits: Limits
    ) -> tuple[int, dict[str, str], bytes]:
        client = self._client(urlsplit(url).hostname or "")
        try:
            async with client.stream("GET", url, headers=dict(headers)) as resp:
                resp_headers = {k.lower(): v for k, v in resp.headers.items()}
                if resp.status_code != 200:
                    return resp.status_code, resp_headers, b""
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limits.max_bytes:
                    raise RequestFailed(
                        "too_large",
                        f"body of {declared} bytes is over the cap of {limits.max_bytes}",
                    )
                body = await read_bounded(resp, limits.max_bytes)
                return resp.status_code, resp_headers, body
        except httpx.InvalidURL as e:
            raise RequestFailed("refused", f"invalid URL: {e}") from None
        except httpx.HTTPError as e:
            raise RequestFailed("network", f"{type(e).__name__}: {e}".rstrip(": ")) from None


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


def check_url(url: str) -> None:
    """Only http(s) URLs with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RequestFailed("refused", f"scheme {parts.scheme!r} is not allowed (only http and https)")
    if not parts.hostname:
        raise RequestFailed("refused", "URL has no host")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
