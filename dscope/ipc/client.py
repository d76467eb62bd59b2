"""Client helpers: a SUB subscriber with gap detection and a REQ control client.

Examples
--------
::

    with ControlClient("tcp://127.0.0.1:5556", timeout_s=5) as ctl:
        print(ctl.request({"cmd": "status"}))
    with Subscriber("tcp://127.0.0.1:5555", topics=["verdict"]) as sub:
        topic, body = sub.recv(timeout_s=10)
"""

from __future__ import annotations

import json
import time

import zmq

from dscope.errors import DScopeError
from dscope.ipc.envelope import TOPICS, GapDetector, decode, dumps


class Subscriber:
    """SUB socket connected to a daemon's PUB endpoint.

    Parameters
    ----------
    endpoint : str
        The daemon's ``pub`` endpoint.
    topics : list of str, optional
        Topic prefixes to receive; None or empty = all topics.
    rcvhwm : int
        Receive high-water mark.
    """

    def __init__(self, endpoint: str, topics: list[str] | None = None, *, rcvhwm: int = 100000):
        for t in topics or []:
            if t not in TOPICS:
                raise DScopeError("bad_argument", f"unknown topic {t!r}; topics are {', '.join(TOPICS)}")
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        for t in topics or [""]:
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self._sock.connect(endpoint)
        self.gaps = GapDetector()

    def recv(self, timeout_s: float | None = None) -> tuple[str, dict] | None:
        """Next ``(topic, body)``, or None after ``timeout_s`` (None = wait forever)."""
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000))
        if not self._sock.poll(timeout_ms):
            return None
        topic, body = decode(self._sock.recv_multipart())
        self.gaps.feed(body)
        return topic, body

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ControlClient:
    """REQ client with a receive timeout (a fresh socket after a timeout: lazy-pirate style)."""

    def __init__(self, endpoint: str, *, timeout_s: float = 10.0):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ctx = zmq.Context.instance()
        self._sock = None

    def _socket(self):
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.connect(self.endpoint)
        return self._sock

    def request_raw(self, payload: bytes, timeout_s: float | None = None) -> dict:
        """Send raw bytes (for testing malformed requests); return the decoded reply."""
        sock = self._socket()
        sock.send(payload)
        t = self.timeout_s if timeout_s is None else timeout_s
        if not sock.poll(int(t * 1000)):
            self._sock.close(0)
            self._sock = None
            raise DScopeError("timeout", f"no reply from {self.endpoint} within {t} s")
        return json.loads(sock.recv())

    def request(self, request: dict, timeout_s: float | None = None) -> dict:
        """Send one command object and return the reply object."""
        return self.request_raw(dumps(request).encode(), timeout_s)

    def wait_ready(self, timeout_s: float = 30.0, poll_s: float = 0.5) -> dict:
        """Repeat ``status`` until the daemon answers (after start-up); return the status reply."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.request({"cmd": "status"}, timeout_s=min(poll_s, max(0.05, deadline - time.monotonic())))
            except DScopeError:
                if time.monotonic() >= deadline:
                    raise DScopeError("timeout", f"daemon at {self.endpoint} did not answer within {timeout_s} s")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
