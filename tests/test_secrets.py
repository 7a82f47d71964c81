"""Secrets stay secret, end to end: an SMTP password, Slack webhook URLs with a
recognisable token and a webhook signing key, given to the real `watchdesk run` through
`env:` and `credential:` references, are used (the receivers see them) but never appear
in the daemon's debug logs, in `watchdesk check` or `watchdesk outbox` output, in the
errors stored in the outbox, or anywhere in the SQLite files, when deliveries succeed
and when they fail against receivers that echo what they were sent. A secret written
inline in the config is refused by `check` without being repeated."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import write_config
from server import LocalServer, Reply, Request
from smtp_fixture import free_port, smtp_server

from watchdesk.config.secrets import REDACTED, Redactor, scrub_logs, url_secrets
from watchdesk.notify.email import login_redactor, smtp_failure

# Plain AUTH is what the test needs: the relay is on loopback (the channel's tls = "none").
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SMTP_LOGIN = "desk-login"
SMTP_PASSWORD = "smtpPw-7Qx2Lk9VzR"
SLACK_TOKEN = "slackTok-R4nD0mZ8qW"
SLACK_PATH = f"/services/T0SECRET/B0SECRET/{SLACK_TOKEN}"
OFFLINE_TOKEN = "offlineTok-Y6mN2bQe"  # in the URL of a Slack webhook nobody listens at
HMAC_SECRET = "hmacKey-9Wf3Jp1XcU"
SECRETS = (SMTP_PASSWORD, SLACK_TOKEN, OFFLINE_TOKEN, HMAC_SECRET)
HITS = 3
CHANNELS = ("desk", "newsroom", "offline", "hook")
DEADLINE = 60.0  # overall limit of waiting for the daemon (normally a few seconds)

WATCHLIST = """
description = "Secrets test"
match = ['fentanyl']
notify = ["desk", "newsroom", "offline", "hook"]
"""


# ---- receivers that can fail, echoing what they were sent --------------------------------


@dataclass
class SmtpReceiver:
    """aiosmtpd handler and authenticator: accepts, or refuses the login with a reply that
    repeats the password it was given (a hostile or careless server)."""

    refuse_login: bool
    logins: list[tuple[str, str]] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        if self.refuse_login:
            reply = f"535 5.7.8 password {password} refused for {login}"
            return AuthResult(success=False, handled=False, message=reply)
        return AuthResult(success=(login, password) == (SMTP_LOGIN, SMTP_PASSWORD))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 2.0.0 accepted"


@contextmanager
def smtp_with_auth(receiver: SmtpReceiver) -> Iterator[int]:
    with smtp_server(
        receiver, authenticator=receiver.authenticator, auth_require_tls=False, auth_required=True
    ) as port:
        yield port


def echo(request: Request) -> str:
    """Everything a receiver was sent: the path, every header, the body."""
    headers = " ".join(f"{k}={v}" for k, v in request.headers.items())
    return f"{request.method} {request.path} {headers} {request.body.decode(errors='replace')}"


def failing_then(first: int, then: int, say: Callable[[Request], str] = echo) -> Callable[[Request], Reply]:
    """Answer the first request `first`, every later one `then`, each with `say(request)`
    as the body (by default an echo of the whole request)."""
    calls = 0
    lock = threading.Lock()

    def handler(request: Request) -> Reply:
        nonlocal calls
        with lock:
            calls += 1
            status = first if calls == 1 else then
        return Reply(status, f"refused: {say(request)}".encode())

    return handler


# ---- config, feed, daemon ---------------------------------------------------------------


def rss_feed(base: str) -> bytes:
    now = datetime.now(UTC)
    items = "".join(
        f"<item><title>Fentanyl seizure {i}</title><link>{base}/story/{i}</link>"
        f"<guid>{base}/story/{i}</guid><pubDate>{format_datetime(now - timedelta(minutes=i))}</pubDate>"
        f"<description>Police seized fentanyl pills, case {i}.</description></item>"
        for i in range(HITS)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Metro</title>'
        f"<link>{base}/</link><description>Metro</description>{items}</channel></rss>"
    ).encode()


def secret_config(folder: Path, server: LocalServer, smtp_port: int) -> tuple[Path, dict[str, str]]:
    """The config (secrets by reference only) and the environment that resolves them:
    the SMTP password and the offline webhook as credential files, the Slack webhook and
    the signing key as environment variables."""
    server.route("/feed.xml", rss_feed(server.base), headers={"Content-Type": "application/rss+xml"})
    credentials = folder / "credentials"
    credentials.mkdir()
    (credentials / "smtp_password").write_text(SMTP_PASSWORD + "\n")
    (credentials / "offline_webhook").write_text(
        f"http://127.0.0.1:{free_port()}/services/T0OFF/B0OFF/{OFFLINE_TOKEN}"
    )
    config = write_config(
        folder,
        [{"url": server.url("/feed.xml"), "name": "Metro"}],
        {"secrets": WATCHLIST},
        polling='backfill = "all"\ninterval = "1h"\nfetch_article = "never"',
        extra=f"""
            [channel.desk]
            type = "email"
            smtp = "smtp://127.0.0.1:{smtp_port}"
            tls = "none"
            from = "watchdesk@example.org"
            to = ["desk@example.org"]
            username = "{SMTP_LOGIN}"
            password = "credential:smtp_password"

            [channel.newsroom]
            type = "slack"
            webhook = "env:WATCHDESK_TEST_SLACK"

            [channel.offline]
            type = "slack"
            webhook = "credential:offline_webhook"

            [channel.hook]
            type = "webhook"
            url = "{server.url("/hook")}"
            secret = "env:WATCHDESK_TEST_HMAC"
            """,
    )
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(credentials),
        "WATCHDESK_TEST_SLACK": server.url(SLACK_PATH),
        "WATCHDESK_TEST_HMAC": HMAC_SECRET,
    }
    return config, env


def watchdesk(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "--log-level", "debug", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def outbox_rows(db_path: Path) -> list[tuple[str, str, str | None]]:
    """(channel, status, last_error) of every outbox row; [] before the table exists."""
    if not db_path.exists():
        return []
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            return db.execute("SELECT channel, status, last_error FROM outbox ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def sqlite_files(db_path: Path) -> dict[str, bytes]:
    """The raw bytes of the database and, when present, its -wal and -shm files."""
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            found[path.name] = path.read_bytes()
    return found


def assert_no_secret(where: str, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret!r} appears in {where}"


def run_daemon_until(
    config: Path, env: dict[str, str], logs: Path, done: Callable[[], bool]
) -> tuple[str, str, dict[str, bytes]]:
    """Run `watchdesk run --log-level debug` until `done()`, snapshot the SQLite files
    while it runs, stop it with SIGTERM; return its stdout, stderr and the snapshot."""
    out_path, err_path = logs / "daemon.out", logs / "daemon.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchdesk", "--config", str(config), "--log-level", "debug", "run"],
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,  # its parse workers share its process group
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while not done():
            assert daemon.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "timed out\n" + err_path.read_text()[-4000:]
            time.sleep(0.02)  # a polling interval, not a timing assertion
        snapshot = sqlite_files(config.parent / "watchdesk.db")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, err_path.read_text()[-4000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
        with suppress(ProcessLookupError):  # whatever it left behind, even on failure
            os.killpg(daemon.pid, signal.SIGKILL)
    return out_path.read_text(), err_path.read_text(), snapshot


# ---- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("receivers_fail", [True, False], ids=["failing", "accepting"])
def test_referenced_secrets_never_leak(tmp_path: Path, server: LocalServer, receivers_fail: bool) -> None:
    """Proves that secrets given by reference are used (the receivers see the password,
    the webhook token and a valid signature) but appear in none of: the daemon's stdout
    and stderr at debug level, `check` and `outbox` output, the outbox's last_error, and
    the raw bytes of the database, -wal and -shm files. In the failing run the SMTP
    server refuses the login repeating the password, Slack answers 500 then 404 and the
    webhook 500 then 400, each echoing the request and the token, and one Slack webhook
    is unreachable: the errors are stored and logged, redacted."""
    smtp = SmtpReceiver(refuse_login=receivers_fail)
    if receivers_fail:
        server.route(SLACK_PATH, handler=failing_then(500, 404))
        server.route("/hook", handler=failing_then(500, 400))
    else:
        server.route(SLACK_PATH, b"ok")
        server.route("/hook", b"")
    db_path = tmp_path / "watchdesk.db"

    def settled() -> bool:
        rows = outbox_rows(db_path)
        if len(rows) < HITS * len(CHANNELS):
            return False
        offline_failed = any(error for channel, _, error in rows if channel == "offline")
        others = [(status, error) for channel, status, error in rows if channel != "offline"]
        if receivers_fail:  # desk, newsroom, hook: every row failed once at least
            return offline_failed and all(error for _, error in others)
        return offline_failed and all(status == "sent" for status, _ in others)

    with smtp_with_auth(smtp) as smtp_port:
        config, env = secret_config(tmp_path, server, smtp_port)
        stdout, stderr, snapshot = run_daemon_until(config, env, tmp_path, settled)
        cli = {
            args: watchdesk(config, env, *args)
            for args in (
                ("check",),
                ("outbox",),
                ("outbox", "--status", "dead"),
                ("outbox", "--status", "pending"),
            )
        }

    # The secrets were in use: the receivers got them.
    assert smtp.logins and set(smtp.logins) == {(SMTP_LOGIN, SMTP_PASSWORD)}
    slack_posts = server.hits(SLACK_PATH)
    assert slack_posts
    for post in server.hits("/hook"):
        stamp = post.headers["x-watchdesk-timestamp"]
        mac = hmac.new(HMAC_SECRET.encode(), stamp.encode() + b"." + post.body, hashlib.sha256)
        assert post.headers["x-watchdesk-signature"] == "sha256=" + mac.hexdigest()
    assert len(smtp.received) == (0 if receivers_fail else HITS)

    # ... and never shown.
    assert_no_secret("the daemon's stdout", stdout)
    assert_no_secret("the daemon's stderr", stderr)
    assert "level=debug " in stderr and "daemon_started" in stderr  # debug logging was on
    for args, result in cli.items():
        assert result.returncode == 0, result.stderr
        assert_no_secret(f"`watchdesk {' '.join(args)}` output", result.stdout + result.stderr)
    rows = outbox_rows(db_path)
    errors = {channel: [e for c, _, e in rows if c == channel and e] for channel in CHANNELS}
    for channel, texts in errors.items():
        for text in texts:
            assert_no_secret(f"last_error of channel {channel}", text)
    assert snapshot, "no database files found while the daemon ran"
    for name, data in {**snapshot, **sqlite_files(db_path)}.items():
        assert_no_secret(name, data)

    assert errors["offline"], "the unreachable webhook recorded no error"
    if receivers_fail:
        assert all("SMTP 535" in e and "[redacted]" in e for e in errors["desk"]), errors["desk"]
        assert any("HTTP 500" in e for e in errors["newsroom"]), errors["newsroom"]
        assert any("HTTP 404" in e and "[redacted]" in e for e in errors["newsroom"]), errors["newsroom"]
        assert any("HTTP 500" in e for e in errors["hook"]) and any("HTTP 400" in e for e in errors["hook"])
        assert "channel_failing" in stderr and "delivery_dead" in stderr


def test_a_receiver_naming_only_the_webhook_token_does_not_leak_it(
    tmp_path: Path, server: LocalServer
) -> None:
    """Proves an answer that repeats just the token part of the Slack webhook URL (as in
    `invalid_token: <token>`, not the whole path) is redacted in the daemon's log, the
    stored last_error and the database like the whole URL is."""
    server.route(
        SLACK_PATH, handler=failing_then(404, 404, lambda r: f"invalid_token {r.path.split('/')[-1]}")
    )
    server.route("/hook", b"")
    db_path = tmp_path / "watchdesk.db"

    def newsroom_dead() -> bool:
        rows = [status for channel, status, _ in outbox_rows(db_path) if channel == "newsroom"]
        return len(rows) == HITS and all(status == "dead" for status in rows)

    with smtp_with_auth(SmtpReceiver(refuse_login=False)) as smtp_port:
        config, env = secret_config(tmp_path, server, smtp_port)
        stdout, stderr, snapshot = run_daemon_until(config, env, tmp_path, newsroom_dead)
    errors = [e or "" for channel, _, e in outbox_rows(db_path) if channel == "newsroom"]
    assert all("HTTP 404" in e and "invalid_token" in e for e in errors), errors
    assert_no_secret("last_error", "\n".join(errors))
    assert_no_secret("the daemon's stderr", stderr)
    for name, data in {**snapshot, **sqlite_files(db_path)}.items():
        assert_no_secret(name, data)


def test_check_shows_no_resolved_secret(tmp_path: Path, server: LocalServer) -> None:
    """Proves `watchdesk check` resolves every reference (exit 0) and prints none of the
    values, and that a reference that does not resolve is named, exit 2, without a value."""
    config, env = secret_config(tmp_path, server, free_port())
    result = watchdesk(config, env, "check")
    assert result.returncode == 0, result.stderr
    assert "desk (email)" in result.stdout and "newsroom (slack)" in result.stdout
    assert_no_secret("check output", result.stdout + result.stderr)

    broken = {k: v for k, v in env.items() if k != "WATCHDESK_TEST_SLACK"}
    (tmp_path / "credentials" / "smtp_password").unlink()
    result = watchdesk(config, broken, "check")
    assert result.returncode == 2
    assert "environment variable WATCHDESK_TEST_SLACK is not set" in result.stderr
    assert "credential smtp_password is not readable" in result.stderr
    assert_no_secret("check output", result.stdout + result.stderr)


INLINE = {
    "password": "inlinePw-Hq83Vn2Lx",
    "webhook": "https://hooks.slack.com/services/T0INL/B0INL/inlineTok-Zp4Kd7Wm",
    "secret": "inlineHmac-Ty6Rc1Bs",
}


def test_inline_secrets_are_refused_without_being_repeated(tmp_path: Path) -> None:
    """Proves a secret written inline (SMTP password, Slack webhook URL, webhook signing
    key) makes `check` and `run` exit 2, naming file and line of each, and that neither
    repeats the value it refused."""
    config = write_config(
        tmp_path,
        [{"url": "http://127.0.0.1:9/feed.xml", "name": "Metro"}],
        {"secrets": 'match = ["fentanyl"]\nnotify = ["desk", "newsroom", "hook"]\n'},
        extra=f"""
            [channel.desk]
            type = "email"
            smtp = "smtp://127.0.0.1:2525"
            tls = "none"
            from = "watchdesk@example.org"
            to = ["desk@example.org"]
            password = "{INLINE["password"]}"

            [channel.newsroom]
            type = "slack"
            webhook = "{INLINE["webhook"]}"

            [channel.hook]
            type = "webhook"
            url = "http://127.0.0.1:9/hook"
            secret = "{INLINE["secret"]}"
            """,
    )
    lines = config.read_text().splitlines()
    for command in ("check", "run"):
        result = watchdesk(config, dict(os.environ), command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        output = result.stdout + result.stderr
        for key, value in INLINE.items():
            line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith(f"{key} ="))
            assert f"{config}:{line}:" in output and "never written inline" in output, output
            assert value not in output, f"{command} repeated the inline {key}"
            assert value.rsplit("/", 1)[-1] not in output


# ---- the Redactor: every form, short secrets, cut text, URLs, logs --------------------------

SECRET = "Zq7 Lm2/Vx+9Rt:4Kp"


def test_a_redactor_replaces_every_encoding_of_a_secret() -> None:
    """Proves the secret is replaced plain, percent-encoded (either case of hex, `+` for
    a space), JSON-escaped, as Python's bytes repr writes it, and in base64 at each of the
    three alignments it can have inside a longer stream, the whole base64 run going."""
    scrub = Redactor(SECRET)
    forms = [
        SECRET,
        quote(SECRET, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(SECRET, safe="")),  # lower-case hex
        quote_plus(SECRET),
        repr(SECRET.encode())[2:-1],
    ]
    for prefix in (b"", b"u", b"us", b"\0user\0"):
        forms.append(base64.b64encode(prefix + SECRET.encode()).decode())
        forms.append(base64.urlsafe_b64encode(prefix + SECRET.encode() + b"tail").decode())
    for form in forms:
        assert scrub(f"said: <{form}> ok") == f"said: <{REDACTED}> ok", form


def test_a_short_secret_does_not_turn_every_message_into_markers() -> None:
    """Proves a 1-3 character password is not replaced on its own (MIN_SECRET_CHARS), and
    is still replaced inside the AUTH PLAIN token, AUTH LOGIN's user line and `user:pw`."""
    text = "a 2 on ab: the server said 'no' to ab"
    assert Redactor("ab", "a", "on")(text) == text
    scrub = login_redactor("desk", "ab")
    plain_token = base64.b64encode(b"\0desk\0ab").decode()
    login_line = base64.b64encode(b"desk").decode()
    assert scrub(f"535 AUTH PLAIN {plain_token} refused") == f"535 AUTH PLAIN {REDACTED} refused"
    assert scrub(f"535 AUTH LOGIN {login_line} refused") == f"535 AUTH LOGIN {REDACTED} refused"
    assert scrub("bad desk:ab") == f"bad {REDACTED}"
    assert scrub("535 refused for desk, try again") == "535 refused for desk, try again"  # the name stays


