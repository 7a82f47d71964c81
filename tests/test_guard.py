"""The network guard: private, loopback, link-local, CGNAT, multicast, unspecified and
reserved addresses are refused wherever a request connects, whatever the spelling."""

from __future__ import annotations

import httpcore
import httpx
import pytest

from watchdesk.ingest.guard import AddressPolicy, GuardedBackend, guarded_transport

POLICY = AddressPolicy(["127.0.0.1/32"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.2",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "ff0e::1",
        "::ffff:127.0.0.2",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:2",
        "64:ff9b::a00:1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:2::",
        "2002:a00:1::1",
        "::127.0.0.2",
    ],
)
def test_refused(address: str) -> None:
    assert POLICY.refusal(address) is not None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::ffff:127.0.0.1", "8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"],
)
def test_allowed(address: str) -> None:
    assert POLICY.refusal(address) is None


def test_allow_opens_a_named_range_only() -> None:
    policy = AddressPolicy(["10.1.2.0/24"])
    assert policy.refusal("10.1.2.7") is None
    assert policy.refusal("10.1.3.7") is not None


def test_refusal_names_the_kind_of_address() -> None:
    assert POLICY.refusal("169.254.169.254") == "169.254.169.254 is a private address"
    assert POLICY.refusal("::ffff:127.0.0.2") == "::ffff:127.0.0.2 embeds 127.0.0.2, a loopback address"


def test_transport_pool_canary() -> None:
    """guarded_transport replaces httpx's private `_pool`; if httpx renames it, this fails."""
    transport = guarded_transport(POLICY, httpx.Limits(max_connections=5, max_keepalive_connections=5))
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, GuardedBackend)
    assert httpx.__version__.startswith("0.")
