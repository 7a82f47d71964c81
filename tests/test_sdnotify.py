"""sd_notify: what systemd receives, over a real datagram socket standing in for systemd's."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_daemon, write_config
from seed_fixture import serve_story
from server import LocalServer

from watchdesk.daemon import STALLED_AFTER, schedule_alive, start_allowance
from watchdesk.sdnotify import Notifier

WATCHLIST = "match = ['fentanyl']\n"


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_outside_systemd_nothing_is_sent() -> None:
    n = Notifier(environ={})
    assert not n.enabled
    assert n.ready("up") is False
    assert n.watchdog_interval is None


def test_ready_status_watchdog_and_stopping_arrive(systemd_socket: tuple[socket.socket, str]) -> None:
    sock, path = systemd_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    assert n.ready("polling 7 feeds")
    assert received(sock) == {"READY": "1", "STATUS": "polling 7 feeds"}
    assert n.watchdog()
    assert received(sock) == {"WATCHDOG": "1"}
    assert n.reloading()
    msg = received(sock)
    assert msg["RELOADING"] == "1" and int(msg["MONOTONIC_USEC"]) > 0
    assert n.stopping()
    assert received(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    n.close()


def test_abstract_socket_names_are_understood() -> None:
    name = f"watchdesk-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert Notifier(environ={"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert received(sock) == {"STATUS": "hello"}
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),  # pinged twice per period
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier(environ=env).watchdog_interval == interval


def test_a_missing_socket_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="watchdesk.sdnotify"):
        assert n.ready("up") is False
        assert n.watchdog() is False
    assert [r.message for r in caplog.records].count(
        "sd_notify_failed error=[Errno 2] No such file or directory"
    ) == 1


def test_the_watchdog_goes_silent_when_the_schedule_stalls() -> None:
    assert schedule_alive(0.0, 30.0)
    assert schedule_alive(STALLED_AFTER - 1, 1.0)
    assert not schedule_alive(STALLED_AFTER + 1, 1.0)
    assert schedule_alive(50.0, 30.0)  # a long watchdog period tolerates as long a gap
    assert not schedule_alive(61.0, 30.0)


def until(sock: socket.socket, key: str) -> dict[str, str]:
    """The next message that carries `key` (the socket's timeout bounds the wait)."""
    while True:
        message = received(sock)
        if key in message:
            return message


def test_the_start_allowance_grows_with_the_database() -> None:
    assert start_allowance(0) == 60.0
    assert start_allowance(20 * 2**30) == 260.0  # 20 GB: quick_check's 10 s at 20x its rate


def test_the_daemon_reports_ready_alive_reloading_and_stopping(
    tmp_path: Path, server: LocalServer, systemd_socket: tuple[socket.socket, str]
) -> None:
    sock, path = systemd_socket
    sock.settimeout(30)
    config = write_config(tmp_path, [{"url": serve_story(server), "name": "Metro"}], {"drugs": WATCHLIST})
    daemon = start_daemon(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    try:
        starting = until(sock, "EXTEND_TIMEOUT_USEC")  # before the database is checked
        assert int(starting["EXTEND_TIMEOUT_USEC"]) == 60_000_000
        assert starting["STATUS"] == "checking the database (0 B)"
        ready = until(sock, "READY")
        assert ready["STATUS"].startswith("1 feed (0 failing, 0 stale); alerts: ")
        alive = until(sock, "WATCHDOG")  # every half second while the poll tick runs
        assert "pending" in alive["STATUS"]
        daemon.send_signal(signal.SIGHUP)
        assert until(sock, "RELOADING")["RELOADING"] == "1"
        assert until(sock, "READY")["READY"] == "1"
        daemon.send_signal(signal.SIGTERM)
        assert until(sock, "STOPPING")["STOPPING"] == "1"
        _out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert "sd_notify_failed" not in err
