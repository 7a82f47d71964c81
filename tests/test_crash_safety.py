"""Crash safety of the outbox, end to end: the real `watchdesk run` is SIGKILLed while it
delivers 200 alerts to a real SMTP server (aiosmtpd) and a local Slack webhook receiver,
restarted each time, and in the end every alert reached every channel, with at most one
duplicate per kill and channel, and the SQLite file passes `PRAGMA integrity_check`."""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config
from server import LocalServer
from smtp_fixture import smtp_server

HITS = 200
KILLS = 4
SEED = 20261102
HOOK_PATH = "/services/T0CRASH/B0CRASH/crashTestWebhookToken"
SLACK_ENV = "WATCHDESK_TEST_SLACK"
TITLE = "Fentanyl seizure report {:04d}"
TITLE_ID = re.compile(r"Fentanyl seizure report (\d{4})")
MIN_PROGRESS = 10  # deliveries each incarnation of the daemon makes before it is killed
DEADLINE = 120.0  # overall limit of waiting for the daemon (generous: normally ~20 s)

WATCHLIST = """
description = "Crash-safety test"
match = ['fentanyl']
notify = ["desk", "newsroom"]
"""


# ---- the receivers ----------------------------------------------------------------------


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class MailRecorder:
    """aiosmtpd handler: keeps every message it accepts (runs in the controller's thread)."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append(Mail(envelope.content))
        return "250 2.0.0 accepted"

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self.received)


# ---- the feed and the config --------------------------------------------------------------


def rss_feed(base: str, count: int) -> bytes:
    """An RSS feed of `count` items, each titled and linked uniquely, each a watchlist hit."""
    now = datetime.now(UTC)
    items = []
    for i in range(count):
        link = f"{base}/story/{i:04d}"
        published = format_datetime(now - timedelta(minutes=i))
        items.append(
            f"<item><title>{TITLE.format(i)}</title><link>{link}</link><guid>{link}</guid>"
            f"<pubDate>{published}</pubDate>"
            f"<description>Police seized fentanyl pills in case {i}.</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Metro</title><link>{base}/</link><description>Metro news</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def crash_config(folder: Path, server: LocalServer, smtp_port: int) -> Path:
    server.route("/feed.xml", rss_feed(server.base, HITS), headers={"Content-Type": "application/rss+xml"})
    return write_config(
        folder,
        [{"url": server.url("/feed.xml"), "name": "Metro"}],
        {"crash": WATCHLIST},
        polling=f'backfill = "all"\ninterval = "1h"\nmax_entries = {HITS}\nfetch_article = "never"',
        extra=f"""
            [channel.desk]
            type = "email"
            smtp = "smtp://127.0.0.1:{smtp_port}"
            tls = "none"
            from = "watchdesk@example.org"
            to = ["desk@example.org"]

            [channel.newsroom]
            type = "slack"
            webhook = "env:{SLACK_ENV}"
            """,
    )


# ---- the daemon ---------------------------------------------------------------------------


class Daemon:
    """`watchdesk run` as a subprocess in its own process group, logs appended to files."""

    def __init__(self, config: Path, env: dict[str, str], logs: Path):
        self.config = config
        self.env = env
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with (
            open(self.logs / "stdout.log", "ab") as out,
            open(self.logs / "stderr.log", "ab") as err,
        ):
            err.write(f"---- start {self.starts} ----\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchdesk", "--config", str(self.config), "run"],
                stdout=out,
                stderr=err,
                env=self.env,
                start_new_session=True,  # its worker processes share its process group
            )

    def kill(self) -> None:
        """SIGKILL the daemon (a crash), then whatever it left in its group (as systemd would)."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        kill_group(pid)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; return the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            kill_group(self.proc.pid)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc is not None:
            kill_group(self.proc.pid)

    def log_tail(self, chars: int = 4000) -> str:
        path = self.logs / "stderr.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group this test started (the worker processes)."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def wait_for(
    condition: Callable[[], bool], what: str, daemon: Daemon, deadline: float, every: float = 0.005
) -> None:
    """Check `condition` every `every` s until it holds; fail (with the daemon's log) past
    `deadline`."""
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{daemon.log_tail()}")
        if daemon.proc is not None and daemon.proc.poll() is not None:
            pytest.fail(
                f"daemon exited ({daemon.proc.returncode}) while waiting for {what}\n{daemon.log_tail()}"
            )
        time.sleep(every)  # a polling interval, not a timing assertion


def at_least(count: Callable[[], int], target: int) -> Callable[[], bool]:
    """A condition: `count()` has reached `target`."""
    return lambda: count() >= target


def outbox_state(db_path: Path) -> tuple[int, int]:
    """(rows, pending rows) of the outbox; (0, 0) before the database exists."""
    if not db_path.exists():
        return 0, 0
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(status = 'pending'), 0) FROM outbox").fetchone()
        except sqlite3.OperationalError:  # not migrated yet
            return 0, 0
    return int(row[0]), int(row[1])


