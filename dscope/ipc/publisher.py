"""The daemon's publisher: one thread owning an XPUB socket.

Other threads call :meth:`Publisher.publish`, which stamps the envelope
(per-topic ``seq``), appends the frames to a queue and wakes the publisher
thread through a socket pair; that thread sends.  The socket therefore lives, is used
and is closed in a single thread (zguide rule), and a slow subscriber can
never block the daemon: beyond the high-water mark ZeroMQ drops messages for
that subscriber (the subscriber sees a ``seq`` gap).

XPUB is used instead of PUB so the daemon sees subscriptions arrive and logs
them; late joiners catch up through the control command ``status`` (last
verdict, current state) instead of anyone sleeping.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Callable

import zmq

from dscope.errors import DScopeError
from dscope.ipc.envelope import SequenceCounter, encode


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


class Publisher:
    """Thread-safe front of an XPUB socket bound to ``endpoint``.

    Parameters
    ----------
    endpoint : str
        Bind endpoint, e.g. ``tcp://127.0.0.1:5555``.
    daemon_id : str
        Carried by every message.
    sndhwm : int
        ZeroMQ send high-water mark (messages per subscriber).
    linger_ms : int
        How long pending messages may delay close.
    on_subscription : callable, optional
        Called in the publisher thread as ``on_subscription(topic, subscribed)``.
    """

    def __init__(
        self,
        endpoint: str,
        daemon_id: str,
        *,
        sndhwm: int,
        linger_ms: int,
        boot_time: float | None = None,
        on_subscription: Callable[[str, bool], None] | None = None,
        context: zmq.Context | None = None,
    ):
        self.endpoint = endpoint
        self.daemon_id = daemon_id
        self.boot_time = time.time() if boot_time is None else boot_time
        self._sndhwm = sndhwm
        self._linger_ms = linger_ms
        self._on_sub = on_subscription
        self._ctx = context or zmq.Context.instance()
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._waker = Waker()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dscope-publisher", daemon=True)
        self.counter = SequenceCounter()
        self.last_send_time = 0.0
        self.last_publish_time = 0.0
        self.sent = 0
        self.subscriptions: collections.Counter = collections.Counter()

    # ---- any thread ----
    def start(self, timeout_s: float = 10.0) -> None:
        """Start the thread and bind; raise :class:`DScopeError` when the endpoint cannot be bound."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise DScopeError("internal_error", f"publisher did not start within {timeout_s} s")
        if self._error is not None:
            raise DScopeError("bad_argument", f"cannot bind PUB endpoint {self.endpoint}: {self._error}")

    def publish(self, topic: str, payload: dict) -> int:
        """Stamp and queue one message; return its ``seq``.  Returns at once (never blocks on subscribers).

        The envelope (``seq``, ``time``) is made here, under a lock, so the
        order of ``seq`` is the order of sending and the caller learns the
        ``seq`` (e.g. for the ``status`` snapshot).
        """
        with self._lock:
            frames = encode(topic, payload, self.counter, self.daemon_id, self.boot_time)
            self._queue.append(frames)
            seq = self.counter.current()[topic]
            self.last_publish_time = time.monotonic()
        self._waker.wake()
        return seq

    def pending(self) -> int:
        return len(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, close the socket (in its thread) and join."""
        self._stop.set()
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._waker.close()

    # ---- publisher thread ----
    def _run(self) -> None:
        sock = self._ctx.socket(zmq.XPUB)
        try:
            sock.setsockopt(zmq.SNDHWM, self._sndhwm)
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.bind(self.endpoint)
            # the bound endpoint (a "tcp://127.0.0.1:*" request gets its real port here)
            self.endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        except zmq.ZMQError as exc:
            self._error = exc
            sock.close(0)
            self._started.set()
            return
        self._started.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll(1000))
                if sock in events:
                    self._read_subscriptions(sock)
                self._waker.drain()
                self._flush(sock)
                if self._stop.is_set():
                    self._flush(sock)
                    break
        finally:
            sock.close(self._linger_ms)

    def _flush(self, sock) -> None:
        while self._queue:
            frames = self._queue.popleft()
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:  # pragma: no cover - XPUB drops at HWM rather than raising
                pass
            self.sent += 1
            self.last_send_time = time.monotonic()

    def _read_subscriptions(self, sock) -> None:
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not msg:
                continue
            subscribed = msg[0] == 1
            topic = msg[1:].decode("utf-8", "replace")
            self.subscriptions[topic] += 1 if subscribed else -1
            if self._on_sub is not None:
                try:
                    self._on_sub(topic, subscribed)
                except Exception:  # pragma: no cover - logging must not kill the publisher
                    pass
