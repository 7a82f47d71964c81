"""try, search and rematch: the query language over one page or the stored archive."""

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

from watchdesk.language.query import parse_query
from watchdesk.matching.narrow import any_of, fts_expression


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", *args], capture_output=True, text=True, timeout=120
    )


# ---- try ----------------------------------------------------------------------------


def test_try_text_shows_where_and_why() -> None:
    result = run(
        "try", '"dark web" NEAR/10 fentanyl', "--text", "Sold on the dark web, the pills held fentanyl."
    )
    assert result.returncode == 0, result.stderr
    assert 'match: query: "dark web" NEAR/10 fentanyl' in result.stdout
    assert "text 12-20: 'dark web'" in result.stdout
    assert "text 37-45: 'fentanyl'" in result.stdout
    assert "[dark web]" in result.stdout and "[fentanyl]" in result.stdout


def test_try_no_match_exits_1() -> None:
    result = run("try", "heroin", "--text", "fentanyl only")
    assert result.returncode == 1 and result.stdout.startswith("no match")


def test_try_bad_query_points_at_the_column() -> None:
    result = run("try", "fentanyl AND (pills", "--text", "x")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("watchdesk: query, column ")
    column = int(lines[0].split("column ")[1].split(":")[0])
    assert lines[2].index("^") == column + 1  # the caret sits under the column


def test_try_json() -> None:
    data = json.loads(run("try", "J-CODE", "--text", "Operation JCODE", "--json").stdout)
    assert data["matches"] is True
    assert data["hits"][0]["terms"][0]["text"] == "JCODE"


def test_try_a_page_uses_the_extracted_text_only() -> None:
    page = str(STORY / "article.html")
    assert run("try", "fentanyl", "--file", page).returncode == 0
    assert run("try", "heroin OR oxycodone OR xylazine OR naloxone", "--file", page).returncode == 1


def test_try_a_configured_watchlist_by_name(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"opioids": "match = ['carfentanil', 'nitazene*']\n"})
    result = run("--config", str(config), "try", "opioids", "--text", "Nitazenes are spreading.")
    assert result.returncode == 0 and "match: opioids: nitazene*" in result.stdout


# ---- the archive --------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path: Path, server: LocalServer) -> Path:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"sports": "match = ['Lakers']\n"},
        polling='backfill = "all"',  # so the story's page is fetched and archived
    )
    assert run("--config", str(config), "poll", "--once").returncode == 0
    return config


def test_search_finds_stored_articles(archive: Path) -> None:
    result = run("--config", str(archive), "search", "fentanyl", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["title"] for r in rows] == ["Task force shuts down darknet drug market serving the Midwest"]
    assert rows[0]["feed"] == "Metro"
    for query in ['"dark web" NEAR/20 pills', "dark-net", "/[Cc]ryptocurrency payments/", "Fentanyl -heroin"]:
        found = run("--config", str(archive), "search", query, "--json").stdout.splitlines()
        assert len(found) == 1, query
    assert run("--config", str(archive), "search", "heroin", "--json").stdout == ""
    assert run("--config", str(archive), "search", "lakers").stdout.count("Lakers edge Bulls") == 1


def test_rematch_stores_then_alerts_once(archive: Path) -> None:
    (archive.parent / "watchlists" / "opioids.toml").write_text("match = ['fentanyl']\n")
    first = run("--config", str(archive), "rematch", "opioids", "--since", "30d")
    assert first.returncode == 0, first.stderr
    assert "1 new hits" in first.stdout and "0 alerts queued" in first.stdout
    notified = run("--config", str(archive), "rematch", "opioids", "--notify")
    assert "1 alerts queued" in notified.stdout, notified.stdout
    again = run("--config", str(archive), "rematch", "opioids", "--notify")
    assert "0 new hits" in again.stdout and "0 alerts queued" in again.stdout
    with sqlite3.connect(archive.parent / "watchdesk.db") as db:
        sql = "SELECT COUNT(*) FROM outbox o JOIN hits h ON h.id = o.hit_id WHERE h.watchlist = 'opioids'"
        assert db.execute(sql).fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM hits WHERE watchlist = 'opioids'").fetchone() == (1,)


