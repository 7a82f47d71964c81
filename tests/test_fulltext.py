"""Full text: new entries are matched on their article page's extracted text."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_config
from seed_fixture import STORY, serve_story
from server import LocalServer

from watchdesk.ingest.extract import extract_page


def watchdesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def hits(config: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in watchdesk(config, "hits", "--json").stdout.splitlines()]


@pytest.fixture(params=["story", "seed"])
def story(request: pytest.FixtureRequest, server: LocalServer) -> tuple[str, str]:
    """(feed URL, a sentence of the article that contains 'fentanyl')."""
    if request.param == "story":
        return serve_story(server), "contained fentanyl, the synthetic opioid"
    corpus = request.getfixturevalue("corpus")
    return serve_story(server, corpus / "seed", "/story/jcode"), "targeting the dark web fentanyl sakes"


def test_a_word_only_in_the_article_page_hits(tmp_path: Path, story: tuple[str, str]) -> None:
    feed, sentence = story
    config = write_config(
        tmp_path,
        [{"url": feed, "name": "Metro"}],
        {"opioids": "match = ['fentanyl']\n"},
        polling='backfill = "all"',
    )
    result = watchdesk(config, "poll", "--once")
    assert result.returncode == 0, result.stderr
    rows = hits(config)
    assert len(rows) == 1, rows
    assert rows[0]["text_source"] == "page"
    assert rows[0]["terms"] == ["fentanyl"]
    assert sentence.split()[-1] in str(rows[0]["snippet"])  # the snippet quotes the article
    assert "fentanyl" in result.stdout and "[watchdesk] opioids:" in result.stdout


def test_markup_navigation_and_footer_never_match(tmp_path: Path, server: LocalServer) -> None:
    """Terms only in the page's meta keywords, script, style, navigation and footer."""
    watchlist = "match = ['heroin', 'oxycodone', 'xylazine', 'carfentanil', 'naloxone', 'tracking']\n"
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"markup": watchlist},
        polling='backfill = "all"',
    )
    assert watchdesk(config, "poll", "--once").returncode == 0
    assert hits(config) == []


def test_extractor_keeps_the_story_and_drops_the_chrome() -> None:
    result = extract_page((STORY / "article.html").read_bytes(), "https://metro.example/story/market")
    assert "contained fentanyl, the synthetic opioid" in result.text
    assert "Naloxone vending" not in result.text and "Weather" not in result.text
    assert result.title == "Task force shuts down darknet drug market serving the Midwest | Metro Desk"
    assert result.language == "en"


def test_fetch_article_never_matches_only_the_feed_text(tmp_path: Path, server: LocalServer) -> None:
    feed = serve_story(server)
    config = write_config(
        tmp_path,
        [{"url": feed, "name": "Metro", "fetch_article": "never"}],
        {"opioids": "match = ['fentanyl']\n"},
        polling='backfill = "all"',
    )
    assert watchdesk(config, "poll", "--once").returncode == 0
    assert hits(config) == []
    assert server.hits("/story/market") == []


def test_an_unreachable_page_keeps_the_summary_and_the_reason(tmp_path: Path, server: LocalServer) -> None:
    feed = serve_story(server)
    server.route("/story/market", b"gone", status=404)
    config = write_config(
        tmp_path,
        [{"url": feed, "name": "Metro"}],
        {"w": "match = ['\"dark web\"']\n"},
        polling='backfill = "all"',
    )
    assert watchdesk(config, "poll", "--once").returncode == 0
    rows = hits(config)
    assert len(rows) == 1 and rows[0]["text_source"] == "summary"
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        note = db.execute("SELECT text_note FROM entries WHERE link LIKE '%/story/market'").fetchone()[0]
    assert note == "HTTP 404"
