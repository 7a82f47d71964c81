"""Secrets never leave their place: every failure path a user meets, driven against real
servers on 127.0.0.1, through the commands a user runs (`poll --once`, `outbox`, `outbox
show`, `notify-test`), leaves no configured secret, in any encoding a protocol uses, in
the command output, the logs or the raw bytes of the SQLite files.

The servers are careless or hostile on purpose: the SMTP server refuses the login (535,
454, 550, 421 and hanging up, or hanging up without a word) repeating every AUTH line it
got, raw and decoded; the Slack and webhook receivers answer 4xx/5xx (and Slack 200
without `ok`) with the whole request echoed back, URL, headers and body, at the start of
the answer, across the cut of the shown text and across the cut of the bytes read; the
Apprise services answer 4xx/5xx with the request echoed. TLS failures (a certificate
nobody trusts) and refused connections (a closed port) are driven for every channel.

The needles: each secret plain, percent-encoded (upper and lower case hex, `+` for space),
JSON-escaped, base64 at every alignment (so inside AUTH PLAIN's `\\0user\\0password`
and Basic auth's `user:password` too, and the whole AUTH PLAIN and AUTH LOGIN tokens),
the CRAM-MD5 answer the server saw (and its digest), and the first 6 characters of each
secret (a secret cut in half by a truncation is still a leak).

The SMTP server and the receivers run in this process; aiosmtpd's own log ("mail.log",
the server side: it logs what clients send) is kept out of the captured output, since it
is not watchdesk's."""

from __future__ import annotations

import base64
import email.charset
import json
import logging
import re
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import trustme
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from conftest import write_config
from server import LocalServer, Reply, Request
from smtp_fixture import free_port, smtp_server

from watchdesk.cli.main import main

SMTP_USER = "deskLogin"
SMTP_PASSWORD = "Pw7Qx2Lk9VzRmT4c"
SLACK_TOKEN = "Sk4Rn0mZ8qWyX2pLb"
SLACK_PATH = f"/services/T0LEAKAA/B0LEAKBB/{SLACK_TOKEN}"
HOOK_USER = "hookuser"
HOOK_PASSWORD = "Hp3 Vn8+Lx/2Qw:6R%t"  # in the URL percent-encoded: every URL encoding matters
HOOK_PATH_TOKEN = "Hk5Jc1Xu7Bm3Nd6Fy"
HOOK_QUERY_TOKEN = "Hq8Ty2Wd4Gs6Lp0Ce"
HOOK_PATH = f"/hook/{HOOK_PATH_TOKEN}"
HMAC_SECRET = "Hm9Wf3Jp1XcU4Ke7o"
APPRISE_USER = "apuser"
APPRISE_PASSWORD = "Ap6Tr3Wz9Mc2Vb5Nu"
APPRISE_TOKEN = "At2Gy8Ps4Dk6Lh1Qi"
APPRISE_HEADER_TOKEN = "Ax7Kd3Mv5Rb9Tz2Jw"
APPRISE_QUERY_TOKEN = "Aq1Ls5Ef9Wx3Cn7Pv"
APPRISE_TOPIC = "Nt4Ub8Yc6Fe2Ho0Gk"

ENV = {
    "smtp": "WD_LEAK_SMTP_PASSWORD",
    "slack": "WD_LEAK_SLACK_WEBHOOK",
    "hmac": "WD_LEAK_HOOK_HMAC",
    "apprise": "WD_LEAK_APPRISE_URLS",
}

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


# ---- the needles ---------------------------------------------------------------------------


