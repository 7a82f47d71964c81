"""Storage failures: one clear message naming the file and what to do, exit 2, never a
traceback, and never a database silently recreated or written over.

Every command runs as a real subprocess against real SQLite files: a populated database
(polled through the CLI), made read-only, damaged (random pages in the middle or at the
end, a garbage file, a damaged search index), emptied, replaced by a directory or by
another program's SQLite file.

Read-only is made real as root too (root ignores file permissions): the commands then
run as `nobody` through setpriv, in a directory of their own under /tmp (pytest's
tmp_path is private to root). Without setpriv, those tests are skipped, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_config
from seed_fixture import serve_story
from server import LocalServer

WATCHLISTS = {"opioids": "match = ['fentanyl']\n", "sports": "match = ['Lakers']\n"}
WRITERS = (("poll", "--once"), ("run",))
READERS = (("feeds",), ("hits",), ("search", "fentanyl"), ("outbox",), ("stories",))
EVERY_COMMAND = (*WRITERS, *READERS, ("check",))
# Raw, these act on a terminal: bidi embeddings, overrides and isolates, C1 controls.
TERMINAL_ACTIVE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x85\x9b"


def watchdesk(
    config: Path, *args: str, user: list[str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess; `user`: a prefix running it as another user (setpriv)."""
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "watchdesk", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
        env={**os.environ, "HOME": str(config.parent)},
    )


