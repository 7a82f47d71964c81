"""The network guard: which addresses a request may connect to, checked where it connects.

A link inside a feed can point at 127.0.0.1, 169.254.169.254, 10/8, [::1], an IPv4 address
written as 2130706433, 127.1 or 0177.0.0.1, or IPv4 wrapped in IPv6 (::ffff:,
::ffff:0:, 64:ff9b::/96, 2002::/16), or redirect there, or rebind DNS between a check and the
connect. So the check runs inside the connection itself (an httpcore network backend):
the host is resolved once, every address it resolves to is checked, and the socket is
opened to exactly the address that was checked. Redirect hops open connections through
the same backend, so each hop is checked too.

Allowed: global unicast addresses, and the CIDR ranges of `[network] allow`. Python's
`ipaddress` calls some ranges global that are not reachable on the internet and must not
be reached: multicast, IPv4-translated ::ffff:0:0:0/96 (RFC 2765; its IPv4 is checked like
any embedded IPv4) and the deprecated site-local fec0::/10 (RFC 3879), all refused here.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx

from ..web import tls_context

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# Called global by ipaddress (Python 3.11), but never a public unicast destination.
# ::ffff:0:0:0/96, not ::ffff:0:0/96 (that is the mapped ::ffff:0.0.0.0/96).
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (SIIT), RFC 2765
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated by RFC 3879


class AddressRefused(Exception):
    """The request would connect to an address the guard does not allow."""


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, translated, NAT64, 6to4, Teredo,
    compatible), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def describe(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip in _TRANSLATED:
        return "IPv4-translated"
    for attr in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_site_local",  # IPv6 only (getattr's default for IPv4)
        "is_multicast",
        "is_unspecified",
        "is_reserved",
    ):
        if getattr(ip, attr, False):
            return attr[3:].replace("_", "-")
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (CGNAT)"
    return "non-global"


class AddressPolicy:
    def __init__(self, allow: Iterable[str] = (), *, any_address: bool = False):
        self.allow = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        self.any_address = any_address

    def _allowed_range(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def refusal(self, address: str) -> str | None:
        """None when address may be reached, else why not."""
        if self.any_address:
            return None
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self._allowed_range(ip):
            return None
        inner = embedded_ipv4(ip)
        if inner is not None:
            if self._allowed_range(inner):
                return None
            if not inner.is_global or inner.is_multicast:
                return f"{address} embeds {inner}, {_a(describe(inner))} address"
        if not ip.is_global or ip.is_multicast or _never_global(ip):
            return f"{address} is {_a(describe(ip))} address"
        return None


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiouI' else 'a'} {kind}"


def _never_global(ip: IPAddress) -> bool:
    """Ranges Python's ipaddress calls global that are not (see the module docstring)."""
    return isinstance(ip, ipaddress.IPv6Address) and (ip in _TRANSLATED or ip in _SITE_LOCAL)


RESOLVER_THREADS = 16
_resolver: ThreadPoolExecutor | None = None


async def resolve(host: str, port: int) -> list[Any]:
    """getaddrinfo for a TCP connection. An address written as such needs no resolver; a
    name is resolved on threads of its own (RESOLVER_THREADS), not the loop's default
    executor: a resolver that hangs (connect_timeout gives up waiting, but cannot stop the
    thread) ties up at most these, never the threads the rest of the daemon runs on."""
    global _resolver
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    if _resolver is None:
        _resolver = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="resolve")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _resolver, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address, connect to a checked address only."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await resolve(host.strip("[]"), port)
        except socket.gaierror as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e.strerror}") from None
        except ValueError as e:  # UnicodeError too: a name no resolver takes ('a..b', a 64-char label)
            raise httpcore.ConnectError(f"cannot resolve {host}: not a valid host name ({e})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            why = self.policy.refusal(address)
            if why is not None:
                raise AddressRefused(f"{host} refused: {why} (allow it with [network] allow)")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        raise last or httpcore.ConnectError(f"{host} resolved to no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(
    policy: AddressPolicy,
    limits: httpx.Limits,
    ssl_context: ssl.SSLContext | None = None,
    wrap: Callable[[httpcore.AsyncNetworkBackend], httpcore.AsyncNetworkBackend] | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections all go through GuardedBackend (inside `wrap`,
    if given: net.py's connect deadline and slot accounting).

    httpx has no public hook for the network backend, so the transport's connection pool
    (`_pool`, httpx 0.28) is replaced by one built the same way with our backend;
    tests/test_guard.py::test_transport_pool_canary fails if httpx changes this.
    """
    ssl_context = ssl_context or tls_context()
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=wrap(GuardedBackend(policy)) if wrap else GuardedBackend(policy),
    )
    return transport