# ---- what arrived ------------------------------------------------------------------------


def slack_ids(server: LocalServer, base: str) -> list[int]:
    """The story number of every Slack post, each checked to carry the story's link. A
    request cut short by a kill (its body shorter than its Content-Length) posted nothing:
    Slack would refuse it, and so it is not counted."""
    ids = []
    for request in server.hits(HOOK_PATH):
        if len(request.body) < int(request.headers.get("content-length", "0")):
            continue
        payload = json.loads(request.body)
        found = TITLE_ID.search(payload["text"])
        assert found, payload["text"]
        number = int(found.group(1))
        assert payload["blocks"][0]["text"]["text"] == TITLE.format(number)
        section = payload["blocks"][1]["text"]["text"]
        assert f"<{base}/story/{number:04d}|Read the article>" in section, section
        ids.append(number)
    return ids


def mail_ids(recorder: MailRecorder, base: str) -> tuple[list[int], Counter[str]]:
    """The story number of every email (checked to carry the link), and its Message-IDs."""
    ids = []
    message_ids: Counter[str] = Counter()
    for mail in recorder.mails():
        message = mail.message
        found = TITLE_ID.search(str(message["Subject"]))
        assert found, message["Subject"]
        number = int(found.group(1))
        body = message.get_body(("plain",))
        assert body is not None and f"{base}/story/{number:04d}" in body.get_content()
        ids.append(number)
        message_ids[str(message["Message-ID"])] += 1
    return ids, message_ids


def duplicates(ids: list[int]) -> int:
    return sum(n - 1 for n in Counter(ids).values())


# ---- the test ----------------------------------------------------------------------------


def test_sigkilled_daemon_loses_no_alert_and_duplicates_at_most_one_per_kill(
    tmp_path: Path, server: LocalServer
) -> None:
    """Proves the outbox's at-least-once contract under crashes: SIGKILL at random moments
    while alerts are being delivered (4 kills, each after some deliveries) loses none of
    the 200 x 2 deliveries, repeats at most one per kill and channel (a duplicate email
    carries the same Message-ID), leaves no row pending, and keeps the database intact."""
    rng = random.Random(SEED)
    server.route(HOOK_PATH, b"ok")
    recorder = MailRecorder()
    with smtp_server(recorder) as smtp_port:
        config = crash_config(tmp_path, server, smtp_port)
        env = {**os.environ, SLACK_ENV: server.url(HOOK_PATH)}
        daemon = Daemon(config, env, tmp_path)
        db_path = tmp_path / "watchdesk.db"
        total = HITS * 2

        def delivered() -> int:
            return recorder.count() + len(server.hits(HOOK_PATH))

        # Kill i once `thresholds[i]` deliveries arrived (cumulative, duplicates included)
        # and the incarnation being killed delivered MIN_PROGRESS itself, then after a
        # random few milliseconds: random moments, each with some progress before it.
        thresholds = sorted(rng.sample(range(MIN_PROGRESS, total - 60), KILLS))
        delays = [rng.uniform(0.0, 0.05) for _ in range(KILLS)]
        deadline = time.monotonic() + DEADLINE
        kills_at: list[int] = []
        pending_at_kill: list[int] = []
        try:
            daemon.start()
            for threshold, delay in zip(thresholds, delays, strict=True):
                target = max(threshold, delivered() + MIN_PROGRESS)
                wait_for(at_least(delivered, target), f"{target} deliveries", daemon, deadline)
                time.sleep(delay)  # a random kill moment, not a timing assertion
                daemon.kill()
                kills_at.append(delivered())
                pending_at_kill.append(outbox_state(db_path)[1])
                daemon.start()
            wait_for(
                lambda: outbox_state(db_path) == (total, 0),
                "an outbox with no pending row",
                daemon,
                deadline,
                every=0.05,  # reading SQLite: not so often as to compete with the daemon
            )
            assert daemon.stop() == 0, daemon.log_tail()
        finally:
            daemon.cleanup()

    assert all(pending > 0 for pending in pending_at_kill), pending_at_kill  # every kill fell mid-delivery
    slack = slack_ids(server, server.base)
    mail, message_ids = mail_ids(recorder, server.base)
    assert set(slack) == set(range(HITS)), "a Slack alert was lost"
    assert set(mail) == set(range(HITS)), "an email alert was lost"
    assert duplicates(slack) <= KILLS, Counter(slack).most_common(5)
    assert duplicates(mail) <= KILLS, Counter(mail).most_common(5)
    assert len(message_ids) == HITS  # a repeated email is recognisable: the same Message-ID

    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        assert statuses == {"sent": total}
        assert db.execute("SELECT COUNT(*) FROM hits").fetchone() == (HITS,)
    print(
        f"kills at {kills_at} deliveries ({pending_at_kill} pending); starts {daemon.starts}; "
        f"duplicates: email {duplicates(mail)}, slack {duplicates(slack)}"
    )