def base64_cores(data: bytes) -> set[bytes]:
    """The base64 characters that depend on `data` alone, wherever it starts in a longer
    base64-encoded stream (3 alignments; standard and URL-safe alphabets)."""
    found = set()
    for offset in range(3):
        start, end = -(-8 * offset // 6), (8 * offset + 8 * len(data)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + data + b"\0\0")[start:end]
            if len(core) >= 4:
                found.add(core)
    return found


def encodings(secret: str, *, cut: bool = True) -> dict[str, bytes]:
    """A secret in every form a protocol (or an echo of one) writes it; with `cut`, its
    first 6 characters too (what a cut through the secret would leave)."""
    forms = {
        "plain": secret,
        "percent-encoded": quote(secret, safe=""),
        "percent-encoded in a path": quote(secret),
        "form-encoded": quote_plus(secret),
        "JSON": json.dumps(secret)[1:-1],
    }
    if cut:
        forms["first 6 characters"] = secret[:6]
    found = {name: value.encode() for name, value in forms.items()}
    for name in ("percent-encoded", "form-encoded"):
        found[name + ", lower-case hex"] = re.sub(rb"%[0-9A-F]{2}", lambda m: m[0].lower(), found[name])
    for i, core in enumerate(sorted(base64_cores(secret.encode()))):
        found[f"base64 #{i}"] = core
    return found


def needles(
    secrets: dict[str, str], composites: dict[str, str] | None = None, tokens: dict[str, str] | None = None
) -> dict[str, bytes]:
    """`secrets` in every encoding; `composites` (a login and its password, as AUTH PLAIN
    or Basic auth join them) in every encoding but cut; `tokens` (what a protocol sends:
    an AUTH line) as is."""
    found = {f"{name} {form}": value for name, s in secrets.items() for form, value in encodings(s).items()}
    for name, s in (composites or {}).items():
        found.update({f"{name} {form}": value for form, value in encodings(s, cut=False).items()})
    found.update({name: value.encode() for name, value in (tokens or {}).items()})
    unique: dict[bytes, str] = {}
    for name, value in found.items():
        unique.setdefault(value, name)  # one name per needle: a form that is the plain one adds nothing
    return {name: value for value, name in unique.items()}


def smtp_needles(seen: list[str]) -> dict[str, bytes]:
    """The password, the AUTH PLAIN and AUTH LOGIN tokens, and every line the server got
    during AUTH (raw and, for CRAM-MD5, the digest decoded from it)."""
    tokens = {
        "AUTH PLAIN token": base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode(),
        "AUTH LOGIN user": base64.b64encode(SMTP_USER.encode()).decode(),
        "AUTH LOGIN password": base64.b64encode(SMTP_PASSWORD.encode()).decode(),
    }
    for i, line in enumerate(seen):
        tokens[f"AUTH line #{i}"] = line
        decoded = base64.b64decode(line).decode("latin-1")
        if decoded.startswith(SMTP_USER + " "):  # CRAM-MD5: "user hexdigest"
            tokens[f"CRAM-MD5 digest #{i}"] = decoded.split()[-1]
    composites = {"AUTH PLAIN": f"\0{SMTP_USER}\0{SMTP_PASSWORD}"}
    return needles({"SMTP password": SMTP_PASSWORD}, composites, tokens)


# ---- where to look --------------------------------------------------------------------------


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], str]]:
    """Everything logged while the test runs, at debug level. The CLI's logging setup
    replaces the root logger's handlers (so caplog's too): the capture handler is also put
    on the loggers a delivery goes through, and the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    caplog.set_level(logging.DEBUG)
    names = ("watchdesk", "apprise", "urllib3", "requests", "asyncio", "h11", "httpx", "httpcore")
    for name in names:
        logging.getLogger(name).addHandler(caplog.handler)
    monkeypatch.setattr(logging.getLogger("mail.log"), "disabled", True)  # the SMTP server's side
    try:
        yield lambda: caplog.text
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(caplog.handler)
        root.handlers[:], root.level = saved


def sqlite_bytes(folder: Path) -> dict[str, bytes]:
    """The raw bytes of the database and its -wal and -shm files."""
    db = folder / "watchdesk.db"
    return {p.name: p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()}


def outbox_rows(folder: Path) -> list[tuple[int, str, int, str | None]]:
    with closing(sqlite3.connect(folder / "watchdesk.db")) as db:
        return db.execute("SELECT id, status, attempts, last_error FROM outbox ORDER BY id").fetchall()


def attempts(folder: Path) -> list[str]:
    with closing(sqlite3.connect(folder / "watchdesk.db")) as db:
        return [m for (m,) in db.execute("SELECT message FROM delivery_attempts ORDER BY id")]


def cli(config: Path, *args: str) -> tuple[int, str]:
    """`watchdesk --log-level debug ARGS` in this process: the exit code, stdout and stderr."""
    result = CliRunner().invoke(main, ["--config", str(config), "--log-level", "debug", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


@dataclass
class Run:
    """What a user's commands showed and left behind."""

    outputs: dict[str, str] = field(default_factory=dict)
    rows: list[tuple[int, str, int, str | None]] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    notify_test: str = ""


