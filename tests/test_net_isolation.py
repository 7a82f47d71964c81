"""HttpPool under dead hosts: connect_timeout, slots lent while waiting, stable clients.

Every server here is on loopback and runs in the test's own event loop: answering
origins (HTTP/1.1 keep-alive, counting accepted connections), silent ones (accept, never
write) and full-backlog listeners (never accept: connecting hangs). Each origin has its
own loopback address, 127.20.x.y, because per_host counts per host name.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from watchdesk.ingest import net
from watchdesk.ingest.net import HttpPool, Limits, RequestFailed

LOOPBACK = ("127.0.0.0/8",)
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


def address(i: int) -> str:
    return f"127.20.{i // 250}.{1 + i % 250}"


def _other_loopback_addresses() -> bool:
    try:
        with socket.socket() as s:
            s.bind((address(0), 0))
        return True
    except OSError:
        return False


needs_loopback_range = pytest.mark.skipif(
    not _other_loopback_addresses(), reason="needs 127.0.0.0/8 on loopback (Linux), not just 127.0.0.1"
)


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


class Answer(asyncio.Protocol):
    accepted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        type(self).accepted += 1
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(FEED), FEED))


class Silent(asyncio.Protocol):
    """Accepts, reads, never answers."""


@asynccontextmanager
async def servers(kind: type[asyncio.Protocol], hosts: list[str]) -> AsyncIterator[list[str]]:
    """One server per host; yields an origin URL for each."""
    loop = asyncio.get_running_loop()
    made = [await loop.create_server(kind, host, 0, backlog=128) for host in hosts]
    try:
        yield [f"http://{host}:{s.sockets[0].getsockname()[1]}" for host, s in zip(hosts, made, strict=True)]
    finally:
        for s in made:
            s.close()


@asynccontextmanager
async def backlogged(hosts: list[str]) -> AsyncIterator[list[str]]:
    """Listeners whose accept queue is full and that never accept: a connect hangs."""
    keep: list[socket.socket] = []
    urls = []
    try:
        for host in hosts:
            ls = socket.socket()
            keep.append(ls)
            ls.bind((host, 0))
            ls.listen(0)
            for _ in range(3):
                s = socket.socket()
                keep.append(s)
                s.setblocking(False)
                s.connect_ex(ls.getsockname())
            urls.append(f"http://{host}:{ls.getsockname()[1]}")
        yield urls
    finally:
        for s in keep:
            s.close()


async def hangs(url: str) -> bool:
    """Whether connecting to url's listener really hangs on this kernel (0.3 s probe)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 0.3)
    except TimeoutError:
        return True
    except OSError:
        return False
    w.close()
    return False


def pool(**kw: Any) -> HttpPool:
    return HttpPool(allow=LOOPBACK, **kw)


async def failure(p: HttpPool, url: str, limits: Limits) -> tuple[RequestFailed, float]:
    start = time.monotonic()
    with pytest.raises(RequestFailed) as e:
        await p.get(url, {}, limits)
    return e.value, time.monotonic() - start


def test_a_connect_that_hangs_fails_at_connect_timeout_as_a_network_failure() -> None:
    async def main() -> None:
        async with backlogged(["127.0.0.1"]) as (url,):
            if not await hangs(url):
                pytest.skip("a full-backlog listener does not make connect hang here")
            p = pool(connect_timeout=0.3)
            try:
                e, took = await failure(p, url + "/feed", Limits(timeout=5))
            finally:
                await p.aclose()
        assert e.kind == "network"
        assert str(e).startswith("connect timeout:") and "0.3s ([network] connect_timeout)" in str(e), e
        assert 0.25 < took < 2.0

    run(main)


def test_a_tls_handshake_that_hangs_is_within_connect_timeout() -> None:
    async def main() -> None:
        async with servers(Silent, ["127.0.0.1"]) as (url,):  # TCP accepted, no TLS answer
            p = pool(connect_timeout=0.3)
            try:
                e, took = await failure(p, url.replace("http:", "https:") + "/feed", Limits(timeout=5))
            finally:
                await p.aclose()
        assert e.kind == "network" and str(e).startswith("connect timeout: TLS handshake with 127.0.0.1:"), e
        assert took < 2.0

    run(main)


def test_the_total_deadline_still_wins_when_it_is_shorter() -> None:
    async def main() -> None:
        async with backlogged(["127.0.0.1"]) as (url,):
            p = pool(connect_timeout=10)
            try:
                e, took = await failure(p, url + "/feed", Limits(timeout=0.3))
            finally:
                await p.aclose()
        assert (e.kind, str(e)) == ("timeout", "no complete answer within 0.3s")
        assert took < 2.0

    run(main)


