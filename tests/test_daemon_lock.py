"""One daemon per database (issue 12): a second `run` (or a `poll --once`) on the same
file refuses to start, naming the first one's PID; a SIGKILLed daemon never blocks the
next start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import start_daemon, write_config

from watchdesk.store import lock


def wait_for_lock(db: Path, timeout: float = 90.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = lock.holder(db)
        if pid is not None and pid > 0:  # -1: held, its PID not written yet
            return pid
        time.sleep(0.05)
    return None


def test_a_second_run_refuses_and_names_the_first(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {})
    first = start_daemon(config)
    try:
        assert wait_for_lock(tmp_path / "watchdesk.db") == first.pid
        second = subprocess.run(
            [sys.executable, "-m", "watchdesk", "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stderr
        assert "in use by another watchdesk" in second.stderr
        assert "Traceback" not in second.stderr
        poll = subprocess.run(
            [sys.executable, "-m", "watchdesk", "--config", str(config), "poll", "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert poll.returncode == 2, poll.stderr
        assert f"pid {first.pid}" in poll.stderr and "watchdesk poll --once would poll" in poll.stderr
        assert "Traceback" not in poll.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_a_killed_daemon_does_not_block_the_next(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {})
    first = start_daemon(config)
    assert wait_for_lock(tmp_path / "watchdesk.db") == first.pid
    first.kill()
    first.communicate(timeout=60)
    assert lock.holder(tmp_path / "watchdesk.db") is None  # the file stays; the lock went with the process
    second = start_daemon(config)
    try:
        assert wait_for_lock(tmp_path / "watchdesk.db") == second.pid
    finally:
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err


def test_the_lock_in_process(tmp_path: Path) -> None:
    db = tmp_path / "watchdesk.db"
    with lock.hold(db):
        try:
            lock.hold(db)
        except lock.DatabaseInUse as e:
            assert e.pid is not None
        else:
            raise AssertionError("a second hold succeeded")
    with lock.hold(db):  # released: taken again
        pass
