"""The store on both backends: one poll, the archive tools and retention give the same
answers on SQLite and on PostgreSQL (the `database` fixture runs each test on both)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from conftest import write_config
from seed_fixture import serve_story
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.runtime import Runtime
from watchdesk.store import feeds as feed_store
from watchdesk.store import outbox as outbox_store

WATCHLISTS = {
    "darkweb": """
        match = ['"dark web" NEAR/20 pills', 'fentanyl']
        notify = ["console"]
    """,
    "sports": "match = ['Lakers']\nnotify = ['console']\n",
}
CHANNELS = """
[channel.console]
type = "console"
"""


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _poll(config: Path) -> None:
    async def go() -> None:
        rt = Runtime(load_config(config))
        try:
            await rt.poll_feeds(await rt.feeds_to_poll())
        finally:
            await rt.aclose()

    asyncio.run(go())


def test_a_poll_stores_entries_hits_and_alerts(tmp_path: Path, server: LocalServer, database: str) -> None:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        WATCHLISTS,
        extra=CHANNELS,
        database=database,
        polling='backfill = "all"',
    )
    _poll(config)
    hits = json.loads("[" + ",".join(run(config, "hits", "--json").stdout.split("\n")[:-1]) + "]")
    assert sorted(h["watchlist"] for h in hits) == ["darkweb", "sports"]
    assert all(h["feed"] == "Metro" and h["alerted_to"][0]["channel"] == "console" for h in hits)
    feeds = run(config, "feeds", "--json")
    assert feeds.returncode == 0, feeds.stderr
    view = json.loads(feeds.stdout.splitlines()[0])
    assert view["status"] == "ok"
    # Polled again: nothing new, nothing queued twice.
    _poll(config)
    rt = Runtime(load_config(config))
    try:
        assert outbox_store.counts(rt.db) == {"pending": 2}
        (row,) = feed_store.all_feeds(rt.db)
        assert row.leased_by is None and row.polled_by == load_config(config).node
    finally:
        asyncio.run(rt.aclose())


def test_search_and_rematch_agree(tmp_path: Path, server: LocalServer, database: str) -> None:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        WATCHLISTS,
        extra=CHANNELS,
        database=database,
        polling='backfill = "all"',
    )
    _poll(config)
    answers = {}
    for query in [
        "fentanyl",
        '"dark web" NEAR/20 pills',
        "dark-net",
        "cryptocurrenc*",
        "Fentanyl -heroin",
        "/[Cc]ryptocurrency payments/",
        "heroin",
        "lakers",
        "lakers OR fentanyl",
    ]:
        result = run(config, "search", query, "--json")
        assert result.returncode in (0, 1), result.stderr
        answers[query] = len(result.stdout.splitlines())
    assert answers == {
        "fentanyl": 1,
        '"dark web" NEAR/20 pills': 1,
        "dark-net": 1,
        "cryptocurrenc*": 1,
        "Fentanyl -heroin": 1,
        "/[Cc]ryptocurrency payments/": 1,
        "heroin": 0,
        "lakers": 1,
        "lakers OR fentanyl": 2,
    }
    rematch = run(config, "rematch", "darkweb")
    assert rematch.returncode == 0, rematch.stderr


def test_prune_tombstones_and_search_forgets(tmp_path: Path, server: LocalServer, database: str) -> None:
    """Entries with no hit go to tombstones (search no longer finds them; they never come
    back as new), on both stores; entries with a hit stay."""
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"darkweb": WATCHLISTS["darkweb"]},  # the sports entry has no hit: it is pruned
        extra=CHANNELS,
        database=database,
        polling='backfill = "all"',
    )
    _poll(config)
    assert len(run(config, "search", "lakers", "--json").stdout.splitlines()) == 1
    dry = run(config, "prune", "--entries", "0s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would prune 1 entries" in dry.stdout
    pruned = run(config, "prune", "--entries", "0s")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 1 entries" in pruned.stdout
    assert run(config, "search", "lakers", "--json").stdout == ""
    assert len(run(config, "search", "fentanyl", "--json").stdout.splitlines()) == 1  # its hit keeps it
    _poll(config)  # the pruned entry is still known: not new again
    rt = Runtime(load_config(config))
    try:
        assert rt.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 2
        assert outbox_store.counts(rt.db) == {"pending": 1}
    finally:
        asyncio.run(rt.aclose())
