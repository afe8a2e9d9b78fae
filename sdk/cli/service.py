"""The service manager's side of `vireid run`: systemd's notification protocol (`Type=notify`).

With `Type=notify` systemd knows when the run is ready (`READY=1`), shows its status line in
`systemctl status` (`STATUS=...`), hears that it is stopping by itself (`STOPPING=1`), and, with
`WatchdogSec=`, restarts it when the pings (`WATCHDOG=1`) stop. They stop when the main thread hangs,
and when the processing loop has been stuck for the run's stall timeout (without one, for the watchdog
interval): a hung model call or output is restarted too, not only a dead process.

The protocol is one datagram per message to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (sd_notify(3));
it is a few lines of the standard library, so vireid needs neither libsystemd nor a package wrapping it.
Without `$NOTIFY_SOCKET` (not started by systemd, or another `Type=`) every call does nothing.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("vireid.service")


_CONFIGURATION_ERRORS = {
    errno.ENOENT,
    errno.ECONNREFUSED,
    errno.EPROTOTYPE,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EINVAL,
    errno.ENOTSOCK,
}
"""Errors that a retry cannot fix (no such socket, not a datagram socket, no permission): notifications
go off after the first. Others (a full buffer, EAGAIN) are passing: the next message is tried again."""

MAX_VALUE = 1024
"""Longest value sent, in UTF-8 bytes; systemd drops a whole datagram of 4096 bytes or more without a
word."""


class SystemdNotifier:
    """Sends sd_notify messages; never raises: a service must not stop because its manager went away."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = ""
        if address.startswith("@"):  # a Linux abstract-namespace socket: a leading NUL byte on the wire
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        elif address:  # relative paths are not in the protocol; vsock: (systemd 254) is not supported here
            log.warning("NOTIFY_SOCKET=%s: not an absolute path or @name; notifications are off", address)
        self.watchdog_seconds = _watchdog_seconds(env)
        self._socket: socket.socket | None = None
        self._stopping_sent = False
        self._warned_at = -math.inf

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ready(self) -> None:
        self._send("READY=1")

    def status(self, text: str) -> None:
        self._send("STATUS=" + _value(text))

    def watchdog(self) -> None:
        """One watchdog ping (a no-op unless systemd asked for them with `WatchdogSec=`)."""
        if self.watchdog_seconds is not None:
            self._send("WATCHDOG=1")

    def stopping(self, why: str = "") -> None:
        """`STOPPING=1` (once; the first reason given is the one shown)."""
        if self._stopping_sent:
            return
        self._stopping_sent = True
        self._send("STOPPING=1" + (f"\nSTATUS={_value(why)}" if why else ""))

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
            # never blocks the main thread: a manager too busy to read loses one message, not the run
            self._socket.sendto(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        shown = self.address.replace("\0", "@")
        if exc.errno is None or exc.errno in _CONFIGURATION_ERRORS:  # (no errno: e.g. a path too long)
            log.warning(
                "NOTIFY_SOCKET %s: cannot notify the service manager (%s); notifications are off%s",
                shown,
                exc,
                " (a WatchdogSec= will restart the service)" if self.watchdog_seconds else "",
            )
            self.address = ""
            self.close()
        elif time.monotonic() - self._warned_at > 60.0:  # passing: said at most once a minute
            self._warned_at = time.monotonic()
            log.warning("NOTIFY_SOCKET %s: a notification was lost (%s); trying again", shown, exc)


def _value(text: str) -> str:
    """A value on one line, without NUL, short enough for systemd to take."""
    flat = " ".join(text.replace("\0", " ").split())
    raw = flat.encode("utf-8", "replace")
    if len(raw) <= MAX_VALUE:
        return flat
    return raw[: MAX_VALUE - 3].decode("utf-8", "ignore") + "..."  # never half a character


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """systemd's watchdog interval when it is meant for this process (`WATCHDOG_PID` unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdecimal()) or int(usec) == 0:
        return None
    if pid and (not (pid.isascii() and pid.isdecimal()) or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


class ServiceNotify:
    """A `Pipeline.run` status callback that tells systemd about the run: `READY=1` at the first call
    (sources started, model loaded), the status line every `status_every` seconds, and a watchdog
    ping at every call while the processing loop goes round: stuck for `stall_timeout` seconds (or,
    without one, for the watchdog interval), the pings stop. `STOPPING=1` comes from `run()`'s
    `on_stopping` (`notifier.stopping`)."""

    def __init__(self, notifier: SystemdNotifier, stall_timeout: float | None, status_every: float = 5.0):
        self.notifier, self.status_every = notifier, status_every
        self.stall_limit = stall_timeout or notifier.watchdog_seconds or math.inf
        self._ready = False
        self._next_status = 0.0

    def __call__(self, stats: Any) -> None:
        if not self.notifier.enabled:
            return
        if not self._ready:
            self.notifier.ready()
            self._ready = True
        if stats.stalled_for >= self.stall_limit:
            return
        self.notifier.watchdog()
        now = time.monotonic()
        if now >= self._next_status:
            self._next_status = now + self.status_every
            self.notifier.status(stats.status_line())
