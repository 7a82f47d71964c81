"""Feeds files (issue 12): `[watchdesk] feeds = ["feeds/*.toml"]` reads [[feed]] tables
from other files, each problem at its own `file:line`; duplicates across files name both
places; a pattern matching nothing is a warning; `opml import --into` writes one; the
files' signature changes when one is edited, added or removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from watchdesk.cli.main import main
from watchdesk.config import config_files_signature, load_config
from watchdesk.errors import ConfigError

MAIN = """\
[watchdesk]
database = "watchdesk.db"
feeds = [{patterns}]

[[feed]]
url = "https://main.example.org/feed"
name = "Main"
"""


def setup(tmp_path: Path, files: dict[str, str], patterns: str = '"feeds/*.toml"') -> Path:
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchlists" / "w.toml").write_text('match = ["fentanyl"]\n')
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    config = tmp_path / "watchdesk.toml"
    config.write_text(MAIN.format(patterns=patterns))
    return config


def feed(n: int, **extra: str) -> str:
    lines = ["[[feed]]", f'url = "https://site{n}.example.org/feed"', f'name = "Site {n}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(config, check_secrets=False)
    return [str(p) for p in e.value.problems]


def test_feeds_files_are_read_in_sorted_order_after_the_main_file(tmp_path: Path) -> None:
    config = setup(
        tmp_path,
        {"feeds/b.toml": feed(3), "feeds/a.toml": "# generated\n" + feed(1) + feed(2), "feeds/x.txt": "junk"},
    )
    loaded = load_config(config, check_secrets=False)
    assert [f.name for f in loaded.feeds] == ["Main", "Site 1", "Site 2", "Site 3"]
    assert loaded.sources == (config, tmp_path / "feeds" / "a.toml", tmp_path / "feeds" / "b.toml")
    assert loaded.warnings == ()


def test_absolute_patterns_and_a_file_matched_twice(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "more.toml").write_text(feed(7))
    pattern = f'"{other.as_posix()}/*.toml", "elsewhere/more.toml"'
    loaded = load_config(setup(tmp_path, {}, pattern), check_secrets=False)
    assert [f.name for f in loaded.feeds] == ["Main", "Site 7"]
    assert len(loaded.sources) == 2


def test_a_problem_in_a_feeds_file_is_at_its_own_line(tmp_path: Path) -> None:
    bad = feed(1) + feed(2, interval='"soon"') + '[[feed]]\nname = "no url"\n'
    config = setup(tmp_path, {"feeds/a.toml": bad})
    found = problems(config)
    path = tmp_path / "feeds" / "a.toml"
    assert any(p.startswith(f"{path}:8: feed.interval: 'soon' is not a duration") for p in found), found
    assert f"{path}:10: [[feed]] needs a url" in found


def test_anything_but_feed_tables_in_a_feeds_file_is_an_error(tmp_path: Path) -> None:
    config = setup(
        tmp_path, {"feeds/a.toml": feed(1) + '[polling]\ninterval = "1m"\n', "feeds/b.toml": "x = 1\n"}
    )
    found = problems(config)
    a, b = tmp_path / "feeds" / "a.toml", tmp_path / "feeds" / "b.toml"
    assert any(p.startswith(f"{a}:5: a feeds file holds only [[feed]] tables, not [polling]") for p in found)
    assert any(p.startswith(f"{b}:1: a feeds file holds only [[feed]] tables, not 'x'") for p in found)


def test_invalid_toml_in_a_feeds_file_names_that_file(tmp_path: Path) -> None:
    config = setup(tmp_path, {"feeds/a.toml": feed(1) + 'url = "unclosed\n'})
    found = problems(config)
    assert (
        found and found[0].startswith(f"{tmp_path / 'feeds' / 'a.toml'}:5:") and "not valid TOML" in found[0]
    )


def test_duplicates_across_files_name_both_places(tmp_path: Path) -> None:
    main_feed = '[[feed]]\nurl = "https://main.example.org/feed"\nname = "Again"\n'
    spelled = '[[feed]]\nurl = "HTTPS://MAIN.example.org:443/feed#x"\nname = "Spelled"\n'
    named = '[[feed]]\nurl = "https://other.example.org/feed"\nname = "Site 1"\n'
    config = setup(
        tmp_path, {"feeds/a.toml": feed(1), "feeds/b.toml": main_feed + "\n" + spelled + "\n" + named}
    )
    found = problems(config)
    a, b = tmp_path / "feeds" / "a.toml", tmp_path / "feeds" / "b.toml"
    assert (
        f"{b}:2: feed https://main.example.org/feed is listed twice (also feed #1 of {config}, line 6)"
        in found
    ), found
    assert any(
        p.startswith(f"{b}:6: feed URL https://MAIN.example.org:443/feed#x is the same feed as {config}:6 ")
        for p in found
    ), found
    assert f"{b}:11: two feeds are named 'Site 1' (also {a}:3): feed names must be unique" in found


def test_within_one_file_the_messages_are_as_before(tmp_path: Path) -> None:
    config = setup(tmp_path, {"feeds/a.toml": feed(1) + feed(1)})
    a = tmp_path / "feeds" / "a.toml"
    assert f"{a}:6: feed https://site1.example.org/feed is listed twice (also feed #1, line 2)" in problems(
        config
    )


def test_a_pattern_matching_nothing_is_a_warning(tmp_path: Path) -> None:
    config = setup(tmp_path, {"feeds/a.toml": feed(1)}, '"feeds/*.toml", "generated/*.toml"')
    loaded = load_config(config, check_secrets=False)
    assert [str(w) for w in loaded.warnings] == [
        f"{config}:3: [watchdesk] feeds pattern 'generated/*.toml' matches no file: no feed is read from it"
    ]
    assert [f.name for f in loaded.feeds] == ["Main", "Site 1"]


def test_the_signature_changes_when_a_feeds_file_is_edited_added_or_removed(tmp_path: Path) -> None:
    config = setup(tmp_path, {"feeds/a.toml": feed(1)})
    loaded = load_config(config, check_secrets=False)
    first = config_files_signature(loaded)
    assert [Path(p) for p, _, _ in first] == [config, tmp_path / "feeds" / "a.toml"]
    assert config_files_signature(loaded) == first

    a = tmp_path / "feeds" / "a.toml"
    a.write_text(feed(1) + feed(2))
    os.utime(a, ns=(1, 1))  # a different mtime whatever the file system's resolution
    edited = config_files_signature(loaded)
    assert edited != first

    (tmp_path / "feeds" / "b.toml").write_text(feed(3))
    added = config_files_signature(loaded)
    assert len(added) == 3 and added != edited

    a.unlink()
    removed = config_files_signature(loaded)
    assert [Path(p) for p, _, _ in removed] == [config, tmp_path / "feeds" / "b.toml"]


OPML = """<?xml version="1.0"?>
<opml version="2.0"><body>
<outline text="Local"><outline text="Metro" xmlUrl="https://metro.example.org/rss"/></outline>
<outline text="Main again" xmlUrl="https://main.example.org/feed"/>
<outline text="Site one" xmlUrl="https://site1.example.org/feed"/>
</body></opml>
"""


def test_opml_import_into_a_feeds_file_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = setup(tmp_path, {"feeds/a.toml": feed(1)})
    (tmp_path / "subs.opml").write_text(OPML)
    monkeypatch.chdir(tmp_path)  # --into is relative to the current directory
    runner = CliRunner()
    args = ["--config", str(config), "opml", "import", "subs.opml", "--into", "feeds/imported/new.toml"]
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "imported 1 feeds into feeds/imported/new.toml (skipped 2 already configured" in done.output
    # not matched by feeds/*.toml (a folder deeper): said, with what to add
    assert '"feeds/imported/new.toml"' in done.output and "the daemon will not read" in done.output
    assert 'name = "Main"' not in (tmp_path / "feeds" / "imported" / "new.toml").read_text()

    done = runner.invoke(
        main, ["--config", str(config), "opml", "import", "subs.opml", "--into", "feeds/b.toml"]
    )
    assert done.exit_code == 0, done.output
    assert "imported 1 feeds into feeds/b.toml" in done.output and "will not read" not in done.output
    loaded = load_config(config, check_secrets=False)
    assert {(f.name, f.tags) for f in loaded.feeds} == {
        ("Main", ()),
        ("Site 1", ()),
        ("Metro", ("local",)),
    }
    assert config.read_text() == MAIN.format(patterns='"feeds/*.toml"')  # the main file untouched

    again = runner.invoke(
        main, ["--config", str(config), "opml", "import", "subs.opml", "--into", "feeds/b.toml"]
    )
    assert "nothing new to import" in again.output and "skipped 3 already configured" in again.output


def test_a_feeds_folder_that_empties_keeps_the_running_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unmounted or half-rewritten folder must not make the daemon drop its feeds: a
    pattern that matched files and now matches none keeps the running config."""
    import asyncio

    from watchdesk.runtime import Runtime

    (tmp_path / "watchlists").mkdir()
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "a.toml").write_text('[[feed]]\nurl = "https://a.example/rss"\nname = "A"\n')
    main = tmp_path / "watchdesk.toml"
    main.write_text('[watchdesk]\nfeeds = ["feeds/*.toml"]\n')
    rt = Runtime(load_config(main, check_secrets=False))
    try:
        (tmp_path / "feeds" / "a.toml").rename(tmp_path / "a.toml.away")
        with caplog.at_level("ERROR"):
            assert rt.load_new_config() is None
        assert "feeds pattern 'feeds/*.toml' matched feeds files and now matches none" in caplog.text
        main.write_text('[watchdesk]\nfeeds = []\n[[feed]]\nurl = "https://b.example/rss"\nname = "B"\n')
        loaded = rt.load_new_config()  # the pattern removed on purpose: taken over
        assert loaded is not None and [f.name for f in loaded[0].feeds] == ["B"]
    finally:
        asyncio.run(rt.aclose())


