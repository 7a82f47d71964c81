"""Docs stay true: every command is in README, every config key in the reference."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from watchdesk.cli import main
from watchdesk.config import CHANNEL_COMMON, CHANNEL_TYPES, SCHEMA, WATCHLIST_KEYS, load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()


def commands(group: click.Group, prefix: str = "watchdesk") -> list[str]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the top group loads its commands when asked
        command = group.get_command(ctx, name)
        out.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            out.extend(commands(command, f"{prefix} {name}"))
    return out


def test_every_command_is_in_readme() -> None:
    missing = [c for c in commands(main) if f"`{c}" not in README]
    assert not missing, f"README.md does not document: {missing}"


def test_every_config_key_is_in_the_reference() -> None:
    keys = {f"[{table}] {key}" for table, schema in SCHEMA.items() for key in schema}
    keys |= {f"channel {key}" for key in CHANNEL_COMMON}
    keys |= {f"channel {key}" for schema in CHANNEL_TYPES.values() for key in schema}
    keys |= {f"watchlist {key}" for key in WATCHLIST_KEYS}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", REFERENCE, re.MULTILINE))
    missing = sorted(k for k in keys if k.split()[-1] not in documented)
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_every_table_has_a_section() -> None:
    for table in ("[watchdesk]", "[polling]", "[network]", "[[feed]]", "[channel.NAME]"):
        assert f"## `{table}`" in REFERENCE


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config" / "watchdesk.toml")
    assert len(config.feeds) >= 5
    assert {w.name for w in config.watchlists} >= {"opioids", "darknet"}
    assert all(w.notify == ("console",) for w in config.watchlists)


def test_readme_setup_commands_name_real_things() -> None:
    assert "pip install . && .venv/bin/watchdesk --config config/watchdesk.toml run" in README
    assert "pip install '.[test]' && .venv/bin/pytest" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet '.[test]'" in ci and ".venv/bin/pytest" in ci


def test_help_runs_for_every_command() -> None:
    for command in commands(main):
        args = command.split()[1:]
        result = subprocess.run(
            [sys.executable, "-m", "watchdesk", *args, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0, (command, result.stderr)


def test_the_readme_command_table_is_one_table() -> None:
    lines = README.splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("| `watchdesk ")]
    assert rows and rows == list(range(rows[0], rows[-1] + 1)), "a line breaks the commands table"