def test_rematch_unknown_watchlist(archive: Path) -> None:
    result = run("--config", str(archive), "rematch", "nope")
    assert result.returncode == 2 and "no watchlist 'nope'" in result.stderr


# ---- narrowing is never narrower than the matcher -------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("fentanyl", '"fentanyl"'),
        ("opioid*", '"opioid" *'),
        ('"dark web"', '"dark web"'),
        ("J-CODE", '("j code" OR "jcode")'),
        ("a1 OR b2", '("a1" OR "b2")'),
        ("fentanyl -patch", '"fentanyl"'),
        ("/x+y/", None),
        ("fentanyl OR /x+y/", None),
        ("title:jcode", '"jcode"'),
        ("alpha NEAR/3 beta", '("alpha" AND "beta")'),
    ],
)
def test_fts_expression(query: str, expected: str | None) -> None:
    assert fts_expression(parse_query(query)) == expected


def test_any_of_watchlist_queries() -> None:
    assert any_of(["fentanyl", "carfentanil"]) == '("fentanyl") OR ("carfentanil")'
    assert any_of(["fentanyl", "/x+/"]) is None


# ---- what try says, and tools that a broken watchlist does not stop -------------------


def test_try_a_watchlist_limited_to_feeds(tmp_path: Path) -> None:
    feeds = [
        {"url": "http://127.0.0.1:9/a.xml", "name": "Metro"},
        {"url": "http://127.0.0.1:9/b.xml", "name": "Sport"},
    ]
    config = write_config(tmp_path, feeds, {"metro": "match = ['fentanyl']\nfeeds = ['Metro']\n"})
    as_any = run("--config", str(config), "try", "metro", "--text", "fentanyl seized")
    assert as_any.returncode == 0, as_any.stdout + as_any.stderr
    assert "applies only to feeds Metro; tried as if from one of them" in as_any.stderr
    assert (
        run("--config", str(config), "try", "metro", "--text", "fentanyl", "--feed", "metro").returncode == 0
    )
    other = run("--config", str(config), "try", "metro", "--text", "fentanyl", "--feed", "Sport")
    assert other.returncode == 1 and other.stdout.startswith("no match for metro")
    unknown = run("--config", str(config), "try", "metro", "--text", "fentanyl", "--feed", "Nope")
    assert unknown.returncode == 2 and "no feed 'Nope' (configured: Metro, Sport)" in unknown.stderr


def test_try_a_misspelled_watchlist_name_says_it_was_taken_as_a_query(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"opioids": "match = ['fentanyl']\n"})
    result = run("--config", str(config), "try", "opiods", "--text", "fentanyl")
    assert result.returncode == 1
    assert (
        "'opiods' is no watchlist name, so it was tried as a query (did you mean 'opioids'?)" in result.stderr
    )
    plain = run("--config", str(config), "try", "heroin", "--text", "heroin")  # clearly a query: no note
    assert plain.returncode == 0 and plain.stderr == ""


def test_try_a_disabled_watchlist_by_name(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"paused": "match = ['fentanyl']\nenabled = false\n"})
    result = run("--config", str(config), "try", "paused", "--text", "fentanyl")
    assert result.returncode == 0 and "match: paused: fentanyl" in result.stdout
    assert "paused.toml is disabled (enabled = false); tried anyway" in result.stderr


def test_try_says_which_exclude_query_vetoed_the_match(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"o": "match = ['fentanyl']\nexclude = ['naloxone', 'patch*']\n"})
    result = run("--config", str(config), "try", "o", "--text", "Fentanyl patches recalled")
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "no match for o: match query 'fentanyl' matches, but exclude query 'patch*' vetoes it"
    )