def test_a_reload_the_store_refuses_is_not_tried_again_at_every_look(tmp_path: Path) -> None:
    """A changed `feeds` pattern whose takeover fails (the store refuses the write: here
    SQLite's own SQLITE_FULL) keeps the running config and its files' signature: the
    daemon does not reload every 2 s until the store takes it."""
    import asyncio

    from watchdesk.runtime import Runtime

    config = setup(tmp_path, {"feeds/a.toml": feed(1)})
    rt = Runtime(load_config(config))
    try:
        pages = rt.db.execute("PRAGMA page_count").fetchone()[0]
        rt.db.execute(f"PRAGMA max_page_count = {pages}")  # the writer's connection: no page more
        (tmp_path / "more").mkdir()
        (tmp_path / "more" / "b.toml").write_text("".join(feed(n) for n in range(2, 3000)))
        config.write_text(MAIN.format(patterns='"more/*.toml"'))
        assert rt.config_changed()
        assert asyncio.run(rt.reload_config()) is None
        assert [f.name for f in rt.config.feeds] == ["Main", "Site 1"]  # the running config stays
        assert not rt.config_changed()  # said once: the next edit tries again
        config.write_text(MAIN.format(patterns='"more/*.toml"') + "\n")
        assert rt.config_changed()
    finally:
        asyncio.run(rt.aclose())
