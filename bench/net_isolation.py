"""Dead hosts among live ones, and keep-alive reuse, through `watchdesk.ingest.net.HttpPool`.

A feed server runs in its own process on loopback, one address per origin (127.10.x.y,
so per_host, which counts per host name, never hides anything), answering every GET with a small RSS document over
HTTP/1.1 keep-alive, and counting the TCP connections it accepts. Two kinds of dead
origin, also on loopback addresses of their own:

  silent   accepts the connection, reads the request, never writes a byte
  backlog  a listening socket whose accept queue is full and which never accepts:
           the kernel drops the SYNs, so connecting hangs (checked at start)

Phases, each with a fresh HttpPool at the given settings (defaults: the daemon's):

  clean      --feeds minus --dead live origins, one GET each; wall time
  dead       the same live origins plus --dead dead ones (half of each kind, first in
             the list: the worst case), all started at once; the wall time until the
             last live one is done, and its ratio to clean (the goal: at most 1.5);
             then, unless --no-wait-dead, how and when the dead ones failed
  keepalive  --origins origins each polled twice back to back, then --feeds-per-origin
             feeds on one origin polled twice: new TCP connections per poll in the
             second round (the goal: at most 0.05)

    python bench/net_isolation.py                          # 2,000 feeds, 50 dead
    python bench/net_isolation.py --feeds 500 --dead 20 --timeout 5 --connect-timeout 2
    python bench/net_isolation.py --phases keepalive --origins 1000

Not a test: it prints figures. Only loopback (127.0.0.0/8) is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from watchdesk.ingest.net import HttpPool, Limits, RequestFailed  # noqa: E402

HOST = "127.0.0.1"  # the server's control port
LOOPBACK = "127.0.0.0/8"


def address(i: int) -> str:
    """The i-th origin's own loopback address (Linux answers on all of 127.0.0.0/8)."""
    return f"127.10.{i // 250}.{1 + i % 250}"


FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    + b"".join(b"<item><title>item %d</title><guid>g%d</guid></item>" % (i, i) for i in range(10))
    + b"</channel></rss>"
)


def serve(conn: Connection, live: int, silent: int) -> None:
    """The server process: `live` answering origins (addresses 0..live-1), `silent` ones
    that never answer (the next addresses), and a control port on 127.0.0.1 (not
    counted) answering /count with the connections accepted so far."""
    accepted = [0]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n\r\n"

    class Answer(asyncio.Protocol):
        counted = True

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buf = b""
            if self.counted:
                accepted[0] += 1

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                request, _, self.buf = self.buf.partition(b"\r\n\r\n")
                path = request.split(b" ", 2)[1]
                body = str(accepted[0]).encode() if path == b"/count" else FEED
                self.transport.write(head % len(body) + body)

    class Control(Answer):
        counted = False

    class Silent(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            pass  # never answer, never close

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(Control, HOST, 0)]
        servers += [await loop.create_server(Answer, address(i), 0, backlog=128) for i in range(live)]
        servers += [await loop.create_server(Silent, address(live + i), 0) for i in range(silent)]
        conn.send([s.sockets[0].getsockname()[:2] for s in servers])
        await loop.run_in_executor(None, conn.recv)  # told to stop

    asyncio.run(main())


def backlog_listeners(first: int, n: int) -> tuple[list[tuple[str, int]], list[socket.socket]]:
    """n listening sockets (addresses first..) whose accept queue is full: connecting hangs."""
    origins, keep = [], []
    for i in range(first, first + n):
        ls = socket.socket()
        ls.bind((address(i), 0))
        ls.listen(0)
        origin = ls.getsockname()[:2]
        keep.append(ls)
        for _ in range(3):  # fill the queue (backlog 0 holds one; extra SYNs are dropped)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(origin)
            keep.append(s)
        origins.append(origin)
    time.sleep(0.1)
    if origins:
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(origins[0])
            print("WARNING: a full-backlog listener accepted a connect here: 'backlog' is not a hang")
        except TimeoutError:
            pass
        except OSError as e:
            print(f"WARNING: a full-backlog listener refused: {e}")
        finally:
            probe.close()
    return origins, keep


def url(origin: tuple[str, int], i: int = 0) -> str:
    return f"http://{origin[0]}:{origin[1]}/feed/{i}"


async def get_all(pool: HttpPool, urls: list[str], limits: Limits) -> list[float | RequestFailed]:
    """GET every URL at once; each result is the time it finished (loop clock) or its failure."""
    loop = asyncio.get_running_loop()

    async def one(u: str) -> float | RequestFailed:
        try:
            resp = await pool.get(u, {}, limits)
        except RequestFailed as e:
            return e
        if resp.status != 200:
            return RequestFailed("http", f"HTTP {resp.status}")
        return loop.time()

    return list(await asyncio.gather(*(one(u) for u in urls)))


def make_pool(args: argparse.Namespace) -> HttpPool:
    return HttpPool(
        concurrency=args.concurrency,
        per_host=args.per_host,
        allow=(LOOPBACK,),
        connect_timeout=args.connect_timeout,
    )


