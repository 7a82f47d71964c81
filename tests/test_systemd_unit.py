"""The shipped systemd unit: readiness and watchdog wired to what the daemon sends, and
its hardening score kept (systemd-analyze, where the machine has it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "watchdesk.service"
MAX_EXPOSURE = 1.5  # systemd-analyze's scale: 0 (locked down) to 10; "OK" below 4.5


def service() -> dict[str, list[str]]:
    """The [Service] section's keys and every value of each (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#") and "=" in line and section == "Service":
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_runs_the_daemon_with_readiness_and_a_watchdog() -> None:
    s = service()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and int(s["WatchdogSec"][0]) >= 20  # > 4 poll ticks (daemon.STALLED_AFTER)
    assert s["ExecStart"][0].endswith(" run")
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert "Environment" not in s or not any(
        re.search(r"(?i)pass|secret|token|webhook", v) for v in s["Environment"]
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_hardening_exposure_stays_low() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    if found is None and "offline" in result.stderr:
        pytest.skip(f"this systemd-analyze cannot score a unit file offline: {result.stderr.strip()[:200]}")
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
