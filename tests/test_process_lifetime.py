"""Nothing is left running when the daemon dies, however it dies (SIGKILL included).

The daemon's worker pool (feed parsing, text extraction) runs under multiprocessing's
forkserver: the daemon's children are the forkserver and the resource tracker, and the
workers are the forkserver's children. A SIGKILLed daemon used to leave all of them
running for ever."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_config
from seed_fixture import serve_story
from server import LocalServer

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")

WATCHLIST = "match = ['fentanyl', '\"dark web\"']\n"

Process = tuple[int, int]  # pid, start time (clock ticks after boot): a pid may be reused


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and start time of a live process; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    state, ppid, start = fields[0], int(fields[1]), int(fields[19])
    return None if state in ("Z", "X") else (state, ppid, start)  # a zombie is dead


def _all() -> dict[int, tuple[str, int, int]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            found[int(name)] = stat
    return found


def descendants(roots: set[Process]) -> dict[Process, int]:
    """Every live process below `roots`, with its depth (1 for a child)."""
    procs = _all()
    found: dict[Process, int] = {}
    frontier = {pid for pid, start in roots if pid in procs and procs[pid][2] == start}
    depth = 0
    while frontier:
        depth += 1
        frontier = {pid for pid, (_, ppid, _) in procs.items() if ppid in frontier}
        for pid in frontier:
            found[(pid, procs[pid][2])] = depth
    return found


def alive(processes: set[Process]) -> set[Process]:
    """Those of `processes` still running, and any process started below them since."""
    now = {(pid, start) for pid, start in processes if (s := _stat(pid)) is not None and s[2] == start}
    return now | set(descendants(now))


def _commands(processes: set[Process]) -> dict[int, bytes]:
    found = {}
    for pid, _ in processes:
        with contextlib.suppress(OSError):
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
    return found


def test_a_sigkilled_daemon_leaves_no_process_behind(tmp_path: Path, server: LocalServer) -> None:
    config = write_config(
        tmp_path,
        [{"url": serve_story(server), "name": "Metro"}],
        {"opioids": WATCHLIST},
        polling='backfill = "all"\nfetch_article = "always"',
    )
    # Output to a file, not a pipe: a process left behind would hold a pipe open.
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "watchdesk", "--config", str(config), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stat = _stat(daemon.pid)
    assert stat is not None
    root = {(daemon.pid, stat[2])}
    tree: set[Process] = set()
    try:
        # Wait for the pool (the feed is parsed, and its article pages extracted, in it):
        # a worker running, a grandchild of the daemon (forked by the forkserver).
        deadline = time.monotonic() + 60
        while max(descendants(root).values(), default=0) < 2 and time.monotonic() < deadline:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.05)  # waiting for the daemon to start its workers, not timing it
        below = descendants(root)
        assert max(below.values(), default=0) >= 2, f"no worker process below the daemon: {below}"
        tree = set(below)

        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (left := alive(tree)) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the processes to end, not timing it
        assert not left, f"still running 5 s after the daemon was killed: {_commands(left)}"
    finally:
        if daemon.poll() is None:  # the test failed before the kill: clean up all the same
            tree |= set(descendants(root))
            daemon.kill()
            daemon.wait(timeout=10)
        for pid, start in alive(tree):  # only processes this test's daemon started
            if (s := _stat(pid)) is not None and s[2] == start:
                os.kill(pid, signal.SIGKILL)
        log.close()