def test_a_cut_text_loses_the_start_of_a_secret_at_its_end() -> None:
    """Proves `cut=True` replaces an end of text that starts a secret (in any form, and in
    base64 the whole run it ends), and that an uncut text is left alone."""
    scrub = Redactor(SECRET)
    assert scrub("POST /hook/Zq7 Lm", cut=True) == f"POST /hook/{REDACTED}"
    assert scrub("POST /hook/Zq7%20Lm2%2", cut=True) == f"POST /hook/{REDACTED}"
    token = base64.b64encode(b"\0user\0" + SECRET.encode()).decode()
    assert scrub(f"AUTH PLAIN {token[:16]}", cut=True) == f"AUTH PLAIN {REDACTED}"
    assert scrub("POST /hook/Zq7 Lm") == "POST /hook/Zq7 Lm"
    assert scrub("nothing secret here", cut=True) == "nothing secret here"


def test_url_secrets_of_an_http_url_and_of_an_apprise_url() -> None:
    """Proves an http(s) URL gives its path and query pieces and its userinfo (decoded,
    and as Basic auth joins it) but not its host, and that a URL secret through and
    through (`whole`, as Apprise's) also gives its host and user, but not an IP address."""
    found = url_secrets(
        "https://ops:s%3Acret%20pw@hooks.example.org/services/T0/B0/tokenValue1?key=queryValue2"
    )
    assert {"tokenValue1", "queryValue2", "s:cret pw", "ops:s:cret pw"} <= set(found)
    assert "hooks.example.org" not in found
    whole = set(url_secrets("tgram://123456789:AAHdefGHIjklMNO/987654321", whole=True))
    assert {"123456789:AAHdefGHIjklMNO", "AAHdefGHIjklMNO", "987654321"} <= whole
    assert set(url_secrets("pover://userKey12345@appToken67890", whole=True)) >= {
        "userKey12345",
        "appToken67890",
    }
    assert not any(s == "127.0.0.1" for s in url_secrets("json://127.0.0.1:8080/hookToken99", whole=True))


