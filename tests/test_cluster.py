"""Three daemons on one PostgreSQL, end to end: 300 feeds on a local server, alerts to a
local webhook, the daemon delivering them SIGKILLed mid-run and restarted. Every feed is
polled once per interval (the server's request log, each request named by its daemon's
User-Agent), every matching item is alerted, at most one duplicate per kill, none lost,
and the three daemons share the work. Real PostgreSQL (skipped without one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from conftest import start_daemon, write_config
from pg_fixture import drop_database, fresh_database, requires_postgres
from server import LocalServer, Reply, Request

from watchdesk.daemon import POLL_TICK

FEEDS = 300
NODES = ("a", "b", "c")
INTERVAL = 8.0  # [polling] interval: no jitter after a success (schedule.after_success)
LEASE = 3.0  # [watchdesk] lease
KILLS = 1
# A poll is due `interval` after the moment its fetch returned, so two requests for one
# feed are never closer than that, unless a poll died uncommitted with its daemon.
EARLY = 0.25  # clock slack: the daemon's time.time() against this process's monotonic()
SLACK = 2.5  # how much later than its interval a feed may be polled (2 busy cores; ~0.7 s seen)
# A dead daemon's feed is claimed once its lease ran out, at the others' next look at due
# feeds: up to POLL_TICK later when nothing else is due (next_due_at skips leased feeds).
TAKEOVER = LEASE + POLL_TICK + SLACK
DEADLINE = 45.0  # of each wait below (normally a few seconds)
UA = "watchdesk-cluster-test/{}"

WATCHLIST = """
description = "Cluster test"
match = ['fentanyl']
notify = ["hook"]
"""


# ---- the feeds and the webhook receiver -------------------------------------------------


class Feeds:
    """FEEDS feeds on one server, each its own path; every request recorded (when, and
    which daemon sent it). Each has one matching item from the start, and a second once
    `second_wave()` is called, so alerts are produced while a daemon is killed."""

    def __init__(self, server: LocalServer):
        self.server = server
        self.lock = threading.Lock()
        self.polls: dict[int, list[tuple[float, str]]] = defaultdict(list)
        self.wave = 0
        now = datetime.now(UTC)
        self.bodies = [[self._body(i, 1, now), self._body(i, 2, now)] for i in range(FEEDS)]
        for i in range(FEEDS):
            server.route(self.path(i), handler=self._handler(i))

    @staticmethod
    def path(i: int) -> str:
        return f"/feed/{i:03d}.xml"

    def links(self) -> set[str]:
        return {self.link(i, k) for i in range(FEEDS) for k in range(2)}

    def link(self, i: int, k: int) -> str:
        return f"{self.server.base}/story/{i:03d}-{k}"

    def _body(self, i: int, items: int, now: datetime) -> bytes:
        entries = []
        for k in reversed(range(items)):
            link = self.link(i, k)
            published = format_datetime(now - timedelta(minutes=10 * (2 - k)))
            entries.append(
                f"<item><title>Fentanyl seizure {i:03d}-{k}</title><link>{link}</link><guid>{link}</guid>"
                f"<pubDate>{published}</pubDate><description>Customs found fentanyl in parcel "
                f"q{i:03d}x{k} at depot {i * 7 + k}.</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Feed {i:03d}</title><link>{self.server.base}/</link><description>News {i}</description>"
            + "".join(entries)
            + "</channel></rss>"
        ).encode()

    def _handler(self, i: int) -> Callable[[Request], Reply]:
        def handle(req: Request) -> Reply:
            node = req.headers.get("user-agent", "").rpartition("/")[2]
            with self.lock:
                self.polls[i].append((time.monotonic(), node))
                body = self.bodies[i][self.wave]
            return Reply(200, body, {"Content-Type": "application/rss+xml"})

        return handle

    def second_wave(self) -> None:
        with self.lock:
            self.wave = 1

    def snapshot(self) -> dict[int, list[tuple[float, str]]]:
        with self.lock:
            return {i: list(self.polls[i]) for i in range(FEEDS)}


class Hook:
    """The webhook receiver: every complete POST (its idempotency key and alert)."""

    def __init__(self, server: LocalServer):
        self.lock = threading.Lock()
        self.posts: list[tuple[float, str, dict[str, object]]] = []
        server.route("/hook", handler=self._handle)

    def _handle(self, req: Request) -> Reply:
        if len(req.body) < int(req.headers.get("content-length", "0")):
            return Reply(400, b"cut short")  # a sender killed mid-request posted nothing
        document = json.loads(req.body)
        assert document["key"] == req.headers["x-watchdesk-delivery"]
        if document["event"] == "alert" and document["alert"]["kind"] == "hit":
            with self.lock:
                self.posts.append((time.monotonic(), document["key"], document["alert"]))
        return Reply(200, b"ok")

    def links(self) -> set[str]:
        with self.lock:
            return {str(alert["link"]) for _t, _key, alert in self.posts}

    def count(self) -> int:
        with self.lock:
            return len(self.posts)

    def keys(self) -> Counter[str]:
        with self.lock:
            return Counter(key for _t, key, _alert in self.posts)


# ---- the daemons --------------------------------------------------------------------------


class Node:
    """One `watchdesk run` (conftest.start_daemon), its output read off its pipes so a
    chatty daemon never blocks on a full pipe; every incarnation's log kept."""

    def __init__(self, name: str, config: Path):
        self.name = name
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.readers: list[threading.Thread] = []

    def start(self) -> None:
        self.log.append(f"---- {self.name}: start ----\n")
        self.proc = start_daemon(self.config)
        for pipe in (self.proc.stdout, self.proc.stderr):
            reader = threading.Thread(target=self._read, args=(pipe,), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.log.append(line)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # its parse workers die with it (PR_SET_PDEATHSIG)
        self.proc.wait(timeout=30)
        self.log.append(f"---- {self.name}: SIGKILL ----\n")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        return "".join(self.log)


def node_config(folder: Path, name: str, feeds: Feeds, hook_url: str, database: str) -> Path:
    folder.mkdir()
    return write_config(
        folder,
        [{"url": feeds.server.url(Feeds.path(i)), "name": f"Feed {i:03d}"} for i in range(FEEDS)],
        {"cluster": WATCHLIST},
        database=database,
        watchdesk=f'node = "{name}"\nlease = "{LEASE:.0f}s"',
        polling=f'interval = "{INTERVAL:.0f}s"\nbackfill = "all"\nfetch_article = "never"',
        network=f'per_host = 4\nuser_agent = "{UA.format(name)}"',
        extra=f"""
            [stories]
            enabled = false

            [channel.hook]
            type = "webhook"
            url = "{hook_url}"
            """,
    )


def wait_for(condition: Callable[[], bool], what: str, nodes: list[Node], deadline: float) -> None:
    """Check `condition` until it holds; fail (with the daemons' logs) past `deadline`
    or when a daemon that should be running exited."""
    while not condition():
        dead = [n for n in nodes if not n.alive()]
        if dead:
            pytest.fail(f"daemon {dead[0].name} exited while waiting for {what}\n{dead[0].text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n" + "\n".join(n.text()[-1500:] for n in nodes))
        time.sleep(0.05)  # a polling interval, not a timing assertion


class Database:
    """The test's own look at the shared database."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def channel_holder(self) -> str | None:
        try:
            row = self.conn.execute(
                "SELECT leased_by FROM channel_leases WHERE channel = 'hook' AND lease_until > %s",
                [time.time()],
            ).fetchone()
        except Exception:  # the schema is not there yet (the daemons are starting)
            return None
        return row[0] if row else None

    def leased_by(self, node: str) -> int:
        row = self.conn.execute("SELECT COUNT(*) FROM feeds WHERE leased_by = %s", [node]).fetchone()
        return int(row[0]) if row else 0

    def polled_by(self) -> Counter[str]:
        rows = self.conn.execute("SELECT polled_by FROM feeds WHERE active = 1").fetchall()
        return Counter(str(r[0]) for r in rows)

    def outbox(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}

    def close(self) -> None:
        self.conn.close()


# ---- the test -----------------------------------------------------------------------------


@requires_postgres
def test_three_daemons_share_feeds_and_alerts_through_a_sigkill(tmp_path: Path) -> None:
    url = fresh_database()
    try:
        with LocalServer() as feed_server, LocalServer() as hook_server:
            feeds = Feeds(feed_server)
            hook = Hook(hook_server)
            nodes = [
                Node(name, node_config(tmp_path / name, name, feeds, hook_server.url("/hook"), url))
                for name in NODES
            ]
            db = Database(url)
            try:
                run(feeds, hook, nodes, db)
            finally:
                for node in nodes:
                    node.cleanup()
                db.close()
    finally:
        drop_database(url)


def run(feeds: Feeds, hook: Hook, nodes: list[Node], db: Database) -> None:
    started = time.monotonic()
    for node in nodes:
        node.start()
    # Wave 1: each feed's first item, alerted from each feed's first poll.
    wait_for(lambda: hook.count() >= FEEDS, "the first 300 alerts", nodes, started + DEADLINE)
    feeds.second_wave()
    wave_at = time.monotonic()
    # Kill the daemon delivering the channel while the second wave's alerts go out.
    holder: list[str] = []

    def delivering() -> bool:
        name = db.channel_holder()
        if hook.count() >= FEEDS + 40 and name in NODES:
            holder.append(name)
            return True
        return False

    wait_for(delivering, "second-wave alerts going out", nodes, wave_at + DEADLINE)
    victim = next(n for n in nodes if n.name == holder[0])
    pending_at_kill = FEEDS * 2 - hook.count()
    victim.kill()
    killed_at = time.monotonic()
    survivors = [n for n in nodes if n is not victim]
    # Its channel and its feeds go to the others once their leases run out.
    wait_for(
        lambda: db.channel_holder() not in (None, victim.name) and db.leased_by(victim.name) == 0,
        f"the others taking over {victim.name}'s channel and feeds",
        survivors,
        killed_at + DEADLINE,
    )
    taken_over_at = time.monotonic()
    victim.start()
    restarted_at = time.monotonic()

    def settled() -> bool:
        now = time.monotonic()
        polled_again = any(
            t > restarted_at and n == victim.name for p in feeds.snapshot().values() for t, n in p
        )
        return hook.links() >= feeds.links() and polled_again and now > restarted_at + 2 * INTERVAL

    wait_for(settled, "every alert, and the restarted daemon polling again", nodes, restarted_at + DEADLINE)
    stopped_at = time.monotonic()
    for node in nodes:
        node.terminate()
    codes = {node.name: node.wait() for node in nodes}
    logs = {node.name: node.text() for node in nodes}
    assert codes == dict.fromkeys(NODES, 0), {n: logs[n][-3000:] for n, c in codes.items() if c}
    for name, text in logs.items():
        for bad in ("Traceback", "feed_crashed", "feed_failed", "poll_tick_failed", "drain_tick_failed"):
            assert bad not in text, f"{name}: {bad}\n{text[-4000:]}"

    # ---- polling: once per interval, none twice, none starved, the work shared ----------
    polls = feeds.snapshot()
    repolled = []  # feeds whose poll died with the killed daemon (fetched, never committed)
    takeovers = []  # how long after the kill each of those was polled again
    late = []
    gaps = []
    for i, requests in polls.items():
        times = [t for t, _node in requests]
        assert times, f"feed {i} was never polled"
        assert times[0] - started < DEADLINE / 3, f"feed {i} first polled {times[0] - started:.1f}s in"
        for (t0, n0), (t1, _n1) in zip(requests, requests[1:], strict=False):
            gap = t1 - t0
            gaps.append(gap)
            across_kill = t0 <= killed_at < t1
            if gap < INTERVAL - EARLY:
                # Only a poll in flight when its daemon was SIGKILLed is polled again early,
                # by another daemon, once its lease ran out.
                assert n0 == victim.name and across_kill, (
                    f"feed {i} polled twice {gap:.2f}s apart ({n0} at {t0 - started:.2f}s, "
                    f"next at {t1 - started:.2f}s; kill of {victim.name} at {killed_at - started:.2f}s)"
                )
                assert killed_at - t0 < TAKEOVER, (
                    f"feed {i}: {n0} polled it {killed_at - t0:.1f}s before the kill"
                )
                repolled.append(i)
                takeovers.append(t1 - killed_at)
            elif gap > INTERVAL + (TAKEOVER if across_kill else SLACK):
                late.append((i, round(t0 - started, 2), round(gap, 2)))
        if stopped_at - times[-1] > INTERVAL + SLACK:
            late.append((i, round(times[-1] - started, 2), round(stopped_at - times[-1], 2)))
    assert not late, (
        f"feeds polled late (feed, s into the run, gap), kill at {killed_at - started:.2f}s: {late[:20]}"
    )
    assert len(repolled) == len(set(repolled)), "a feed re-polled early twice"
    assert all(t <= TAKEOVER for t in takeovers), takeovers
    counts = Counter(len(requests) for requests in polls.values())
    span = stopped_at - min(t for requests in polls.values() for t, _n in requests)
    expected = span / INTERVAL
    for i, requests in polls.items():
        n = len(requests) - (i in repolled)
        assert expected - 2 <= n <= expected + 1, f"feed {i}: {n} polls in {span:.0f}s; {counts}"
    by_node = Counter(node for requests in polls.values() for _t, node in requests)
    total = sum(by_node.values())
    assert set(by_node) == set(NODES), by_node
    assert all(by_node[name] >= total * 0.05 for name in NODES), by_node  # the work is shared
    assert len(set(db.polled_by()) & set(NODES)) == 3, db.polled_by()

    # ---- alerts: every item once, at most one duplicate per kill ------------------------
    keys = hook.keys()
    assert hook.links() == feeds.links(), f"lost: {sorted(feeds.links() - hook.links())[:10]}"
    assert len(keys) == FEEDS * 2, f"{len(keys)} idempotency keys for {FEEDS * 2} items"
    duplicates = sum(n - 1 for n in keys.values())
    assert duplicates <= KILLS, keys.most_common(5)
    assert db.outbox() == {"sent": FEEDS * 2}, db.outbox()
    assert pending_at_kill > 0  # the kill fell while alerts were going out

    print(
        f"\nwall {time.monotonic() - started:.1f}s; killed {victim.name} at {killed_at - started:.1f}s "
        f"({pending_at_kill} alerts undelivered), taken over in {taken_over_at - killed_at:.1f}s; "
        f"polls by node {dict(by_node)}; polls per feed {dict(counts)} over {span:.0f}s; "
        f"re-polled after the kill {len(repolled)} ({', '.join(f'{t:.1f}s' for t in takeovers)} after it); "
        f"gaps {min(gaps):.2f}..{max(gaps):.2f}s; "
        f"duplicates {duplicates}; lease lost {sum(t.count('channel_lease_lost') for t in logs.values())}"
    )
