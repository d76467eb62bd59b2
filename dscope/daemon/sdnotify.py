"""Minimal, dependency-free systemd notification protocol (``sd_notify(3)``).

Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1`` and
``STOPPING=1`` datagrams to the socket named by ``$NOTIFY_SOCKET`` (a path, or
an abstract socket when it starts with ``@``).  Without ``$NOTIFY_SOCKET``
(not started by systemd) every call is a cheap no-op returning False.

Examples
--------
>>> n = Notifier(environ={})          # not under systemd
>>> n.ready("serving"), n.enabled
(False, False)
"""

from __future__ import annotations

import os
import socket
import time


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_interval_s(environ: dict | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is requested.

    ``$WATCHDOG_PID`` is honoured: when set to another process the watchdog is not ours.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """Sender of systemd notifications over an ``AF_UNIX`` datagram socket."""

    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET") or ""
        self._address = _address(raw) if raw else None
        self._sock: socket.socket | None = None
        self.watchdog_interval_s = watchdog_interval_s(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE`` strings) as one datagram; False when not under systemd or on error."""
        if self._address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:  # never block the daemon's loop on a slow or absent reader (queue full -> EAGAIN)
            self._sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC`` systemd >= 253 expects; send :meth:`ready` when done."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