def test_scrub_logs_redacts_records_while_the_redactor_lives(caplog: pytest.LogCaptureFixture) -> None:
    """Proves a record of a scrubbed logger (and of one below it) is redacted, its
    arguments and its traceback too, and that records are left alone once the Redactor
    (its channel) is gone."""
    scrub = Redactor(SECRET)
    logger = logging.getLogger("wd_test_library.sub")
    scrub_logs(scrub, "wd_test_library")
    caplog.set_level(logging.DEBUG)
    logger.warning("posting to %s", f"/hook/{SECRET}")
    try:
        raise ValueError(f"cannot post to {quote(SECRET, safe='')}")
    except ValueError:
        logger.exception("failed")
    assert SECRET not in caplog.text and quote(SECRET, safe="") not in caplog.text
    assert f"posting to /hook/{REDACTED}" in caplog.text and "ValueError: cannot post to" in caplog.text
    del scrub
    gc.collect()
    caplog.clear()
    logger.warning("posting to %s", SECRET)
    assert SECRET in caplog.text


def test_an_smtp_error_quoting_a_password_character_does_not_show_it() -> None:
    """Proves a password smtplib cannot encode (its error quotes the character) gives a
    message without it."""
    error = UnicodeEncodeError("ascii", "pässwort", 1, 2, "ordinal not in range(128)")
    result = smtp_failure(error)
    assert "ä" not in result.message and "\\xe4" not in result.message and not result.ok
