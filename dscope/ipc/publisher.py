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
import threading
import time
from typing import Callable

import zmq

from dscope.ipc.envelope import SequenceCounter, encode
from dscope.ipc.socket_thread import SocketThread, Waker

__all__ = ["Publisher", "Waker"]


class Publisher(SocketThread):
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

    what = "PUB endpoint"

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
        super().__init__(endpoint, thread_name="dscope-publisher", context=context)
        self.daemon_id = daemon_id
        self.boot_time = time.time() if boot_time is None else boot_time
        self._sndhwm = sndhwm
        self._linger_ms = linger_ms
        self._on_sub = on_subscription
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self.counter = SequenceCounter()
        self.last_send_time = 0.0
        self.last_publish_time = 0.0
        self.sent = 0
        self.subscriptions: collections.Counter = collections.Counter()

    # ---- any thread ----
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

    # ---- publisher thread ----
    def _run(self) -> None:
        def configure(sock):
            sock.setsockopt(zmq.SNDHWM, self._sndhwm)
            sock.setsockopt(zmq.LINGER, self._linger_ms)

        bound = self._bind(zmq.XPUB, configure)
        if bound is None:
            return
        sock, poller = bound
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
