"""CLI tools a user runs by hand: extract, notify-test, outbox retry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import write_config
from seed_fixture import STORY, serve_story
from server import LocalServer


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdesk", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_extract_a_file_shows_text_and_metadata() -> None:
    result = run("extract", str(STORY / "article.html"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("title: Task force shuts down darknet drug market")
    assert "language: en" in result.stdout
    assert "contained fentanyl, the synthetic opioid" in result.stdout
    assert "Naloxone vending" not in result.stdout


def test_extract_json(tmp_path: Path) -> None:
    result = run("extract", str(STORY / "article.html"), "--json")
    data = json.loads(result.stdout)
    assert data["language"] == "en" and "fentanyl" in data["text"] and data["reason"] is None


def test_extract_a_url_goes_through_the_guard(tmp_path: Path, server: LocalServer) -> None:
    server.route("/story", (STORY / "article.html").read_bytes(), headers={"Content-Type": "text/html"})
    config = write_config(tmp_path, [], {"w": "match = ['x']\n"})
    allowed = run("--config", str(config), "extract", server.url("/story"))
    assert allowed.returncode == 0, allowed.stderr
    assert "contained fentanyl" in allowed.stdout
    refused = run("--config", str(config), "extract", server.url("/story").replace("127.0.0.1", "127.0.0.2"))
    assert refused.returncode == 1
    assert "refused: 127.0.0.2 refused: 127.0.0.2 is a loopback address" in refused.stderr


def test_extract_a_missing_file_is_a_clear_error() -> None:
    result = run("extract", "/nonexistent/page.html")
    assert result.returncode == 1 and "cannot read /nonexistent/page.html" in result.stderr


def test_notify_test_reports_success_and_failure(tmp_path: Path, server: LocalServer) -> None:
    server.route("/hook", b"ok")
    server.route("/dead", b"no_service", status=404)
    extra = f"""
[channel.ops]
type = "webhook"
url = "{server.url("/hook")}"

[channel.gone]
type = "webhook"
url = "{server.url("/dead")}"
"""
    config = write_config(tmp_path, [], {"w": "match = ['x']\n"}, extra=extra)
    ok = run("--config", str(config), "notify-test", "ops")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ops: test alert sent"
    body = json.loads(server.hits("/hook")[0].body)
    assert json.dumps(body).count("test") >= 1
    bad = run("--config", str(config), "notify-test", "gone")
    assert bad.returncode == 1 and "gone: failed:" in bad.stderr and "permanent" in bad.stderr
    missing = run("--config", str(config), "notify-test", "nope")
    assert missing.returncode == 2 and "no channel 'nope'" in missing.stderr
    console = run("--config", str(config), "notify-test", "console")
    assert console.returncode == 0 and "[watchdesk TEST]" in console.stdout


def test_outbox_retry_requires_an_id_or_all_dead(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"w": "match = ['x']\n"})
    result = run("--config", str(config), "outbox", "retry")
    assert result.returncode == 2 and "give one outbox ID or --all-dead" in result.stderr
    result = run("--config", str(config), "outbox", "retry", "42")
    assert result.returncode == 1 and "outbox row 42 is not dead" in result.stderr


def test_outbox_show_lists_the_attempts(tmp_path: Path, server: LocalServer) -> None:
    server.route("/hook", b"down", status=503)
    extra = f'[channel.ops]\ntype = "webhook"\nurl = "{server.url("/hook")}"\n'
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"w": "match = ['fentanyl']\nnotify = ['ops']\n"},
        polling='backfill = "all"',
        extra=extra,
    )
    assert run("--config", str(config), "poll", "--once").returncode == 0
    shown = run("--config", str(config), "outbox", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("outbox 1: pending, channel ops, 1 attempts")
    assert "failed" in shown.stdout and "503" in shown.stdout
    assert run("--config", str(config), "outbox", "show", "99").returncode == 1
