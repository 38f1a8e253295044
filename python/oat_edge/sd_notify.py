"""systemd's readiness and watchdog protocol, without libsystemd: one datagram per message.

Under a unit with `Type=notify` and `WatchdogSec=` (deploy/oat-edge.service), systemd sets
NOTIFY_SOCKET (and WATCHDOG_USEC) and expects "READY=1" once the service works, then "WATCHDOG=1"
at least every WATCHDOG_USEC, or it kills and restarts the service. Pinging from the control
loop's own cycle (`ControlLoop.run(..., on_cycle=notifier.cycle)`) means a hung loop is restarted,
not just a dead process. Outside systemd every method is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


def _address(raw: str) -> str | bytes:
    # "@name" is a socket in the abstract namespace: a leading NUL byte on the wire
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


class ServiceNotifier:
    """Sends sd_notify messages to `socket_path`; `watchdog_s` > 0 enables the pings."""

    def __init__(self, socket_path: str | None, watchdog_s: float = 0.0, clock=time.monotonic):
        self.enabled = bool(socket_path)
        self.clock = clock
        self.watchdog_s = watchdog_s if self.enabled else 0.0
        self._sock = None
        self._addr = _address(socket_path) if socket_path else None
        self._ready = False
        self._next_ping = 0.0

    @classmethod
    def from_env(cls, env=None, clock=time.monotonic) -> ServiceNotifier:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET") or None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        watchdog = int(usec) / 1e6 if usec.isdigit() else 0.0
        if pid and pid != str(os.getpid()):  # the watchdog is meant for another process
            watchdog = 0.0
        return cls(path, watchdog, clock)

    def send(self, message: str) -> bool:
        """One datagram; False when not under systemd or the socket is gone (never raises)."""
        if not self.enabled:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # called from the control thread: never wait
            self._sock.sendto(message.encode(), self._addr)
            return True
        except OSError:
            return False

    def cycle(self, _record=None) -> None:
        """Per control cycle: READY=1 on the first, then WATCHDOG=1 every half watchdog period."""
        if not self.enabled:
            return
        now = self.clock()
        if not self._ready:
            self._ready = self.send("READY=1\nSTATUS=control loop running")
        if self.watchdog_s > 0 and now >= self._next_ping:
            if self.send("WATCHDOG=1"):
                self._next_ping = now + self.watchdog_s / 2

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