async def timed_run(
    args: argparse.Namespace, live: list[str], dead: list[str]
) -> tuple[float, list[float | RequestFailed], float]:
    """(seconds until the last live URL is done, the dead URLs' results, their seconds)."""
    pool = make_pool(args)
    limits = Limits(timeout=args.timeout)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        dead_task = asyncio.ensure_future(get_all(pool, dead, limits))
        await asyncio.sleep(0)  # the dead ones start first: the worst case
        results = await get_all(pool, live, limits)
        failed = [r for r in results if isinstance(r, RequestFailed)]
        if failed:
            print(f"WARNING: {len(failed)} live feeds failed, e.g. {failed[0].kind}: {failed[0]}")
        live_time = max(r for r in results if isinstance(r, float)) - start
        if args.wait_dead:
            dead_results = await dead_task
        else:
            dead_task.cancel()
            dead_results = []
        return live_time, dead_results, loop.time() - start
    finally:
        await pool.aclose()


def accepted(control: int) -> int:
    with socket.create_connection((HOST, control)) as s:
        s.sendall(b"GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += s.recv(4096)
        return int(body)


async def keepalive_rounds(args: argparse.Namespace, urls: list[str], control: int) -> tuple[int, int]:
    """New connections during the first and the second poll of every URL."""
    pool = make_pool(args)
    limits = Limits(timeout=args.timeout)
    try:
        before = accepted(control)
        for r in await get_all(pool, urls, limits):
            assert isinstance(r, float), r
        middle = accepted(control)
        for r in await get_all(pool, urls, limits):
            assert isinstance(r, float), r
        return middle - before, accepted(control) - middle
    finally:
        await pool.aclose()


def describe_dead(results: list[float | RequestFailed]) -> str:
    kinds = Counter(f"{r.kind}: {str(r).split(':')[0]}" for r in results if isinstance(r, RequestFailed))
    return ", ".join(f"{n} x {k}" for k, n in kinds.most_common()) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=2000, help="live + dead feeds in the dead phase (2000)")
    ap.add_argument("--dead", type=int, default=50, help="dead origins among them (50)")
    ap.add_argument(
        "--kinds", choices=("both", "silent", "backlog"), default="both", help="dead kinds (both)"
    )
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="total per request, seconds (30)")
    ap.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (10)")
    ap.add_argument("--rounds", type=int, default=3, help="clean/dead runs; medians printed (3)")
    ap.add_argument("--origins", type=int, default=200, help="origins in the keepalive phase (200)")
    ap.add_argument("--feeds-per-origin", type=int, default=200, help="feeds on one origin (200)")
    ap.add_argument(
        "--no-wait-dead", dest="wait_dead", action="store_false", help="do not wait for dead ones"
    )
    ap.add_argument(
        "--phases", nargs="+", choices=("isolation", "keepalive"), default=["isolation", "keepalive"]
    )
    args = ap.parse_args()

    n_live = args.feeds - args.dead
    silent = {"both": args.dead // 2, "silent": args.dead, "backlog": 0}[args.kinds]
    live_ports = max(n_live, args.origins)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve, args=(child, live_ports, silent), daemon=True
    )
    proc.start()
    origins = parent.recv()
    control, live, silent_ports = origins[0][1], origins[1 : 1 + live_ports], origins[1 + live_ports :]
    backlog_ports, keep = backlog_listeners(live_ports + silent, args.dead - silent)
    print(
        f"settings: concurrency {args.concurrency}, per_host {args.per_host}, timeout {args.timeout:g}s, "
        f"connect_timeout {args.connect_timeout:g}s"
    )
    try:
        if "isolation" in args.phases:
            live_urls = [url(p) for p in live[:n_live]]
            dead_urls = [url(p) for p in silent_ports] + [url(p) for p in backlog_ports]
            cleans, dirties = [], []
            for r in range(args.rounds):
                clean, _, _ = asyncio.run(timed_run(args, live_urls, []))
                dirty, dead_results, total = asyncio.run(timed_run(args, live_urls, dead_urls))
                cleans.append(clean)
                dirties.append(dirty)
                print(
                    f"round {r + 1}: clean {n_live} live: {clean:.3f}s; with {len(dead_urls)} dead "
                    f"({len(silent_ports)} silent, {len(backlog_ports)} backlog): live done in {dirty:.3f}s "
                    f"(ratio {dirty / clean:.2f})"
                    + (
                        f"; dead all failed by {total:.1f}s: {describe_dead(dead_results)}"
                        if args.wait_dead
                        else ""
                    )
                )
            clean, dirty = statistics.median(cleans), statistics.median(dirties)
            verdict = "ok" if dirty <= 1.5 * clean else "OVER the goal of 1.5"
            print(
                f"isolation: clean {clean:.3f}s ({n_live / clean:.0f} req/s), with dead {dirty:.3f}s, "
                f"ratio {dirty / clean:.2f} (median of {args.rounds}): {verdict}"
            )
        if "keepalive" in args.phases:
            urls = [url(p) for p in live[: args.origins]]
            first, second = asyncio.run(keepalive_rounds(args, urls, control))
            print(
                f"keepalive: {args.origins} origins x 2 polls: new connections {first} then {second}: "
                f"{second / args.origins:.3f} per poll in the second round (goal <= 0.05)"
            )
            urls = [url(live[0], i) for i in range(args.feeds_per_origin)]
            first, second = asyncio.run(keepalive_rounds(args, urls, control))
            print(
                f"keepalive: 1 origin x {args.feeds_per_origin} feeds x 2 polls: new connections {first} "
                f"then {second}: {(first + second) / (2 * len(urls)):.3f} per poll overall, "
                f"{second / len(urls):.3f} in the second round"
            )
    finally:
        parent.send("stop")
        proc.join(5)
        for s in keep:
            s.close()


if __name__ == "__main__":
    main()