def watchdesk_each(
    config: Path, commands: tuple[tuple[str, ...], ...], user: list[str] | None = None, timeout: float = 120
) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Each command as its own subprocess, all at once (each starts a Python: in turn, they
    take long); for databases nothing writes, so the order does not matter."""
    started = {
        command: subprocess.Popen(
            [*(user or []), sys.executable, "-m", "watchdesk", "--config", str(config), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
            env={**os.environ, "HOME": str(config.parent)},
        )
        for command in commands
    }
    done = {}
    try:
        for command, process in started.items():
            out, err = process.communicate(timeout=timeout)
            done[command] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


def refused(result: subprocess.CompletedProcess[str], database: Path, phrase: str) -> None:
    """Exit 2, one message naming the database and saying `phrase`, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("watchdesk: ")]
    assert len(lines) == 1, result.stderr
    assert str(database) in lines[0] and phrase in lines[0], result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "not a file"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config and its database, populated by `poll --once`: 2 entries, 2 hits, 2 sent
    alerts, 2 stories (the feed's server is gone afterwards: nothing here polls again)."""
    folder = tmp_path_factory.mktemp("template")
    with LocalServer() as srv:
        config = write_config(
            folder, [{"url": serve_story(srv), "name": "Metro"}], WATCHLISTS, polling='backfill = "all"'
        )
        result = watchdesk(config, "poll", "--once")
    assert result.returncode == 0, result.stderr
    assert "2 new entries, 2 hits" in result.stderr
    assert not (folder / "watchdesk.db-wal").exists()  # checkpointed: the file holds everything
    yield config


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory another user can reach (tmp_path is root's own); emptied afterwards
    whatever permissions a test left."""
    folder = Path(tempfile.mkdtemp(prefix="watchdesk-store-failures-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for root, dirs, _files in os.walk(folder):
            for name in dirs:
                (Path(root) / name).chmod(0o755)
        folder.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


def desk(template: Path, place: Path) -> tuple[Path, Path]:
    """A copy of the template's config, watchlists and database in `place`."""
    shutil.copytree(template.parent, place / "desk")
    config = place / "desk" / "watchdesk.toml"
    return config, config.parent / "watchdesk.db"


@pytest.fixture(scope="module")
def unprivileged() -> list[str]:
    """The prefix that runs a command as a user file permissions apply to: none when this
    is not root; as root, setpriv to nobody (checked to really drop the privileges)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is not installed: a read-only file cannot be made real")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import watchdesk, os; print(os.geteuid())"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if probe.returncode != 0 or probe.stdout.strip() != "65534":
        pytest.skip(f"cannot run watchdesk as nobody through setpriv: {probe.stderr.strip()[-300:]}")
    if subprocess.run([*prefix, "test", "-w", "/etc/passwd"], cwd="/").returncode == 0:
        pytest.skip("setpriv to nobody kept the right to write /etc/passwd: permissions would not apply")
    return prefix


def writable(path: Path, user: list[str]) -> bool:
    return subprocess.run([*user, "test", "-w", str(path)], cwd="/").returncode == 0


def leave_wal_and_shm(database: Path, *, changes: bool) -> None:
    """A process that stops without closing its connection leaves the -wal and -shm files;
    with `changes`, the -wal holds a committed change not yet in the database file."""
    script = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('PRAGMA wal_autocheckpoint=0')\n"
        f'c.execute("UPDATE feeds SET title = {"title" if not changes else repr("changed")}")\n'
        "c.commit()\n"
        "if sys.argv[2] == 'empty':\n"
        "    c.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(database), "full" if changes else "empty"], check=True)
    wal = database.with_name(database.name + "-wal")
    assert wal.exists() and database.with_name(database.name + "-shm").exists()
    assert (wal.stat().st_size > 0) == changes


# ---- read-only ------------------------------------------------------------------------

READ_ONLY_CASES = {
    # the file read-only, its directory writable
    "file 0444": (0o444, 0o777, False),
    # the file writable, its directory (where the -wal and -shm go) read-only
    "directory 0555": (0o666, 0o555, False),
    "file 0444 and directory 0555": (0o444, 0o555, False),
    # a crash left an empty -wal and the -shm, all read-only
    "file, -wal, -shm 0444 and directory 0555": (0o444, 0o555, True),
}


@pytest.mark.parametrize("case", READ_ONLY_CASES)
def test_a_read_only_database_stops_writers_and_serves_readers(
    case: str, template: Path, place: Path, unprivileged: list[str]
) -> None:
    file_mode, dir_mode, leftovers = READ_ONLY_CASES[case]
    config, database = desk(template, place)
    if leftovers:
        leave_wal_and_shm(database, changes=False)
    for path in database.parent.glob("watchdesk.db*"):
        path.chmod(file_mode)
    database.parent.chmod(dir_mode)
    assert not (writable(database, unprivileged) and writable(database.parent, unprivileged)), case
    before = digest(database)

    refused(watchdesk(config, "poll", "--once", user=unprivileged), database, "is read-only")
    # `run` may stop even earlier, at its lock file beside the database: named too
    refused(watchdesk(config, "run", user=unprivileged, timeout=60), database, "")
    readers = {c[0]: result for c, result in watchdesk_each(config, READERS, unprivileged).items()}
    for name, result in readers.items():
        assert result.returncode == 0 and "Traceback" not in result.stderr, (name, result.stderr)
    assert "Task force shuts down darknet drug market" in readers["hits"].stdout
    assert "Task force shuts down darknet drug market" in readers["search"].stdout
    assert readers["outbox"].stdout.startswith("pending: 0  sent: 2  dead: 0")
    assert readers["stories"].stdout.count("story ") == 2
    checked = watchdesk(config, "check", user=unprivileged)
    assert checked.returncode == 0, checked.stderr
    assert f"database   {database}: quick_check ok; read-only for this user" in checked.stdout
    assert digest(database) == before


def test_feeds_shows_the_feeds_of_a_valid_read_only_database(
    template: Path, place: Path, unprivileged: list[str]
) -> None:
    config, database = desk(template, place)
    database.chmod(0o444)
    database.parent.chmod(0o555)
    assert not writable(database, unprivileged)
    result = watchdesk(config, "feeds", user=unprivileged)
    assert result.returncode == 0, result.stderr
    header, metro, size = result.stdout.splitlines()
    assert header.startswith("feed ") and metro.startswith("Metro ") and " ok " in metro
    assert size.startswith(f"database {database}: ") and size.endswith(" KB")
    assert "last entry" in metro
    as_json = json.loads(watchdesk(config, "feeds", "--json", user=unprivileged).stdout)
    assert as_json["name"] == "Metro" and as_json["entries_7d"] == 2


def test_changes_only_in_the_wal_of_a_read_only_directory_are_not_read_stale(
    template: Path, place: Path, unprivileged: list[str]
) -> None:
    """SQLite can read a -wal only through its -shm; without one, in a directory this
    user cannot write, an immutable reading would miss the changes: refused instead."""
    config, database = desk(template, place)
    leave_wal_and_shm(database, changes=True)
    database.with_name("watchdesk.db-shm").unlink()
    database.parent.chmod(0o555)
    for result in watchdesk_each(config, READERS, unprivileged).values():
        refused(result, database, "holds recent changes")
    refused(watchdesk(config, "poll", "--once", user=unprivileged), database, "is read-only")


# ---- damaged ----------------------------------------------------------------------------


def overwrite_pages(database: Path, where: str) -> None:
    """Random bytes (seeded) over 4 pages in the middle of the file or its last 3 pages,
    every one of them in use (no free page that garbage could sit in harmlessly)."""
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)
        size = db.execute("PRAGMA page_size").fetchone()[0]
        count = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    pages = range(count // 2 - 2, count // 2 + 2) if where == "middle" else range(count - 3, count)
    rng = random.Random(f"issue 16 {where}")
    with database.open("r+b") as f:
        for page in pages:
            f.seek(page * size)
            f.write(rng.randbytes(size))


def bad_free_space(database: Path) -> None:
    """A table page whose first freeblock points into its own header: a damage that
    `PRAGMA quick_check` reports as a row rather than raises."""
    with sqlite3.connect(database) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'feeds'").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with database.open("r+b") as f:
        f.seek((root - 1) * size)
        assert f.read(1) == b"\x0d"  # a table leaf page
        f.seek((root - 1) * size + 1)
        f.write(b"\x00\x08")


DAMAGED = {
    "random pages in the middle": lambda db: overwrite_pages(db, "middle"),
    "random last pages": lambda db: overwrite_pages(db, "last"),
    "a file of garbage": lambda db: db.write_bytes(random.Random(16).randbytes(db.stat().st_size)),
    "a page's free space": bad_free_space,
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_database_is_refused_by_every_command(case: str, template: Path, place: Path) -> None:
    config, database = desk(template, place)
    DAMAGED[case](database)
    before = digest(database)
    results = watchdesk_each(config, EVERY_COMMAND, timeout=60)
    for command, result in results.items():
        if command in READERS and result.returncode == 0:
            continue  # a reader skips quick_check: it read no damaged page, and wrote nothing
        refused(result, database, "is not a watchdesk database or is damaged")
        assert "restore it from a backup or move it away to start afresh" in result.stderr
    assert digest(database) == before  # not written, not recreated


def test_check_names_the_first_problems_quick_check_finds(template: Path, place: Path) -> None:
    config, database = desk(template, place)
    bad_free_space(database)
    result = watchdesk(config, "check")
    refused(result, database, "(quick_check: Page ")
    assert "free space corruption" in result.stderr


def test_a_damaged_search_index_is_found_by_check_and_search_says_so(template: Path, place: Path) -> None:
    """quick_check sees sound pages; the FTS5 index inside them is garbage. `check` runs
    FTS5's own integrity check; `search` meets the damage mid-query (an sqlite3 error
    long after the database was opened), and still ends in one message."""
    config, database = desk(template, place)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE entries_fts_data SET block = randomblob(length(block)) WHERE id > 10")
    db.close()
    refused(watchdesk(config, "check"), database, "its search index is damaged")
    refused(watchdesk(config, "search", "fentanyl"), database, "is not a watchdesk database or is damaged")
    hits = watchdesk(config, "hits")  # the rest of the archive still reads
    assert hits.returncode == 0 and "Task force shuts down" in hits.stdout, hits.stderr


# ---- not a database at all ----------------------------------------------------------------


def empty_file(database: Path) -> None:
    database.write_bytes(b"")


def a_directory(database: Path) -> None:
    database.unlink()
    database.mkdir()


def another_programs_database(database: Path) -> None:
    database.unlink()
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
    db.close()


def wal_without_its_database(database: Path) -> None:
    leave_wal_and_shm(database, changes=True)
    database.unlink()


NOT_A_DATABASE = {
    "a zero-length file": (empty_file, "is an empty file (0 bytes), not a watchdesk database"),
    "a directory": (a_directory, "is a directory, not a database file"),
    "another program's database": (another_programs_database, "is an SQLite database but not watchdesk's"),
    "a -wal without its database": (wal_without_its_database, "does not exist but its watchdesk.db-wal"),
}


@pytest.mark.parametrize("case", NOT_A_DATABASE)
def test_what_is_no_watchdesk_database_is_refused_and_left_alone(
    case: str, template: Path, place: Path
) -> None:
    make, phrase = NOT_A_DATABASE[case]
    config, database = desk(template, place)
    make(database)
    before = {p.name: digest(p) for p in database.parent.glob("watchdesk.db*") if p.suffix != ".lock"}
    for result in watchdesk_each(config, EVERY_COMMAND, timeout=60).values():
        refused(result, database, phrase)
    after = {p.name: digest(p) for p in database.parent.glob("watchdesk.db*") if p.suffix != ".lock"}
    assert after == before  # nothing created, nothing taken as a new database


def test_an_unreadable_database_is_refused(template: Path, place: Path, unprivileged: list[str]) -> None:
    config, database = desk(template, place)
    database.chmod(0o000)
    database.parent.chmod(0o777)
    for result in watchdesk_each(config, EVERY_COMMAND, unprivileged, timeout=60).values():
        refused(result, database, "cannot be read (permission denied)")
    assert stat.S_IMODE(database.stat().st_mode) == 0 and database.stat().st_size > 0


# ---- a database that does not exist yet ------------------------------------------------------


def test_reading_commands_and_check_do_not_create_a_missing_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"url": "http://127.0.0.1:9/feed.xml", "name": "Metro"}], WATCHLISTS)
    database = tmp_path / "watchdesk.db"
    note = f"watchdesk: note: database {database} does not exist yet"
    for command, result in watchdesk_each(config, READERS).items():
        assert result.returncode == (1 if command[0] == "search" else 0), (command, result.stderr)
        assert note in result.stderr and "Traceback" not in result.stderr
    feeds = watchdesk(config, "feeds").stdout
    assert "Metro" in feeds and "not in the database yet" in feeds
    checked = watchdesk(config, "check")
    assert checked.returncode == 0
    assert f"database   {database}: does not exist yet: `watchdesk run`" in checked.stdout
    assert list(tmp_path.glob("watchdesk.db*")) == []


def test_check_runs_quick_check_on_a_sound_database(template: Path, place: Path) -> None:
    config, database = desk(template, place)
    result = watchdesk(config, "check")
    assert result.returncode == 0, result.stderr
    assert f"database   {database}: quick_check ok, search index ok\n" in result.stdout


# ---- terminal-active characters from feed text ------------------------------------------------


def test_json_and_text_outputs_show_bidi_and_control_characters_inert(tmp_path: Path) -> None:
    title = "Fentanyl \u202egpj.exe\u202c seized \u2066near\u2069 Ohio \u202aline\u202b\u202d"
    text = "Agents seized fentanyl \u2067pills\u2068 at \x85 the \x9b31m border."
    rss = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<item><guid>1</guid><title>{title}</title><description>{text}</description></item>"
        "</channel></rss>"
    ).encode()
    with LocalServer() as srv:
        srv.route("/feed", rss, headers={"Content-Type": "application/rss+xml; charset=utf-8"})
        feed = {"url": srv.url("/feed"), "name": "Metro \u202eRTL", "fetch_article": "never"}
        config = write_config(tmp_path, [feed], WATCHLISTS, polling='backfill = "all"')
        polled = watchdesk(config, "poll", "--once")
    assert polled.returncode == 0, polled.stderr
    with sqlite3.connect(tmp_path / "watchdesk.db") as db:
        stored_title, stored_text = db.execute("SELECT title, text FROM entries").fetchone()
    db.close()
    assert "\u202e" in stored_title and "\u2067" in stored_text  # stored as the feed gave them

    as_json = (("hits", "--json"), ("search", "fentanyl", "--json"), ("stories", "--json"))
    for command, result in watchdesk_each(config, as_json).items():
        assert result.returncode == 0, result.stderr
        assert not set(TERMINAL_ACTIVE) & set(result.stdout), command
        assert "\\u202e" in result.stdout, command
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert rows[0]["title"] == stored_title, command  # escaped, not changed

    for command, result in watchdesk_each(config, (*READERS, ("search", "gpj.exe"))).items():
        assert result.returncode == 0, result.stderr
        assert not set(TERMINAL_ACTIVE) & set(result.stdout + result.stderr), command
    assert "gpj.exe" in watchdesk(config, "hits").stdout


def test_a_reading_command_never_upgrades_a_database(tmp_path: Path) -> None:
    """A database an older watchdesk made (an upgrade pending) is not changed by a command
    that only reads: an older daemon may still run on it. It says what to do instead."""
    from watchdesk.errors import StoreError
    from watchdesk.store import open_db

    database = tmp_path / "watchdesk.db"
    open_db(database, threaded=False).close()
    with sqlite3.connect(database) as db:  # as if the newest upgrade had not been applied yet
        db.execute("DELETE FROM _sqlite_migrations WHERE rowid = (SELECT MAX(rowid) FROM _sqlite_migrations)")
    db.close()
    before = digest(database)
    with pytest.raises(StoreError, match="upgrades pending.*restart the daemon with this version"):
        open_db(database, read_only=True)
    assert digest(database) == before
