"""The daemon as an operator watches it (#12): `[metrics] listen` serves /metrics and
/healthz from a real `watchdesk run`, the counters move after real polls and deliveries;
its log lines are logfmt (or JSON) a parser reads back, whatever a feed is called."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
from conftest import start_daemon, write_config
from prometheus_client.parser import text_string_to_metric_families
from server import LocalServer, Reply, Request
from smtp_fixture import free_port
from test_logfmt import parse_logfmt
from test_reload import Log

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

WATCHLIST = "match = ['fentanyl']\nnotify = ['hook']\n"
ARTICLE = (
    b"<html><head><title>Seizure</title></head><body><article><h1>Task force seizes fentanyl</h1>"
    + b"<p>Agents of the task force seized a large amount of fentanyl pills at the port. " * 12
    + b"</p></article></body></html>"
)


def rss(server: LocalServer) -> bytes:
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<item><guid>t-1</guid><title>Task force seizes fentanyl</title><link>{server.url('/story')}</link>"
        f"<description>Short.</description><pubDate>{now}</pubDate></item>"
        "</channel></rss>"
    ).encode()


def scrape(port: int) -> Samples | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False)
    except httpx.HTTPError:
        return None
    assert answer.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), -1.0)


def wait_for_samples(port: int, ready: object, timeout: float = 60.0) -> Samples:
    deadline = time.monotonic() + timeout
    found: Samples | None = None
    while time.monotonic() < deadline:
        found = scrape(port)
        if found is not None and ready(found):  # type: ignore[operator]
            return found
        time.sleep(0.2)
    raise AssertionError(f"metrics never got there: {found}")


def test_metrics_count_real_polls_extractions_and_deliveries(tmp_path: Path, server: LocalServer) -> None:
    received: list[bytes] = []

    def hook(req: Request) -> Reply:
        received.append(req.body)
        return Reply(200, b"ok")

    server.route("/hook", handler=hook)
    server.route("/feed", rss(server), headers={"Content-Type": "application/rss+xml"})
    server.route("/story", ARTICLE, headers={"Content-Type": "text/html; charset=utf-8"})
    port = free_port()
    extra = (
        f'[channel.hook]\ntype = "webhook"\nurl = "{server.url("/hook")}"\n\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    feed = {"url": server.url("/feed"), "name": "Port authority", "fetch_article": "always"}
    config = write_config(tmp_path, [feed], {"drugs": WATCHLIST}, polling='backfill = "all"', extra=extra)
    daemon = start_daemon(config)
    log = Log(daemon)
    try:
        found = wait_for_samples(
            port,
            lambda s: (
                value(s, "watchdesk_deliveries_total", channel_type="webhook", outcome="sent") == 1
                and value(s, "watchdesk_feeds", status="ok") == 1
            ),
        )
        assert value(found, "watchdesk_polls_total", outcome="changed") == 1
        assert value(found, "watchdesk_polls_total", outcome="failed") == 0
        assert value(found, "watchdesk_entries_stored_total") == 1
        assert value(found, "watchdesk_hits_total") == 1
        assert value(found, "watchdesk_articles_extracted_total", outcome="extracted") == 1
        assert value(found, "watchdesk_extract_duration_seconds_count") == 1
        assert value(found, "watchdesk_poll_duration_seconds_count") == 1
        assert value(found, "watchdesk_feeds_claimed_total") == 1  # the one feed, taken once
        assert value(found, "watchdesk_feed_claim_seconds_count") >= 1
        assert value(found, "watchdesk_outbox_pending") == 0
        assert value(found, "watchdesk_outbox_oldest_pending_age_seconds") == 0
        assert value(found, "watchdesk_db_size_bytes") >= (tmp_path / "watchdesk.db").stat().st_size > 0
        assert any(name == "watchdesk_build_info" for name, _ in found)
        assert len(received) == 1
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5, trust_env=False)
        assert (health.status_code, health.text.strip()) == (200, "ok")
        assert f"metrics_listening url=http://127.0.0.1:{port}/metrics" in log.text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    assert scrape(port) is None  # closed with the daemon


def test_a_port_in_use_is_logged_and_the_daemon_polls_on(tmp_path: Path, server: LocalServer) -> None:
    server.route("/feed", rss(server), headers={"Content-Type": "application/rss+xml"})
    taken = server.url("/").split(":")[2].split("/")[0]  # the feed server's own port
    feed = {"url": server.url("/feed"), "name": "Port authority", "fetch_article": "never"}
    extra = f'[metrics]\nlisten = "127.0.0.1:{taken}"\n'
    config = write_config(tmp_path, [feed], {"drugs": "match = ['fentanyl']\n"}, extra=extra)
    daemon = start_daemon(config)
    log = Log(daemon)
    try:
        assert log.wait_for(lambda t: "feed_polled" in t), log.text()
        assert "metrics_unavailable" in log.text() and f"127.0.0.1:{taken}" in log.text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


NAME = 'Dept. of "Justice" = x'


def failing_feed_log(tmp_path: Path, settings: str, failed: str) -> list[str]:
    """The log lines of a daemon (its config's own log format, with `settings` added to
    [watchdesk]) whose one feed, named NAME, fails: nothing listens on its port."""
    feed = {"url": f"http://127.0.0.1:{free_port()}/feed", "name": NAME}
    config = write_config(tmp_path, [feed], {"drugs": "match = ['fentanyl']\n"})
    config.write_text(config.read_text().replace("[watchdesk]\n", f"[watchdesk]\n{settings}", 1))
    daemon = start_daemon(config, log_format=None)
    log = Log(daemon)
    try:
        assert log.wait_for(lambda t: failed in t), log.text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    return log.lines


def test_a_daemon_log_line_about_an_odd_feed_name_parses_back_as_logfmt(tmp_path: Path) -> None:
    """The default format."""
    logged = failing_feed_log(tmp_path, "", "event=feed_failed")
    lines = [parse_logfmt(line.rstrip("\n")) for line in logged if line.startswith("ts=")]
    failed = next(line for line in lines if line["event"] == "feed_failed")
    assert failed["feed"] == NAME and failed["level"] == "error" and failed["kind"] == "network"
    assert {line["event"] for line in lines} >= {"daemon_started", "feed_failed", "daemon_stopped"}


def test_log_format_json_gives_one_object_a_line(tmp_path: Path) -> None:
    logged = failing_feed_log(tmp_path, 'log_format = "json"\n', '"event": "feed_failed"')
    objects = [json.loads(line) for line in logged if line.startswith("{")]
    assert len(objects) == len([line for line in logged if line.strip()])  # every line
    failed = next(o for o in objects if o["event"] == "feed_failed")
    assert failed["feed"] == NAME and failed["errors"] == 1
