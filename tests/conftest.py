from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_fixture import NO_SERVER, PG_URL, drop_database, fresh_database
from server import LocalServer

from watchdesk.config import load_config
from watchdesk.models import PollSummary
from watchdesk.runtime import Runtime
from watchdesk.store.feeds import FeedRow

CORPUS = Path(os.environ.get("WATCHDESK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A safety net: a test in this process that tries to connect anywhere but loopback
    fails at once (subprocesses are kept local by the configs the tests write)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: object) -> None:
        if isinstance(address, tuple) and address:
            host = str(address[0]).split("%")[0]
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return
            if not ip.is_loopback and not (ip.ipv4_mapped and ip.ipv4_mapped.is_loopback):
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def corpus() -> Path:
    """../shared/corpus beside the project (CI has it; a user's clone may not)."""
    if not (CORPUS / "MANIFEST.md").is_file():
        pytest.skip(f"corpus not found at {CORPUS} (set WATCHDESK_CORPUS to run corpus tests)")
    return CORPUS


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """[watchdesk] database for a test run on both stores: an SQLite file (beside the
    config), then a fresh PostgreSQL database (skipped without WATCHDESK_TEST_POSTGRES)."""
    if request.param == "sqlite":
        yield "watchdesk.db"
        return
    if not PG_URL:
        pytest.skip(NO_SERVER)
    url = fresh_database()
    try:
        yield url
    finally:
        drop_database(url)


def write_config(
    folder: Path,
    feeds: list[dict[str, object]],
    watchlists: dict[str, str],
    *,
    extra: str = "",
    polling: str = "",
    network: str = "",
    database: str = "watchdesk.db",
    watchdesk: str = "",
) -> Path:
    """Write watchdesk.toml and watchlists/*.toml into folder; return the config path.
    `database`: a file name or a PostgreSQL URL (the `database` fixture); `watchdesk`:
    more [watchdesk] lines."""
    (folder / "watchlists").mkdir(parents=True, exist_ok=True)
    for name, text in watchlists.items():
        (folder / "watchlists" / f"{name}.toml").write_text(textwrap.dedent(text))
    lines = [
        "[watchdesk]",
        f"database = {_toml(database)}",
        textwrap.dedent(watchdesk),
        "",
        "[polling]",
        polling,
        "",
        "[network]",
        'allow = ["127.0.0.1/32"]',
        "" if "robots" in network else "robots = false",
        textwrap.dedent(network),
        "",
    ]
    for feed in feeds:
        lines.append("[[feed]]")
        for key, value in feed.items():
            lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    lines.append(textwrap.dedent(extra))
    path = folder / "watchdesk.toml"
    path.write_text("\n".join(lines))
    return path


def poll_once(config: Path) -> tuple[PollSummary, list[FeedRow]]:
    """Poll every feed of `config` once in this process; the summary and the feeds after."""
    rt = Runtime(load_config(config))
    try:
        summary = asyncio.run(rt.poll_feeds(rt.all_feeds()))
        return summary, rt.all_feeds()
    finally:
        asyncio.run(rt.aclose())


def start_daemon(
    config: Path, env: dict[str, str] | None = None, log_format: str | None = "text"
) -> subprocess.Popen[str]:
    """`watchdesk run` as a real subprocess, its output captured as text; `env` is added
    to this process's environment. Its log lines are `text` (`event key=value`, what
    most tests look for) unless `log_format` says otherwise (None: the config's)."""
    options = ["--log-format", log_format] if log_format else []
    return subprocess.Popen(
        [sys.executable, "-m", "watchdesk", "--config", str(config), *options, "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