def test_try_a_page_without_text_says_so(tmp_path: Path) -> None:
    page = tmp_path / "plain.txt"
    page.write_text("fentanyl " * 50)
    result = run("try", "fentanyl", "--file", str(page))
    assert result.returncode == 1
    assert (
        "note: no text extracted (" in result.stderr and "only the page's title was matched" in result.stderr
    )


def test_try_title_only_goes_with_text() -> None:
    result = run("try", "fentanyl", "--file", str(STORY / "article.html"), "--title", "x")
    assert result.returncode == 2 and "--title goes with --text" in result.stderr


def test_a_broken_watchlist_does_not_stop_the_tools(archive: Path) -> None:
    folder = archive.parent / "watchlists"
    (folder / "broken.toml").write_text("match = ['fentanyl AND (pills']\n")
    (folder / "opioids.toml").write_text("match = ['fentanyl']\n")
    assert run("--config", str(archive), "check").returncode == 2  # the daemon would not start
    tried = run("--config", str(archive), "try", "fentanyl", "--text", "fentanyl")
    assert tried.returncode == 0
    assert "(watchlist left out)" in tried.stderr and "broken.toml:1" in tried.stderr
    found = run("--config", str(archive), "search", "fentanyl")
    assert found.returncode == 0 and "Task force shuts down darknet drug market" in found.stdout
    assert run("--config", str(archive), "rematch", "opioids").returncode == 0
    broken = run("--config", str(archive), "try", "broken", "--text", "fentanyl")  # its own problem, in full
    assert (
        broken.returncode == 2
        and "broken.toml:1:24: match query 'fentanyl AND (pills': unclosed (" in broken.stderr
    )


def test_search_without_a_match_exits_1(archive: Path) -> None:
    result = run("--config", str(archive), "search", "heroin")
    assert result.returncode == 1 and result.stdout == "" and "no matches" in result.stderr


def test_a_watchlist_named_query_can_be_rematched(archive: Path) -> None:
    (archive.parent / "watchlists" / "query.toml").write_text("match = ['fentanyl']\n")
    result = run("--config", str(archive), "rematch", "query")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("query: 1 candidate entries, 1 new hits")


def test_rematch_counts_the_candidates_it_scans(archive: Path) -> None:
    from watchdesk.store import entries, open_db

    db = open_db(archive.parent / "watchdesk.db")
    for fts in (None, any_of(["fentanyl"]), any_of(["lakers"]), any_of(["nothing-stored"])):
        for since in (None, 0.0, 4e9):
            expected = len(list(entries.stored_entries(db, fts=fts, since=since)))
            assert entries.count_entries(db, fts=fts, since=since) == expected, (fts, since)


def test_try_gives_the_veto_reason_for_a_feed_limited_watchlist_too(tmp_path: Path) -> None:
    feeds = [{"url": "http://127.0.0.1:9/a.xml", "name": "Metro"}]
    watchlist = "match = ['fentanyl']\nexclude = ['patch']\nfeeds = ['Metro']\n"
    config = write_config(tmp_path, feeds, {"metro": watchlist})
    for extra in ((), ("--feed", "Metro")):
        result = run("--config", str(config), "try", "metro", "--text", "fentanyl patch recall", *extra)
        assert result.stdout.strip().endswith("but exclude query 'patch' vetoes it"), extra
    data = json.loads(
        run("--config", str(config), "try", "metro", "--text", "a fentanyl patch", "--json").stdout
    )
    assert data["matches"] is False and "exclude query 'patch' vetoes it" in data["why_not"]


def test_rematch_refuses_a_disabled_watchlist(archive: Path) -> None:
    (archive.parent / "watchlists" / "paused.toml").write_text("match = ['fentanyl']\nenabled = false\n")
    result = run("--config", str(archive), "rematch", "paused", "--notify")
    assert result.returncode == 2 and "watchlist 'paused' is disabled (enabled = false)" in result.stderr
