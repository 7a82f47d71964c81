"""`watchdesk check` catches config mistakes that used to pass: email addresses, files in
the watchlists folder that are never read, a config that polls or matches nothing; and
secrets: `check` resolves them (unless --no-secrets), the daemon starts without them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner, Result
from conftest import write_config
from seed_fixture import serve_story
from server import LocalServer
from smtp_fixture import free_port, smtp_server

from watchdesk.cli import main
from watchdesk.notify.email import bare_address

# Plain AUTH is what the test needs: the relay is on loopback (the channel's tls = "none").
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

WATCHLIST = "match = ['fentanyl', '\"dark web\"']\n"
MISSING = "WATCHDESK_TEST_NEVER_SET_PW"


def email_channel(*, sender: str = '"watchdesk@example.org"', to: str = '["desk@example.org"]') -> str:
    return f"""
        [channel.desk]
        type = "email"
        smtp = "smtp://127.0.0.1:{free_port()}"
        tls = "none"
        from = {sender}
        to = {to}
        """


def config_with(folder: Path, extra: str = "", watchlists: dict[str, str] | None = None) -> Path:
    """A config with one feed (never contacted by `check`) and, by default, one watchlist."""
    feeds: list[dict[str, object]] = [{"url": "http://127.0.0.1:9/feed.xml", "name": "Metro"}]
    return write_config(
        folder, feeds, {"opioids": WATCHLIST} if watchlists is None else watchlists, extra=extra
    )


def check(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "check", *args])


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` holding `text`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def warnings_of(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": warning: " in line]


# ---- email addresses --------------------------------------------------------------------


def test_a_from_that_is_no_address_is_an_error_at_its_line(tmp_path: Path) -> None:
    config = config_with(tmp_path, email_channel(sender='"not-an-address"'))
    result = check(config)
    assert result.exit_code == 2, result.output
    line = line_of(config, 'from = "not-an-address"')
    assert f"{config}:{line}: channel.desk.from: 'not-an-address' is not an email address" in result.stderr
    assert "desk@example.org" in result.stderr  # says what to write instead


def test_each_recipient_is_checked_at_its_own_line(tmp_path: Path) -> None:
    to = """[
          "Day Desk <day@example.org>",
          "night desk",
          "a@example.org, b@example.org",
        ]"""
    config = config_with(tmp_path, email_channel(to=to))
    result = check(config)
    assert result.exit_code == 2, result.output
    night, two = line_of(config, '"night desk"'), line_of(config, '"a@example.org, b@example.org"')
    assert f"{config}:{night}: channel.desk.to: 'night desk' is not an email address" in result.stderr
    assert f"{config}:{two}: channel.desk.to: 'a@example.org, b@example.org' is not an email address" in (
        result.stderr
    )
    assert "2 addresses; write one per string" in result.stderr
    assert "day@example.org" not in result.stderr  # the good one is not reported


def test_no_recipient_is_an_error(tmp_path: Path) -> None:
    config = config_with(tmp_path, email_channel(to="[]"))
    result = check(config)
    assert result.exit_code == 2
    assert f"{config}:{line_of(config, 'to = []')}: channel.desk.to: list at least one recipient" in (
        result.stderr
    )


GOOD_ADDRESSES = [
    "desk@example.org",
    "Metro Desk <desk@example.org>",
    '"Desk, Metro" <desk@example.org>',
    "Rédaction Müller <redaction@example.de>",
    "<desk@example.org>",
    "desk@localhost",
]
BAD_ADDRESSES = [
    "not-an-address",
    "desk@",
    "@example.org",
    "",
    "Metro Desk <desk@example.org",
    "Metro Desk desk@example.org",
    "desk@example.org\nBcc: everyone@example.org",
    "undisclosed-recipients:;",
    "Desk <desk@example.org> and more",
]


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_addresses_the_email_channel_takes_pass(tmp_path: Path, address: str) -> None:
    bare_address(address)  # the channel takes it (raises ValueError if not)
    config = config_with(tmp_path, email_channel(sender=toml_string(address), to=f"[{toml_string(address)}]"))
    result = check(config)
    assert result.exit_code == 0, result.stderr
    assert "desk (email)" in result.stdout


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_malformed_addresses_are_errors(tmp_path: Path, address: str) -> None:
    config = config_with(tmp_path, email_channel(sender=toml_string(address)))
    result = check(config)
    assert result.exit_code == 2, result.output
    assert f"{config}:{line_of(config, 'from = ')}: channel.desk.from: " in result.stderr
    assert "is not an email address" in result.stderr


# ---- warnings ---------------------------------------------------------------------------


def test_files_the_watchlists_folder_ignores_are_named_in_warnings(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    folder = tmp_path / "watchlists"
    ignored = ["a.TOML", "b.toml.bak", "c.yaml", "notes.txt"]
    for name in ignored:
        (folder / name).write_text(WATCHLIST)
    (folder / "drugs").mkdir()  # watchlists are not read from subfolders
    (folder / "drugs" / "heroin.toml").write_text(WATCHLIST)
    quiet = [".hidden", ".opioids.toml.swp", "opioids.toml~", "#opioids.toml#"]  # editors' files
    for name in quiet:
        (folder / name).write_text("x")
    result = check(config)
    assert result.exit_code == 0, result.output  # warnings do not fail check
    assert result.stdout.startswith(f"{config}: ok (5 warnings)")
    warned = warnings_of(result)
    assert len(warned) == 5, result.stderr
    for name in ignored:
        assert f"{folder / name}: warning: ignored: " in result.stderr
    assert f"{folder / 'a.TOML'}: warning: ignored: only names ending in .toml (lower case)" in result.stderr
    assert "rename it a.toml" in result.stderr
    assert f"{folder / 'drugs'}: warning: ignored: a folder" in result.stderr
    assert not any(name in result.stderr for name in quiet)


def test_a_config_without_feeds_is_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"opioids": WATCHLIST})
    result = check(config)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [f"{config}: warning: no [[feed]] tables: nothing is polled"]
    assert "ok (1 warning)" in result.stdout


def test_a_config_whose_feeds_are_all_disabled_is_warned_at_the_first(tmp_path: Path) -> None:
    feeds: list[dict[str, object]] = [
        {"url": "http://127.0.0.1:9/a.xml", "name": "A", "enabled": False},
        {"url": "http://127.0.0.1:9/b.xml", "name": "B", "enabled": False},
    ]
    config = write_config(tmp_path, feeds, {"opioids": WATCHLIST})
    result = check(config)
    assert result.exit_code == 0, result.output
    line = line_of(config, "[[feed]]")
    assert warnings_of(result) == [
        f"{config}:{line}: warning: every feed has enabled = false: nothing is polled"
    ]


def test_no_watchlist_or_none_enabled_is_warned(tmp_path: Path) -> None:
    config = config_with(tmp_path, watchlists={})
    folder = tmp_path / "watchlists"
    result = check(config)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [
        f"{folder}: warning: no watchlist files (*.toml) in the watchlists folder: nothing is matched or alerted"
    ]
    (folder / "paused.toml").write_text(WATCHLIST + "enabled = false\n")
    result = check(config)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [
        f"{folder}: warning: every watchlist here has enabled = false: nothing is matched or alerted"
    ]


def test_a_clean_config_has_no_warning(tmp_path: Path) -> None:
    result = check(config_with(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"{tmp_path / 'watchdesk.toml'}: ok\n")


def test_errors_keep_their_format_and_fail_beside_warnings(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"opioids": WATCHLIST}, extra=email_channel(sender='"nobody"'))
    (tmp_path / "watchlists" / "b.toml.bak").write_text(WATCHLIST)
    result = check(config)
    assert result.exit_code == 2
    line = line_of(config, 'from = "nobody"')
    assert result.stderr.splitlines()[0].startswith(f"{config}:{line}: channel.desk.from: 'nobody' is not")
    assert "warning" not in result.stderr  # errors come alone: fix them, then see the rest


def test_other_commands_print_the_warnings_too(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"opioids": WATCHLIST})
    (tmp_path / "watchlists" / "b.toml.bak").write_text(WATCHLIST)
    for command in (["feeds"], ["hits"], ["outbox"]):
        result = CliRunner().invoke(main, ["--config", str(config), *command])
        assert result.exit_code == 0, (command, result.output)
        assert f"{config}: warning: no [[feed]] tables" in result.stderr, command
        assert f"{tmp_path / 'watchlists' / 'b.toml.bak'}: warning: ignored" in result.stderr, command


# ---- secrets ----------------------------------------------------------------------------


def secret_channel(smtp_port: int) -> str:
    return f"""
        [channel.desk]
        type = "email"
        smtp = "smtp://127.0.0.1:{smtp_port}"
        tls = "none"
        from = "Watchdesk <watchdesk@example.org>"
        to = ["desk@example.org"]
        username = "desk-login"
        password = "env:{MISSING}"
        """


def test_check_reports_a_secret_that_does_not_resolve_and_no_secrets_skips_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MISSING, raising=False)
    config = config_with(tmp_path, secret_channel(free_port()))
    result = check(config)
    assert result.exit_code == 2
    line = line_of(config, "password = ")
    assert f"{config}:{line}: channel 'desk': password: environment variable {MISSING} is not set" in (
        result.stderr
    )
    skipped = check(config, "--no-secrets")
    assert skipped.exit_code == 0, skipped.output
    assert "secrets    not resolved (--no-secrets)" in skipped.stdout
    monkeypatch.setenv(MISSING, "s3cret-Pw-4Xb")
    resolved = check(config)
    assert resolved.exit_code == 0, resolved.output
    assert "s3cret-Pw-4Xb" not in resolved.output


def test_no_secrets_still_checks_how_secrets_are_written(tmp_path: Path) -> None:
    config = config_with(tmp_path, secret_channel(free_port()).replace(f"env:{MISSING}", "hunter2"))
    result = check(config, "--no-secrets")
    assert result.exit_code == 2
    assert "secrets are never written inline" in result.stderr and "hunter2" not in result.stderr


@dataclass
class Receiver:
    """aiosmtpd handler and authenticator: takes the login desk-login/PASSWORD."""

    password: str
    received: list[bytes] = field(default_factory=list)

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        return AuthResult(success=(data.login, data.password) == (b"desk-login", self.password.encode()))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 2.0.0 accepted"


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    handler = Receiver("s3cret-Pw-4Xb")
    options = {"authenticator": handler.authenticator, "auth_require_tls": False, "auth_required": True}
    with smtp_server(handler, **options) as port:
        yield handler, port


def outbox(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT channel, status FROM outbox ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def run_until(config: Path, env: dict[str, str], log: Path, done: Any) -> str:
    """`watchdesk run` until done() (the daemon must keep running), then SIGTERM: it must
    exit 0. Returns its stderr."""
    with log.open("w") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchdesk", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while not done():
            assert daemon.poll() is None, f"the daemon exited {daemon.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, "timed out\n" + log.read_text()[-4000:]
            time.sleep(0.05)  # waiting for the condition, not timing it
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
    return log.read_text()


def test_the_daemon_runs_without_a_secret_and_its_alerts_wait(
    tmp_path: Path, server: LocalServer, receiver: tuple[Receiver, int]
) -> None:
    handler, port = receiver
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"opioids": WATCHLIST + 'notify = ["desk"]\n'},
        polling='backfill = "all"\nfetch_article = "never"',
        extra=secret_channel(port),
    )
    env = {k: v for k, v in os.environ.items() if k != MISSING}
    db = tmp_path / "watchdesk.db"
    log = tmp_path / "daemon.err"

    # Not exit 2 (a restart loop under systemd): it runs, says so, and queues the alert.
    stderr = run_until(
        config,
        env,
        log,
        lambda: outbox(db) == [("desk", "pending")] and "channel_unavailable" in log.read_text(),
    )
    assert (
        f"event=channel_unavailable channel=desk error=\"channel 'desk': environment variable {MISSING}"
        in stderr
    )
    assert outbox(db) == [("desk", "pending")]  # waiting: neither tried nor dead
    assert handler.received == []

    # Started again with the secret: the alert that waited goes out.
    stderr = run_until(
        config, {**env, MISSING: handler.password}, log, lambda: outbox(db) == [("desk", "sent")]
    )
    assert len(handler.received) == 1 and b"darknet" in handler.received[0]
    assert "channel_unavailable" not in stderr and handler.password not in stderr


def test_poll_once_runs_without_a_secret(tmp_path: Path, server: LocalServer) -> None:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"opioids": WATCHLIST + 'notify = ["desk"]\n'},
        polling='backfill = "all"\nfetch_article = "never"',
        extra=secret_channel(free_port()),
    )
    env = {k: v for k, v in os.environ.items() if k != MISSING}
    result = subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "poll", "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "channel_unavailable channel=desk" in result.stderr
    assert outbox(tmp_path / "watchdesk.db") == [("desk", "pending")]
