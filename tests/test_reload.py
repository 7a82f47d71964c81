"""Reload everything (issue 12): SIGHUP, or an edit of watchdesk.toml, takes over feeds,
channels and settings while the daemon runs; a broken edit keeps the running config and
is logged as file:line. Real daemon, real local servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import start_daemon, write_config
from server import LocalServer, Reply, Request

WATCHLIST = "match = ['fentanyl']\n"


def rss(tag: str) -> bytes:
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{tag}</title>'
        f"<item><guid>{tag}-1</guid><title>{tag}: fentanyl seized</title><link>https://example.org/{tag}</link>"
        f"<description>Police seized fentanyl.</description><pubDate>{now}</pubDate></item>"
        "</channel></rss>"
    ).encode()


def feed(server: LocalServer, path: str, name: str) -> dict[str, object]:
    server.route(path, rss(name), headers={"Content-Type": "application/rss+xml"})
    return {"url": server.url(path), "name": name, "fetch_article": "never"}


class Log:
    """The daemon's stderr, read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.text()):
                return True
            time.sleep(0.05)
        return False


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # seen as changed at once


def test_sighup_takes_over_feeds_and_channels(tmp_path: Path, server: LocalServer) -> None:
    received: list[dict[str, object]] = []

    def hook(req: Request) -> Reply:
        received.append(json.loads(req.body))
        return Reply(200, b"ok")

    server.route("/hook", handler=hook)
    a, b, c = feed(server, "/a", "A"), feed(server, "/b", "B"), feed(server, "/c", "C")
    config = write_config(tmp_path, [a, b, c], {"drugs": WATCHLIST}, polling='backfill = "all"')
    daemon = start_daemon(config)
    log = Log(daemon)
    try:
        assert log.wait_for(lambda t: all(f"feed_polled feed={n} " in t for n in "ABC"))
        server.route("/c2", rss("C"), headers={"Content-Type": "application/rss+xml"})  # C moved: same items
        d, e, f = feed(server, "/d", "D"), feed(server, "/e", "E"), feed(server, "/f", "F")
        moved = {**c, "url": server.url("/c2")}
        hook_channel = f'[channel.hook]\ntype = "webhook"\nurl = "{server.url("/hook")}"\n'
        text = write_config(
            tmp_path / "next", [a, moved, d, e, f], {}, polling='backfill = "all"', extra=hook_channel
        ).read_text()
        (tmp_path / "watchlists" / "drugs.toml").write_text("match = ['fentanyl']\nnotify = ['hook']\n")
        rewrite(config, text)
        hits_before = {p: len(server.hits(p)) for p in ("/a", "/b")}
        daemon.send_signal(signal.SIGHUP)
        assert log.wait_for(lambda t: "config_reloaded" in t), log.text()
        reloaded = next(line for line in log.lines if "config_reloaded" in line)
        assert "feeds_added=3" in reloaded and "feeds_removed=1" in reloaded
        assert "feeds_moved=1" in reloaded and "channels_added=1" in reloaded
        assert log.wait_for(lambda t: all(f"feed_polled feed={n} " in t for n in "DEF"))
        assert log.wait_for(lambda t: len(received) >= 3)  # the new channel delivers the new feeds' hits
        assert len(server.hits("/c2")) == 1  # the moved feed is polled at its new URL, due now
        assert {p: len(server.hits(p)) for p in ("/a", "/b")} == hits_before  # B removed: not polled

        rewrite(config, text.replace("[polling]", "[polling\n"))  # broken TOML
        daemon.send_signal(signal.SIGHUP)
        assert log.wait_for(lambda t: "config_invalid" in t)
        invalid = next(line for line in log.lines if "config_invalid" in line)
        assert f"{config}:" in invalid and "keeping the running config" in invalid
        assert daemon.poll() is None  # still running
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    titles = sorted(str(r["alert"]["title"]) for r in received)  # type: ignore[index]
    assert titles == ["D: fentanyl seized", "E: fentanyl seized", "F: fentanyl seized"]  # C's items not again


