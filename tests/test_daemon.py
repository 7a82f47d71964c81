"""The daemon's lifecycle: clean stop with work in flight, and watchlist reloads that
keep the last good watchlists when an edited file is broken."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import start_daemon, write_config
from seed_fixture import serve_story
from server import LocalServer, Reply, Request

from watchdesk.config import load_config
from watchdesk.models import Article
from watchdesk.runtime import Runtime

WATCHLIST = "match = ['fentanyl']\n"


def test_reload_keeps_last_good_watchlists(tmp_path: Path, server: LocalServer) -> None:
    path = write_config(tmp_path, [{"url": server.url("/f"), "name": "F"}], {"drugs": WATCHLIST})
    rt = Runtime(load_config(path))
    try:
        article = Article(title="Seizure", text="pills with fentanyl and xylazine")
        assert [h.watchlist for h in rt.ctx.matcher.match(article)] == ["drugs"]

        (tmp_path / "watchlists" / "drugs.toml").write_text("match = ['xylazine'\n")  # broken TOML
        assert rt.reload_watchlists(force=True) is False
        assert rt.watchlist_state.broken
        assert any("drugs.toml:1" in p for p in rt.watchlist_state.problems)
        assert [h.watchlist for h in rt.ctx.matcher.match(article)] == ["drugs"]  # still the old one

        (tmp_path / "watchlists" / "drugs.toml").write_text("match = ['carfentanil']\n")
        assert rt.reload_watchlists(force=True) is True
        assert rt.ctx.matcher.match(article) == []
        assert not rt.watchlist_state.broken
    finally:
        asyncio.run(rt.aclose())


def test_sigterm_lets_an_in_flight_poll_finish(tmp_path: Path, server: LocalServer) -> None:
    started = threading.Event()
    release = threading.Event()
    feed_url = serve_story(server)
    feed_body = server.routes["/feed.xml"](Request("GET", "/feed.xml", {}, b"")).body

    def slow_feed(req: Request) -> Reply:
        started.set()
        release.wait(20)  # held until the daemon has been told to stop
        return Reply(200, feed_body, {"Content-Type": "application/rss+xml"})

    server.route("/feed.xml", handler=slow_feed)
    config = write_config(tmp_path, [{"url": feed_url, "name": "Metro"}], {"drugs": WATCHLIST})
    daemon = start_daemon(config)
    try:
        assert started.wait(30), "daemon never polled"
        daemon.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # give the signal time to land before the answer arrives (not a timing assertion)
        release.set()
        out, err = daemon.communicate(timeout=60)
    finally:
        release.set()
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert "daemon_stopping in_flight=1" in err
    assert "feed_polled feed=Metro new=2" in err  # the in-flight poll completed and committed
    assert err.rstrip().endswith("daemon_stopped")
    result = subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "feeds"], capture_output=True, text=True
    )
    assert "Metro" in result.stdout and " ok " in result.stdout
