"""The systemd notification protocol (sd_notify), for `Type=notify` and `WatchdogSec=`.

systemd passes a datagram socket in $NOTIFY_SOCKET (a path, or an abstract name written
with a leading "@") and, with `WatchdogSec=`, the interval in $WATCHDOG_USEC (for the
process $WATCHDOG_PID, when set). Messages are newline-separated KEY=VALUE lines:
READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1, STATUS=text. Outside systemd nothing is
set and every call does nothing. Sending never raises: a lost notification must not stop
the daemon (systemd then restarts it, which is the point of the watchdog).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None  # seconds between WATCHDOG=1 pings
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping twice per period
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines (READY=1, STATUS="..."); True if the message went out."""
        if not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode("utf-8", "replace"), self.address)
            return True
        except OSError as e:
            if not self._warned:  # once: the daemon keeps working without systemd's view
                log.warning("sd_notify_failed error=%s", e)
                self._warned = True
            return False

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def starting(self, status: str, seconds: float) -> bool:
        """Still starting (the database is being checked): systemd's start timeout is
        extended to at least `seconds` from now (it never shortens it)."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000), STATUS=status)

    def reloading(self) -> bool:
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        return self.send(STOPPING=1, STATUS="stopping")

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