def test_an_edit_of_the_config_file_is_taken_over_without_a_signal(
    tmp_path: Path, server: LocalServer
) -> None:
    a = feed(server, "/a", "A")
    config = write_config(tmp_path, [a], {"drugs": WATCHLIST})
    daemon = start_daemon(config)
    log = Log(daemon)
    try:
        assert log.wait_for(lambda t: "feed_polled feed=A " in t)
        b = feed(server, "/b", "B")
        rewrite(config, write_config(tmp_path / "next", [a, b], {}).read_text())
        assert log.wait_for(lambda t: "feed_polled feed=B " in t), log.text()
        reloaded = next(line for line in log.lines if "config_reloaded" in line)
        assert "feeds_added=1 " in reloaded and "feeds_removed=0 " in reloaded
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def test_a_feeds_file_added_or_edited_is_taken_over(tmp_path: Path, server: LocalServer) -> None:
    """[watchdesk] feeds = ["feeds/*.toml"]: a new file in the folder, or an edit of one,
    reloads like an edit of watchdesk.toml."""
    a = feed(server, "/a", "A")
    config = write_config(tmp_path, [a], {"drugs": WATCHLIST})
    config.write_text(
        config.read_text().replace("[watchdesk]\n", '[watchdesk]\nfeeds = ["feeds/*.toml"]\n', 1)
    )
    (tmp_path / "feeds").mkdir()
    daemon = start_daemon(config)
    log = Log(daemon)
    try:
        assert log.wait_for(lambda t: "feed_polled feed=A " in t), log.text()
        b = feed(server, "/b", "B")
        (tmp_path / "feeds" / "more.toml").write_text(
            f'[[feed]]\nurl = "{b["url"]}"\nname = "B"\nfetch_article = "never"\n'
        )
        assert log.wait_for(lambda t: "feed_polled feed=B " in t), log.text()
        c = feed(server, "/c", "C")
        rewrite(
            tmp_path / "feeds" / "more.toml",
            f'[[feed]]\nurl = "{b["url"]}"\nname = "B"\n\n[[feed]]\nurl = "{c["url"]}"\nname = "C"\n',
        )
        assert log.wait_for(lambda t: "feed_polled feed=C " in t), log.text()
        reloads = [line for line in log.lines if "config_reloaded" in line]
        assert len(reloads) == 2 and all("feeds_added=1 " in line for line in reloads), reloads
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def test_a_reloads_old_http_pool_is_closed_after_its_grace(tmp_path: Path, server: LocalServer) -> None:
    """A [network] change replaces the HTTP pool; the old one (its keep-alive sockets) is
    closed once the polls that started with it are over, not kept until exit."""
    import asyncio

    from watchdesk.config import load_config
    from watchdesk.runtime import Runtime

    watchlists = {"w": 'match = ["fentanyl"]\n'}
    config = write_config(tmp_path, [feed(server, "/a.xml", "A")], watchlists, network="concurrency = 10")

    async def go() -> None:
        rt = Runtime(load_config(config))
        try:
            await rt.poll_feeds(await rt.feeds_to_poll())  # a keep-alive connection to the server
            old = rt.pool
            assert old._clients  # the client that polled holds the connection
            rt.retired_pool_grace = 0.0
            config.write_text(config.read_text().replace("concurrency = 10", "concurrency = 11"))
            assert await rt.reload_config() is not None
            assert rt.pool is not old and rt._retired_pools == [old]
            await asyncio.gather(*rt._closing)
            assert rt._retired_pools == [] and old._clients == []
        finally:
            await rt.aclose()

    asyncio.run(go())


def test_a_replaced_config_is_freed_though_the_loaded_heap_is_frozen(tmp_path: Path) -> None:
    """The daemon freezes what it loaded (daemon.settle_heap: gc.freeze, so full
    collections do not walk every feed's config). A reload's old config must still be
    freed: were any of it kept by a reference cycle, the frozen generation would keep it
    for good, and a daemon reloaded every hour would grow all year. Ten reloads of 2,000
    feeds leave the frozen generation no bigger than one."""
    import asyncio
    import gc

    from watchdesk.config import load_config
    from watchdesk.daemon import settle_heap
    from watchdesk.runtime import Runtime

    feeds = [{"url": f"https://s{n}.example.org/rss", "name": f"Feed {n}"} for n in range(2000)]
    path = write_config(tmp_path, feeds, {"drugs": WATCHLIST})
    text = path.read_text()
    rt = Runtime(load_config(path, check_secrets=False))
    try:

        async def reloads() -> list[int]:
            counts = []
            for n in range(10):
                path.write_text(text.replace('name = "Feed 0"', f'name = "Feed zero {n}"'))
                assert await rt.reload_config() is not None
                rt.reload_watchlists(force=True)
                settle_heap()
                counts.append(gc.get_freeze_count())
            return counts

        settle_heap()
        counts = asyncio.run(reloads())
        assert rt.config.feeds[0].name == "Feed zero 9"
        # One config's worth (plus a little noise) at every reload, not ten.
        assert max(counts) - counts[0] < 0.2 * counts[0], counts
    finally:
        gc.unfreeze()
        asyncio.run(rt.aclose())
