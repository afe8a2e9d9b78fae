"""The service manager's side of `vireid run`: systemd's notification protocol (`Type=notify`).

With `Type=notify` systemd knows when the run is ready (`READY=1`), shows its status line in
`systemctl status` (`STATUS=...`), hears that it is stopping by itself (`STOPPING=1`), and, with
`WatchdogSec=`, restarts it when the pings (`WATCHDOG=1`) stop: they are sent only while the processing
loop goes round, so a hung model call or output is restarted too, not only a dead process.

The protocol is one datagram per message to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (sd_notify(3));
it is a few lines of the standard library, so vireid needs neither libsystemd nor a package wrapping it.
Without `$NOTIFY_SOCKET` (not started by systemd, or another `Type=`) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("vireid.service")


class SystemdNotifier:
    """Sends sd_notify messages; never raises: a service must not stop because its manager went away."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a Linux abstract-namespace socket: a leading NUL byte on the wire
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds = _watchdog_seconds(env)
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        self._send("STATUS=" + text.replace("\n", " "))

    def watchdog(self) -> None:
        """One watchdog ping (a no-op unless systemd asked for them with `WatchdogSec=`)."""
        if self.watchdog_seconds is not None:
            self._send("WATCHDOG=1")

    def stopping(self, why: str = "") -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={why}" if why else ""))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: str) -> None:
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            log.warning(
                "NOTIFY_SOCKET %s: cannot notify the service manager (%s); notifications are off",
                self.address.replace("\0", "@"),
                exc,
            )
            self.address = ""
            self.close()


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """systemd's watchdog interval when it is meant for this process (`WATCHDOG_PID` unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


class ServiceNotify:
    """A `Pipeline.run` status callback that tells systemd about the run: `READY=1` at the first call
    (sources started, model loaded), the status line every `status_every` seconds, a watchdog ping at
    every call while the processing loop goes round. Stuck for `stall_timeout` seconds, the pings stop
    and `STOPPING=1` says why: `run()` is stopping it (without a stall timeout of our own, systemd's
    watchdog ends a loop stuck for its interval)."""

    def __init__(self, notifier: SystemdNotifier, stall_timeout: float | None, status_every: float = 5.0):
        self.notifier, self.status_every, self.stall_timeout = notifier, status_every, stall_timeout
        # without a stall timeout of our own, a loop stuck for a whole watchdog interval stops the pings
        self.stall_limit = stall_timeout or notifier.watchdog_seconds or float("inf")
        self._ready = False
        self._stopping = False
        self._next_status = 0.0

    def __call__(self, stats: Any) -> None:
        if not self.notifier.enabled:
            return
        if not self._ready:
            self.notifier.ready()
            self._ready = True
        if stats.stalled_for >= self.stall_limit:  # no more pings; when run() stops, systemd hears why
            if self.stall_timeout is not None and not self._stopping:
                self._stopping = True
                self.notifier.stopping(f"processing stalled {stats.stalled_for:.0f} s in {stats.stalled_in}")
            return
        self.notifier.watchdog()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.status_every
            self.notifier.status(stats.status_line())
