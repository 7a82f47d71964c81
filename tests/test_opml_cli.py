"""`watchdesk opml import|export` (issue 12): an export imports back into an empty config
as the same feeds and tags; importing twice adds nothing; a hostile file is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write_config

from watchdesk.config import load_config


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "opml", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    feeds = [
        {"url": "https://example.org/a.xml", "name": 'Dept. of "Justice"', "tags": ["federal", "doj"]},
        {"url": "https://example.org/b.xml", "name": "Metro", "tags": ["local"]},
        {"url": "https://example.org/c.xml", "name": "Untagged"},
    ]
    source = write_config(tmp_path / "source", feeds, {})
    exported = run(source, "export")
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "feeds.opml").write_text(exported.stdout)

    target = write_config(tmp_path / "target", [], {})
    imported = run(target, "import", str(tmp_path / "feeds.opml"))
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 feeds" in imported.stdout
    before = {(f.url, f.name, frozenset(f.tags)) for f in load_config(source).feeds}
    after = {(f.url, f.name, frozenset(f.tags)) for f in load_config(target).feeds}
    assert after == before

    again = run(target, "import", str(tmp_path / "feeds.opml"))
    assert "nothing new to import" in again.stdout and "skipped 3 already configured" in again.stdout
    assert len(load_config(target).feeds) == 3

    only = run(source, "export", "--tag", "local")
    assert "Metro" in only.stdout and "Untagged" not in only.stdout
    assert run(source, "export", "--tag", "nope").returncode == 1


def test_a_hostile_file_is_refused(tmp_path: Path) -> None:
    target = write_config(tmp_path, [], {})
    bomb = tmp_path / "bomb.opml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        '<opml version="2.0"><body><outline text="&lol2;" xmlUrl="https://x.org/f"/></body></opml>'
    )
    done = run(target, "import", str(bomb))
    assert done.returncode == 2
    assert f"{bomb}:" in done.stderr and "Traceback" not in done.stderr
    assert load_config(target).feeds == ()