def user_paths(config: Path, channel: str) -> Run:
    """poll --once (a hit is delivered through `channel`, and fails), outbox, outbox show
    for every row, notify-test."""
    run = Run()
    code, run.outputs["poll --once"] = cli(config, "poll", "--once")
    assert code == 0, run.outputs["poll --once"]
    run.rows = outbox_rows(config.parent)
    assert run.rows, "poll --once queued nothing"
    _, run.outputs["outbox"] = cli(config, "outbox")
    for row_id, *_ in run.rows:
        code, run.outputs[f"outbox show {row_id}"] = cli(config, "outbox", "show", str(row_id))
        assert code == 0, run.outputs[f"outbox show {row_id}"]
    code, run.notify_test = cli(config, "notify-test", channel)
    run.outputs["notify-test"] = run.notify_test
    assert code == 1, run.notify_test  # every path here fails
    run.attempts = attempts(config.parent)
    assert run.attempts and all(run.attempts), "no failed attempt was recorded"
    return run


def assert_no_leak(run: Run, log_text: str, folder: Path, found: dict[str, bytes]) -> None:
    haystacks = {f"`watchdesk {name}` output": text.encode() for name, text in run.outputs.items()}
    haystacks["the logs"] = log_text.encode()
    haystacks.update(sqlite_bytes(folder))
    leaks = [
        f"{needle_name} ({needle.decode(errors='replace')!r}) in {where}"
        for where, data in haystacks.items()
        for needle_name, needle in found.items()
        if needle in data
    ]
    assert not leaks, "\n".join(leaks) + "\n\nattempts:\n" + "\n".join(run.attempts)


# ---- the feed and the config -------------------------------------------------------------------


WATCHLIST = "match = ['fentanyl']\nnotify = [{channel!r}]\n"


def rss(base: str) -> bytes:
    now = format_datetime(datetime.now(UTC) - timedelta(minutes=5))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Metro</title>'
        f"<link>{base}/</link><description>Metro</description><item><title>Fentanyl seizure</title>"
        f"<link>{base}/story/1</link><guid>{base}/story/1</guid><pubDate>{now}</pubDate>"
        "<description>Police seized fentanyl pills.</description></item></channel></rss>"
    ).encode()


