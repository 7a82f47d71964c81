"""store.feeds.sync_feeds: the feeds table made to match the config at start and reload,
writing only what differs (a restart with 100,000 unchanged feeds rewrote every row)."""

from __future__ import annotations

from pathlib import Path

from watchdesk.store import feeds as feed_store
from watchdesk.store import open_db


def rows(db) -> dict[str, tuple[int, str, int, float | None]]:  # type: ignore[no-untyped-def]
    found = db.execute("SELECT config_url, id, name, active, next_check_at FROM feeds").fetchall()
    return {url: (id_, name, active, due) for url, id_, name, active, due in found}


def test_added_renamed_removed_and_back(tmp_path: Path) -> None:
    db = open_db(tmp_path / "w.db", threaded=False)
    feed_store.sync_feeds(db, [("https://a/f", "A"), ("https://b/f", "B")], 100.0)
    first = rows(db)
    assert {u: r[1:] for u, r in first.items()} == {
        "https://a/f": ("A", 1, 100.0),
        "https://b/f": ("B", 1, 100.0),
    }
    db.execute("UPDATE feeds SET next_check_at = 500 WHERE config_url = 'https://b/f'")
    db.conn.commit()

    feed_store.sync_feeds(db, [("https://a/f", "A renamed"), ("https://c/f", "C")], 200.0)
    second = rows(db)
    assert second["https://a/f"] == (first["https://a/f"][0], "A renamed", 1, 100.0)  # same row, new name
    assert second["https://b/f"][2] == 0  # removed: kept with its history, not polled
    assert second["https://c/f"][1:] == ("C", 1, 200.0)  # added: due now

    feed_store.sync_feeds(
        db, [("https://a/f", "A renamed"), ("https://b/f", "B"), ("https://c/f", "C")], 300.0
    )
    third = rows(db)
    assert third["https://b/f"] == (first["https://b/f"][0], "B", 1, 500.0)  # back, its schedule kept


def test_an_unchanged_config_writes_nothing(tmp_path: Path) -> None:
    db = open_db(tmp_path / "w.db", threaded=False)
    feeds = [(f"https://h{i}/f", f"feed {i}") for i in range(1000)]
    feed_store.sync_feeds(db, feeds, 100.0)
    before = db.conn.total_changes
    feed_store.sync_feeds(db, feeds, 200.0)
    assert db.conn.total_changes == before
