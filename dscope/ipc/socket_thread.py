"""A ZeroMQ socket owned by one thread (zguide: a socket lives, is used and is closed in one thread).

:class:`SocketThread` is the common frame of the daemon's publisher and control
server: other threads talk to it through thread-safe methods and wake it with a
:class:`Waker`; the thread binds the socket, reports bind errors back to
:meth:`SocketThread.start`, polls, and closes the socket when stopped.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

import zmq

from dscope.errors import DScopeError


class Waker:
    """A socket pair used to wake a thread blocked in a poll; :meth:`wake` is thread-safe."""

    def __init__(self):
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already pending (buffer full) or closed: either way the reader will wake

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


class SocketThread:
    """Base of a thread that owns one bound ZeroMQ socket.

    Subclasses implement ``_run`` and open their socket with :meth:`_bind`.
    ``what`` names the socket in error messages ("PUB endpoint", "control endpoint").
    """

    what = "endpoint"

    def __init__(self, endpoint: str, *, thread_name: str, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self._ctx = context or zmq.Context.instance()
        self._waker = Waker()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- any thread ----
    def start(self, timeout_s: float = 10.0) -> None:
        """Start the thread and bind; raise :class:`DScopeError` when the endpoint cannot be bound."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise DScopeError("internal_error", f"{self._thread.name} did not start within {timeout_s} s")
        if self._error is not None:
            raise DScopeError("bad_argument", f"cannot bind {self.what} {self.endpoint}: {self._error}")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish (it closes its socket) and join it."""
        self._stop.set()
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._waker.close()

    # ---- socket thread ----
    def _bind(self, socket_type: int, configure: Callable[[zmq.Socket], None]) -> tuple[zmq.Socket, zmq.Poller] | None:
        """Create, configure and bind the socket; ``None`` (error recorded for :meth:`start`) when binding fails.

        Returns the socket and a poller watching it and the waker.
        """
        sock = self._ctx.socket(socket_type)
        try:
            configure(sock)
            sock.bind(self.endpoint)
            # the bound endpoint (a "tcp://127.0.0.1:*" request gets its real port here)
            self.endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        except zmq.ZMQError as exc:
            self._error = exc
            sock.close(0)
            self._started.set()
            return None
        self._started.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        return sock, poller