def desk_config(folder: Path, feeds: LocalServer, channel: str, section: str) -> Path:
    feeds.route("/feed.xml", rss(feeds.base), headers={"Content-Type": "application/rss+xml"})
    return write_config(
        folder,
        [{"url": feeds.url("/feed.xml"), "name": "Metro"}],
        {"leaks": WATCHLIST.format(channel=channel)},
        polling='backfill = "all"\ninterval = "1h"\nfetch_article = "never"',
        extra=section,
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def untrusted_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate (from a CA nobody trusts) names 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


# ---- SMTP ----------------------------------------------------------------------------------------


class AuthRefuser:
    """aiosmtpd handler whose AUTH mechanisms refuse every login, repeating in the reply
    every line the client sent, raw and decoded (a careless or hostile server). `answer`
    is the reply code, "drop" (421, then it hangs up) or "silent" (it just hangs up)."""

    def __init__(self, answer: str):
        self.answer = answer
        self.seen: list[str] = []  # the base64 lines the client sent during AUTH

    async def _line(self, server: Any, challenge: bytes) -> str:
        await server.push(b"334 " + base64.b64encode(challenge))
        return (await server._reader.readline()).decode().strip()

    async def _refuse(self, server: Any, mechanism: str, lines: list[str]) -> AuthResult:
        self.seen += lines
        decoded = [base64.b64decode(line).decode("latin-1") for line in lines]
        said = f"AUTH {mechanism} {' '.join(lines)} = {' | '.join(decoded)}"
        if self.answer == "silent":
            server.transport.close()
        elif self.answer == "drop":
            await server.push(f"421 4.7.0 {said} refused, closing the connection")
            server.transport.close()
        else:
            await server.push(f"{self.answer} 5.7.8 {said} refused")
        return AuthResult(success=False, handled=True)

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:
        lines = args[1:] or [await self._line(server, b"")]
        return await self._refuse(server, "PLAIN", lines)

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:
        user = args[1] if len(args) > 1 else await self._line(server, b"Username:")
        return await self._refuse(server, "LOGIN", [user, await self._line(server, b"Password:")])

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> AuthResult:
        answer = await self._line(server, b"<1896.697170952@127.0.0.1>")
        return await self._refuse(server, "CRAM-MD5", [answer])


MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


def email_section(port: int, scheme: str = "smtp", tls: str | None = "none") -> str:
    return f"""
        [channel.desk]
        type = "email"
        smtp = "{scheme}://127.0.0.1:{port}"
        {f'tls = "{tls}"' if tls else ""}
        from = "watchdesk@example.org"
        to = ["desk@example.org"]
        username = "{SMTP_USER}"
        password = "env:{ENV["smtp"]}"
        """


@contextmanager
def refusing_smtp(answer: str, mechanism: str | None) -> Iterator[tuple[AuthRefuser, int]]:
    """A server offering `mechanism` (None: all three; smtplib then tries each in turn)."""
    handler = AuthRefuser(answer)
    excluded = [m for m in MECHANISMS if mechanism is not None and m != mechanism]
    with smtp_server(handler, auth_require_tls=False, auth_exclude_mechanism=excluded) as port:
        yield handler, port


@pytest.mark.parametrize("mechanism", [*MECHANISMS, None], ids=[*MECHANISMS, "all"])
@pytest.mark.parametrize("answer", ["535", "454", "550", "drop", "silent"])
def test_a_refused_smtp_login_leaks_no_auth_line(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    answer: str,
    mechanism: str | None,
) -> None:
    monkeypatch.setenv(ENV["smtp"], SMTP_PASSWORD)
    with refusing_smtp(answer, mechanism) as (handler, port):
        config = desk_config(tmp_path, server, "desk", email_section(port))
        run = user_paths(config, "desk")
    assert handler.seen, "the client never sent its login"
    assert_no_leak(run, logs(), tmp_path, smtp_needles(handler.seen))
    if answer in ("535", "454", "550") or (answer == "drop" and mechanism is not None):
        # What the server said is still there, scrubbed. (After a 421 or a hang-up,
        # smtplib's next mechanism meets a closed connection: that is the error then.)
        code = "421" if answer == "drop" else answer
        assert all(f"SMTP {code}" in m and "[redacted]" in m for m in run.attempts), run.attempts
    permanent = answer.startswith("5")
    assert ("permanent" in run.notify_test) == permanent, run.notify_test


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_an_untrusted_smtp_certificate_leaks_nothing(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    ca: trustme.CA,
    mode: str,
) -> None:
    monkeypatch.setenv(ENV["smtp"], SMTP_PASSWORD)
    handler = AuthRefuser("535")
    if mode == "starttls":
        options: dict[str, Any] = {"tls_context": untrusted_tls(ca), "require_starttls": True}
        section = lambda port: email_section(port, "smtp", None)  # noqa: E731
    else:
        options = {"ssl_context": untrusted_tls(ca)}
        section = lambda port: email_section(port, "smtps", None)  # noqa: E731
    with smtp_server(handler, **options) as port:
        config = desk_config(tmp_path, server, "desk", section(port))
        run = user_paths(config, "desk")
    assert all("TLS" in m or "SSL" in m for m in run.attempts), run.attempts
    assert_no_leak(run, logs(), tmp_path, smtp_needles([]))


def test_an_smtp_server_that_is_not_there_leaks_nothing(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], str]
) -> None:
    monkeypatch.setenv(ENV["smtp"], SMTP_PASSWORD)
    config = desk_config(tmp_path, server, "desk", email_section(free_port()))
    run = user_paths(config, "desk")
    assert all("cannot reach the SMTP server" in m for m in run.attempts), run.attempts
    assert_no_leak(run, logs(), tmp_path, smtp_needles([]))


# ---- Slack and webhooks --------------------------------------------------------------------------


def echo_request(status: int, at: int = 0, first: str = "") -> Callable[[Request], Reply]:
    """Answer `status` with the whole request in the body: the Authorization header, the
    URL as sent, every header and the body; padded so that `first` (the first secret in it)
    starts at character `at` (with spaces past 1000: a text shown on one line collapses
    them, so what is after them is shown)."""

    def handler(request: Request) -> Reply:
        headers = " ".join(f"{k}: {v}" for k, v in request.headers.items())
        url = f"http://{request.headers.get('host', '')}{request.path}"
        auth = request.headers.get("authorization", "-")
        said = f"refused {auth} {request.method} {url} {headers} {request.body[:200].decode()}"
        padding = max(0, at - said.find(first)) if first in said else 0
        return Reply(status, ((" " if at > 1000 else ".") * padding + said).encode())

    return handler


STATUSES = [200, 400, 401, 403, 404, 410, 429, 500, 503]
# Where the first secret of the echo starts: 7 characters of it before the cut of the text
# shown (200 characters) and of the bytes read (MAX_ANSWER_BYTES, 4096).
PLACES = {
    "at the start": 0,
    "across the cut of the shown text": 193,
    "across the cut of the bytes read": 4089,
}


