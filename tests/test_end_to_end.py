"""The first whole path: feed -> store -> match -> outbox -> console, through the CLI."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import start_daemon, write_config
from seed_fixture import serve_story
from server import LocalServer

WATCHLIST = """
description = "Darknet drug sales"
match = ['fentanyl', 'opioid', '"dark web"']
exclude = ['"fentanyl patch" recall']
notify = ["console"]
"""


def watchdesk(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(params=["story", "seed"])
def story(request: pytest.FixtureRequest, server: LocalServer) -> dict[str, str]:
    """The always-present story fixture, and the real seed story when the corpus is there."""
    if request.param == "story":
        return {"feed": serve_story(server), "title": "Task force shuts down darknet drug market"}
    corpus = request.getfixturevalue("corpus")
    url = serve_story(server, corpus / "seed", "/story/jcode")
    return {"feed": url, "title": "The Joint Criminal Opioid Darknet Enforcement group"}


def alerts(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[watchdesk]")]


def test_backfill_all_alerts_the_story_once(tmp_path: Path, story: dict[str, str]) -> None:
    config = write_config(
        tmp_path,
        [{"url": story["feed"], "name": "Metro"}],
        {"opioids": WATCHLIST},
        polling='backfill = "all"',
    )
    first = watchdesk(config, "poll", "--once")
    assert first.returncode == 0, first.stderr
    lines = alerts(first.stdout)
    assert len(lines) == 1, first.stdout
    assert lines[0].startswith("[watchdesk] opioids: " + story["title"])
    assert "Metro |" in first.stdout  # outlet and published time

    hits = watchdesk(config, "hits", "--json")
    rows = [json.loads(line) for line in hits.stdout.splitlines()]
    assert [r["title"][: len(story["title"])] for r in rows] == [story["title"]]  # not the sports item
    assert rows[0]["watchlist"] == "opioids" and rows[0]["alerted"] is True

    again = watchdesk(config, "poll", "--once")
    assert again.returncode == 0, again.stderr
    assert alerts(again.stdout) == []


def test_default_backfill_stores_the_hit_without_alerting(tmp_path: Path, story: dict[str, str]) -> None:
    config = write_config(tmp_path, [{"url": story["feed"], "name": "Metro"}], {"opioids": WATCHLIST})
    result = watchdesk(config, "poll", "--once")
    assert result.returncode == 0, result.stderr
    assert alerts(result.stdout) == []  # dated long before the 24h backfill window
    rows = [json.loads(line) for line in watchdesk(config, "hits", "--json").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["alerted"] is False
    outbox = watchdesk(config, "outbox")
    assert outbox.stdout.startswith("pending: 0  sent: 0  dead: 0")


def test_restarted_daemon_realerts_nothing(tmp_path: Path, server: LocalServer) -> None:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"opioids": WATCHLIST},
        polling='backfill = "all"\ninterval = "1s"',
    )
    assert len(alerts(watchdesk(config, "poll", "--once").stdout)) == 1
    polls_before = len(server.hits("/feed.xml"))

    daemon = start_daemon(config)
    try:
        deadline = time.monotonic() + 30
        while len(server.hits("/feed.xml")) < polls_before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the daemon to poll twice, not timing it
        assert len(server.hits("/feed.xml")) >= polls_before + 2, "daemon did not poll"
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert alerts(out) == []
    assert "daemon_stopped" in err
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone() == (1,)