def test_a_server_that_never_answers_is_still_a_timeout() -> None:
    async def main() -> None:
        async with servers(Silent, ["127.0.0.1"]) as (url,):
            p = pool(connect_timeout=0.2)  # connected at once: connect_timeout is not the limit
            try:
                e, _ = await failure(p, url + "/feed", Limits(timeout=0.5))
            finally:
                await p.aclose()
        assert e.kind == "timeout"

    run(main)


async def finish_times(p: HttpPool, urls: list[str], limits: Limits) -> list[float]:
    loop = asyncio.get_running_loop()

    async def one(url: str) -> float:
        resp = await p.get(url, {}, limits)
        assert resp.status == 200
        return loop.time()

    return list(await asyncio.gather(*(one(u) for u in urls)))


@needs_loopback_range
def test_dead_hosts_do_not_starve_the_live_ones() -> None:
    """10 dead origins (5 silent, 5 whose connect hangs), started before 300 live ones,
    with only 5 global slots: the live ones finish within 1.5x the time they take alone."""
    concurrency, live_n, dead_n = 5, 300, 10
    limits = Limits(timeout=3.0)

    async def main() -> None:
        hosts = [address(i) for i in range(live_n + dead_n)]
        async with (
            servers(Answer, hosts[:live_n]) as live,
            servers(Silent, hosts[live_n : live_n + dead_n // 2]) as silent,
            backlogged(hosts[live_n + dead_n // 2 :]) as backlog,
        ):
            assert await hangs(backlog[0]), "a full-backlog listener should make connect hang"
            live_urls = [u + "/feed" for u in live]
            dead_urls = [u + "/feed" for u in silent + backlog]
            loop = asyncio.get_running_loop()

            async def timed(dead: list[str], wait_dead: bool) -> tuple[float, list[Any]]:
                p = pool(concurrency=concurrency, per_host=2, connect_timeout=1.5)
                try:
                    start = loop.time()
                    dead_task = asyncio.gather(*(p.get(u, {}, limits) for u in dead), return_exceptions=True)
                    await asyncio.sleep(0)  # the dead ones take the slots first
                    took = max(await finish_times(p, live_urls, limits)) - start
                    if wait_dead:
                        dead_results = await dead_task
                    else:
                        dead_task.cancel()
                        dead_results = await asyncio.gather(dead_task, return_exceptions=True)
                    # every slot given back, cancelled or not
                    assert (p._slots.free, p._slots.waiting_free) == (concurrency, 4 * concurrency)
                    assert p._hosts == {}
                    return took, dead_results
                finally:
                    await p.aclose()

            await timed([], False)  # warm-up: imports, the TLS context
            ratios = []
            for _ in range(5):  # timing on a shared machine: the best of 5 attempts
                clean, _ = await timed([], False)
                dirty, _ = await timed(dead_urls, False)
                ratios.append(dirty / clean)
                if ratios[-1] <= 1.5:
                    break
            assert min(ratios) <= 1.5, ratios
            _, results = await timed(dead_urls, True)
            kinds = sorted((r.kind, str(r).split(":")[0]) for r in results)
            assert (
                kinds
                == [("network", "connect timeout")] * 5 + [("timeout", "no complete answer within 3s")] * 5
            )

    run(main)


@needs_loopback_range
def test_kept_alive_connections_are_reused_on_the_next_poll() -> None:
    """50 origins polled twice, back to back: no new connection the second time; one
    origin with 50 feeds: per_host connections in all."""

    async def main() -> None:
        async with servers(Answer, [address(i) for i in range(50)]) as origins:
            p = pool()
            try:
                Answer.accepted = 0
                await finish_times(p, [u + "/feed" for u in origins], Limits())
                assert Answer.accepted == 50
                await finish_times(p, [u + "/feed" for u in origins], Limits())
                assert Answer.accepted - 50 <= 0.05 * 50
                Answer.accepted = 0
                feeds = [f"{origins[0]}/feed/{i}" for i in range(50)]
                await finish_times(p, feeds, Limits())
                await finish_times(p, feeds, Limits())
                assert Answer.accepted <= 2  # per_host
            finally:
                await p.aclose()

    run(main)


def origins(n: int) -> list[tuple[str, str]]:
    return [("https", f"feed{i}.example.org") for i in range(n)]


def test_origins_get_stable_balanced_clients_added_as_needed() -> None:
    async def main() -> None:
        a, b = pool(), pool()
        a._bind()
        b._bind()
        try:
            assert len(a._clients) == 4  # made at once for concurrency 20
            shards = [a._shard(o) for o in origins(100)]
            assert shards == [b._shard(o) for o in origins(100)]  # not hash(): same every run
            assert [a._shard(o) for o in reversed(origins(100))] == shards[::-1]  # stable
            # per_host 2 and 5 connections a client: 2 origins each, never more
            assert len(a._clients) == len(a._trusted) == 50 and set(a._load) == {2}
            assert shards == [i // 2 for i in range(100)]
        finally:
            await a.aclose()
            await b.aclose()

    run(main)


def test_an_origin_allowed_many_connections_spreads_over_small_pools() -> None:
    """per_host 50: the origin gets 10 clients of 5 connections, not one pool of 50 that
    httpcore would scan at every request (0.5 ms more CPU a poll, bench/poll.py)."""

    async def main() -> None:
        p = HttpPool(concurrency=50, per_host=50, allow=("127.0.0.0/8",))
        p._bind()
        try:
            used = {p._shard(("http", "127.0.0.1:8000")) for _ in range(30)}
            assert len(used) == 10 and p._origins[("http", "127.0.0.1:8000")] == tuple(sorted(used))
            assert all(c._transport._pool._max_connections == net.CONNECTIONS_PER_CLIENT for c in p._clients)  # type: ignore[attr-defined]
            assert p._shard(("http", "127.0.0.1:9000")) not in used  # another origin: clients of its own
        finally:
            await p.aclose()

    run(main)


def test_past_the_client_limit_origins_share_the_least_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        p = pool()
        p._max_clients = 6
        p._bind()
        try:
            for o in origins(100):
                p._shard(o)
            assert len(p._clients) == 6 and max(p._load) - min(p._load) <= 1 and sum(p._load) == 100
        finally:
            await p.aclose()

    run(main)


def test_remembered_origins_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "MAX_ORIGINS", 10)

    async def main() -> None:
        p = pool()
        p._bind()
        try:
            for o in origins(1000):
                p._shard(o)
            assert len(p._origins) == 10 and sum(p._load) == 10
            assert len(p._clients) == 5  # freed room is used again
            assert list(p._origins) == origins(1000)[-10:]
        finally:
            await p.aclose()

    run(main)


def test_a_request_back_from_waiting_goes_before_new_ones() -> None:
    async def main() -> None:
        slots = net._Slots(1, 4)
        order: list[str] = []
        await slots.acquire(resumed=False)

        async def take(name: str, resumed: bool) -> None:
            await slots.acquire(resumed)
            order.append(name)
            slots.release()

        fresh = [asyncio.create_task(take(f"new{i}", False)) for i in range(3)]
        await asyncio.sleep(0)
        back = asyncio.create_task(take("back", True))
        await asyncio.sleep(0)
        fresh[0].cancel()  # a cancelled waiter neither takes a slot nor loses one
        slots.release()
        await asyncio.gather(*fresh, back, return_exceptions=True)
        assert order == ["back", "new1", "new2"] and slots.free == 1

    run(main)


def test_a_hanging_resolver_never_ties_up_the_default_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names that never resolve (a resolver that hangs: getaddrinfo blocks its thread, and
    connect_timeout can only stop waiting) occupy the resolver's own threads; the loop's
    default executor, which the daemon's to_thread work runs on, stays free."""
    import threading

    from watchdesk.ingest import guard

    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: str, *args: object, **kwargs: object) -> object:
        if host.endswith(".hang.example"):
            release.wait(30)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hanging)

    async def go() -> float:
        stuck = [asyncio.ensure_future(guard.resolve(f"h{i}.hang.example", 80)) for i in range(40)]
        await asyncio.sleep(0)  # every resolution is handed to a thread
        started = time.monotonic()
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), timeout=10) == 42
        took = time.monotonic() - started
        release.set()
        await asyncio.gather(*stuck, return_exceptions=True)
        return took

    assert asyncio.run(go()) < 5