def slack_section() -> str:
    return f"""
        [channel.newsroom]
        type = "slack"
        webhook = "env:{ENV["slack"]}"
        """


def hook_url(base: str) -> str:
    userinfo = f"{HOOK_USER}:{quote(HOOK_PASSWORD, safe='')}"
    return base.replace("://", f"://{userinfo}@") + f"{HOOK_PATH}?token={HOOK_QUERY_TOKEN}&x=1"


def hook_section(base: str) -> str:
    return f"""
        [channel.hook]
        type = "webhook"
        url = "{hook_url(base)}"
        secret = "env:{ENV["hmac"]}"
        """


def http_needles() -> dict[str, bytes]:
    secrets = {
        "Slack token": SLACK_TOKEN,
        "webhook password": HOOK_PASSWORD,
        "webhook path token": HOOK_PATH_TOKEN,
        "webhook query token": HOOK_QUERY_TOKEN,
        "webhook signing key": HMAC_SECRET,
    }
    return needles(secrets, {"Basic auth": f"{HOOK_USER}:{HOOK_PASSWORD}"})


@pytest.mark.parametrize("at", PLACES.values(), ids=PLACES.keys())
@pytest.mark.parametrize(
    ("channel", "status"),
    [("newsroom", s) for s in STATUSES] + [("hook", s) for s in STATUSES if s != 200],  # 200: delivered
)
def test_an_echoing_receiver_leaks_no_url_secret(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    channel: str,
    status: int,
    at: int,
) -> None:
    monkeypatch.setenv(ENV["slack"], server.url(SLACK_PATH))
    monkeypatch.setenv(ENV["hmac"], HMAC_SECRET)
    path = SLACK_PATH if channel == "newsroom" else HOOK_PATH
    first = SLACK_TOKEN if channel == "newsroom" else HOOK_PATH_TOKEN
    server.route(path, handler=echo_request(status, at, first))
    section = slack_section() if channel == "newsroom" else hook_section(server.base)
    config = desk_config(tmp_path, server, channel, section)
    run = user_paths(config, channel)
    sent = server.hits(path)
    assert sent, "nothing reached the receiver"
    if channel == "hook":
        assert sent[0].headers["authorization"].startswith("Basic ")
    assert all(str(status) in m or "without 'ok'" in m for m in run.attempts), run.attempts
    assert_no_leak(run, logs(), tmp_path, http_needles())


@pytest.mark.parametrize("failure", ["untrusted certificate", "closed port"])
@pytest.mark.parametrize("channel", ["newsroom", "hook"])
def test_an_unreachable_receiver_leaks_no_url_secret(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    ca: trustme.CA,
    channel: str,
    failure: str,
) -> None:
    monkeypatch.setenv(ENV["hmac"], HMAC_SECRET)
    with LocalServer(tls=untrusted_tls(ca)) as tls_server:
        base = tls_server.base if failure == "untrusted certificate" else f"http://127.0.0.1:{free_port()}"
        monkeypatch.setenv(ENV["slack"], base + SLACK_PATH)
        section = slack_section() if channel == "newsroom" else hook_section(base)
        config = desk_config(tmp_path, server, channel, section)
        run = user_paths(config, channel)
        assert tls_server.requests == []
    assert all("ConnectError" in m for m in run.attempts), run.attempts
    assert_no_leak(run, logs(), tmp_path, http_needles())


# ---- Apprise -------------------------------------------------------------------------------------


def apprise_urls(host: str, tls: bool = False) -> str:
    s = "s" if tls else ""
    json_url = (
        f"json{s}://{APPRISE_USER}:{APPRISE_PASSWORD}@{host}/apprise/{APPRISE_TOKEN}"
        f"?+X-Token={APPRISE_HEADER_TOKEN}&-token={APPRISE_QUERY_TOKEN}"
    )
    return f"{json_url}, ntfy{s}://{host}/{APPRISE_TOPIC}"


def apprise_section() -> str:
    return f"""
        [channel.phones]
        type = "apprise"
        urls = "env:{ENV["apprise"]}"
        """


def apprise_needles() -> dict[str, bytes]:
    secrets = {
        "Apprise password": APPRISE_PASSWORD,
        "Apprise path token": APPRISE_TOKEN,
        "Apprise header token": APPRISE_HEADER_TOKEN,
        "Apprise query token": APPRISE_QUERY_TOKEN,
        "ntfy topic": APPRISE_TOPIC,
    }
    return needles(secrets, {"Apprise Basic auth": f"{APPRISE_USER}:{APPRISE_PASSWORD}"})


