"""`watchdesk --help` imports click and no command (issue 15: it took 0.2 s, importing
asyncio, the config and sqlite-utils for every command); `search` loads none of the
network or extraction code. Not a timing test: what is imported is what costs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from watchdesk.cli.main import COMMANDS, main

HEAVY = ("asyncio", "sqlite_utils", "httpx", "trafilatura", "lxml", "feedparser", "apscheduler")


def imported_after(code: str, cwd: Path | None = None) -> list[str]:
    probe = f"{code}\nimport sys\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()[-1].split()[1:]


def test_help_imports_no_command() -> None:
    code = (
        "from watchdesk.cli.main import main\n"
        "try:\n    main(['--help'], prog_name='watchdesk')\nexcept SystemExit:\n    pass\n"
        "import sys\nassert not [m for m in sys.modules if m.startswith(('watchdesk.config', 'watchdesk.store'))]"
    )
    assert imported_after(code) == []


def test_the_listed_short_help_is_each_commands_own() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name, (_module, _attribute, short) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=10_000) == short, name


def test_an_unknown_command_says_so_without_importing_the_others() -> None:
    code = (
        "from watchdesk.cli.main import main\n"
        "try:\n    main(['serch'], prog_name='watchdesk')\nexcept SystemExit as e:\n    assert e.code == 2\n"
    )
    assert imported_after(code) == []


def test_search_loads_no_network_or_extraction_code(tmp_path: Path) -> None:
    (tmp_path / "watchlists").mkdir()
    (tmp_path / "watchdesk.toml").write_text('[watchdesk]\ndatabase = "w.db"\n')
    code = (
        "from watchdesk.cli.main import main\n"
        "try:\n    main(['--config', 'watchdesk.toml', 'search', 'fentanyl'], prog_name='watchdesk')\n"
        "except SystemExit as e:\n    assert e.code == 1, e.code\n"
    )
    found = imported_after(code, cwd=tmp_path)
    assert not {"httpx", "trafilatura", "lxml", "feedparser", "apscheduler"} & set(found), found