class AnswerThenClose(Answer):
    """Answers with keep-alive, then closes the connection (a server's idle timeout)."""

    closed: asyncio.Event

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        type(self).closed.set()


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The server closes a kept-alive connection between two polls: the second poll
    connects again and succeeds (it must not write to the closed one and fail)."""

    async def main() -> None:
        AnswerThenClose.closed = asyncio.Event()
        async with servers(AnswerThenClose, ["127.0.0.1"]) as (origin,):
            p = pool()
            try:
                AnswerThenClose.accepted = 0
                for n in range(3):
                    AnswerThenClose.closed.clear()
                    resp = await p.get(f"{origin}/feed", {}, Limits())
                    assert resp.status == 200, n
                    await asyncio.wait_for(AnswerThenClose.closed.wait(), 10)
                assert AnswerThenClose.accepted == 3
            finally:
                await p.aclose()

    run(main)


@needs_loopback_range
def test_a_kept_alive_connection_is_reused_many_times() -> None:
    """The socket's readiness is asked of the same connection at every request: one
    connection serves 20 polls of one feed in a row."""

    async def main() -> None:
        async with servers(Answer, [address(7)]) as (origin,):
            p = pool()
            try:
                Answer.accepted = 0
                for _ in range(20):
                    assert (await p.get(f"{origin}/feed", {}, Limits())).status == 200
                assert Answer.accepted == 1
            finally:
                await p.aclose()

    run(main)