@pytest.fixture
def apprise_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pytest.importorskip("apprise")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # requests, under Apprise, honours proxies
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    charsets = dict(email.charset.CHARSETS)
    yield
    # Loading Apprise's plugins makes UTF-8 quoted-printable for the whole process; the
    # channel undoes it (the email channel's bodies are base64).
    assert charsets == email.charset.CHARSETS


@pytest.mark.usefixtures("apprise_env")
@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
def test_an_echoing_apprise_service_leaks_no_token(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    status: int,
) -> None:
    for path in (f"/apprise/{APPRISE_TOKEN}", "/", f"/{APPRISE_TOPIC}"):
        server.route(path, handler=echo_request(status))
    monkeypatch.setenv(ENV["apprise"], apprise_urls(f"127.0.0.1:{server.port}"))
    config = desk_config(tmp_path, server, "phones", apprise_section())
    run = user_paths(config, "phones")
    assert server.hits(f"/apprise/{APPRISE_TOKEN}"), "nothing reached the receiver"
    assert_no_leak(run, logs(), tmp_path, apprise_needles())


@pytest.mark.usefixtures("apprise_env")
@pytest.mark.parametrize("failure", ["untrusted certificate", "closed port"])
def test_an_unreachable_apprise_service_leaks_no_token(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: Callable[[], str],
    ca: trustme.CA,
    failure: str,
) -> None:
    with LocalServer(tls=untrusted_tls(ca)) as tls_server:
        if failure == "untrusted certificate":
            urls = apprise_urls(f"127.0.0.1:{tls_server.port}", tls=True)
        else:
            urls = apprise_urls(f"127.0.0.1:{free_port()}")
        monkeypatch.setenv(ENV["apprise"], urls)
        config = desk_config(tmp_path, server, "phones", apprise_section())
        run = user_paths(config, "phones")
        assert tls_server.requests == []
    assert_no_leak(run, logs(), tmp_path, apprise_needles())


# ---- the real command, a process of its own --------------------------------------------------------


def watchdesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "--log-level", "debug", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_command_leaks_nothing_either(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same paths through `python -m watchdesk` (its own logging setup, nothing of
    pytest's): an SMTP server offering every mechanism and repeating every AUTH line in a
    535, and (when Apprise is installed) Apprise services echoing the request in a 500."""
    monkeypatch.setenv(ENV["smtp"], SMTP_PASSWORD)
    channels = ["desk"]
    extra = ""
    found: dict[str, bytes] = {}
    try:
        import apprise  # noqa: F401
    except ImportError:
        pass
    else:
        for path in (f"/apprise/{APPRISE_TOKEN}", "/", f"/{APPRISE_TOPIC}"):
            server.route(path, handler=echo_request(500))
        monkeypatch.setenv(ENV["apprise"], apprise_urls(f"127.0.0.1:{server.port}"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        channels.append("phones")
        extra = apprise_section()
        found.update(apprise_needles())
    with refusing_smtp("535", None) as (handler, port):
        server.route("/feed.xml", rss(server.base), headers={"Content-Type": "application/rss+xml"})
        config = write_config(
            tmp_path,
            [{"url": server.url("/feed.xml"), "name": "Metro"}],
            {"leaks": f"match = ['fentanyl']\nnotify = {channels!r}\n"},
            polling='backfill = "all"\ninterval = "1h"\nfetch_article = "never"',
            extra=email_section(port) + extra,
        )
        outputs = {"poll --once": watchdesk(config, "poll", "--once")}
        outputs["outbox"] = watchdesk(config, "outbox")
        for row_id, *_ in outbox_rows(tmp_path):
            outputs[f"outbox show {row_id}"] = watchdesk(config, "outbox", "show", str(row_id))
        for channel in channels:
            outputs[f"notify-test {channel}"] = watchdesk(config, "notify-test", channel)
    assert handler.seen
    assert outputs["poll --once"].returncode == 0, outputs["poll --once"].stderr
    assert len(outbox_rows(tmp_path)) == len(channels)
    run = Run(outputs={name: r.stdout + r.stderr for name, r in outputs.items()})
    run.attempts = attempts(tmp_path)
    assert_no_leak(run, "", tmp_path, {**smtp_needles(handler.seen), **found})
    assert "level=debug " in outputs["poll --once"].stderr  # debug logging was on
