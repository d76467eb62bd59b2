"""Control socket: request validation and a ROUTER server thread.

A request is one JSON object ``{"cmd": NAME, ...arguments}``; a reply is
``{"ok": true, ...}`` or ``{"ok": false, "error": {"code", "message"}}``.
The server uses ROUTER so plain REQ clients work and so a reply may be sent
later from another thread (``inspect`` / ``trigger`` with ``"wait": true``
reply with the verdict once it is published).

:data:`COMMANDS` is the single table of commands and arguments; the daemon
and ``dscope ctl`` both use it.

Examples
--------
>>> parse_request(b'{"cmd": "set_profile", "profile": "fast_scan"}')
('set_profile', {'profile': 'fast_scan'})
>>> try:
...     parse_request(b'{"cmd": "fly"}')
... except Exception as exc:
...     print(exc.code)
unknown_command
>>> try:
...     parse_request(b'{"cmd": "calibrate", "dot_spacing_um": 10, "cladding_um": 125}')
... except Exception as exc:
...     print(exc.code)
bad_argument
"""

from __future__ import annotations

import collections
import json
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from dscope.errors import DScopeError
from dscope.ipc.envelope import dumps
from dscope.ipc.socket_thread import SocketThread


@dataclass(frozen=True)
class Arg:
    """One command argument: JSON type name, required flag, help text."""

    type: str  # "str" | "number" | "positive" (finite number > 0) | "bool"
    required: bool = False
    help: str = ""


#: command -> (help, {argument: Arg})
COMMANDS: dict[str, tuple[str, dict[str, Arg]]] = {
    "status": ("state, settings, queue, last verdict (late-joiner snapshot)", {}),
    "inspect": (
        "inspect an image file inside the hot folder or daemon.request_roots",
        {"path": Arg("str", True, "image file"), "wait": Arg("bool", False, "reply with the verdict")},
    ),
    "trigger": ("grab one camera frame and inspect it", {"wait": Arg("bool", False, "reply with the verdict")}),
    "calibrate": (
        "capture a calibration target and measure um/px (exactly one of dot_spacing_um, cladding_um); "
        "writes calibration.json + history CSV",
        {
            "dot_spacing_um": Arg("positive", False, "pitch of the stage-micrometer dot grid"),
            "cladding_um": Arg("positive", False, "cladding diameter of a reference fiber"),
            "apply": Arg("bool", False, "use the new scale for following images (default true)"),
        },
    ),
    "focus_start": ("start live focus metrics (topic focus)", {}),
    "focus_stop": ("stop live focus metrics", {}),
    "set_profile": ("processing profile for following images", {"profile": Arg("str", True, "profile name")}),
    "set_fiber": (
        "fiber type (and optional diameters) for following images",
        {
            "type": Arg("str", True, "fiber type name"),
            "core_um": Arg("number", False, "core diameter"),
            "cladding_um": Arg("number", False, "cladding diameter"),
        },
    ),
    "reset": ("leave the fault state", {}),
    "shutdown": ("finish the images in progress and exit", {}),
}

#: command -> arguments of which exactly one must be given
EXACTLY_ONE: dict[str, tuple[str, ...]] = {"calibrate": ("dot_spacing_um", "cladding_um")}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str) and value != ""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "positive":
        return _type_ok(value, "number") and value > 0
    raise AssertionError(kind)  # pragma: no cover


def validate_command(request: Any) -> tuple[str, dict]:
    """Check a decoded request against :data:`COMMANDS`; return ``(cmd, arguments)``."""
    if not isinstance(request, dict):
        raise DScopeError("bad_request", f"a request must be a JSON object, got {type(request).__name__}")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise DScopeError("bad_request", 'a request needs a "cmd" string')
    if cmd not in COMMANDS:
        raise DScopeError("unknown_command", f"unknown command {cmd!r}; commands: {', '.join(COMMANDS)}")
    spec = COMMANDS[cmd][1]
    args = {k: v for k, v in request.items() if k != "cmd"}
    extra = sorted(set(args) - set(spec))
    if extra:
        raise DScopeError("bad_argument", f"{cmd}: unknown argument(s) {extra}; allowed: {sorted(spec)}")
    for name, arg in spec.items():
        if name not in args:
            if arg.required:
                raise DScopeError("bad_argument", f"{cmd}: missing argument {name!r} ({arg.type})")
            continue
        if not _type_ok(args[name], arg.type):
            what = "positive number" if arg.type == "positive" else arg.type
            raise DScopeError("bad_argument", f"{cmd}: argument {name!r} must be a {what}, got {args[name]!r}")
    group = EXACTLY_ONE.get(cmd)
    if group and sum(name in args for name in group) != 1:
        raise DScopeError("bad_argument", f"{cmd}: give exactly one of {', '.join(group)}")
    return cmd, args


def parse_request(raw: bytes, max_bytes: int = 65536) -> tuple[str, dict]:
    """Decode and validate one request frame; raise :class:`DScopeError` (bad_request, unknown_command, bad_argument)."""
    if len(raw) > max_bytes:
        raise DScopeError("bad_request", f"request of {len(raw)} bytes exceeds {max_bytes} bytes")
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DScopeError("bad_request", f"request is not valid UTF-8 JSON: {exc}") from None
    return validate_command(request)


def error_reply(exc: DScopeError) -> dict:
    return {"ok": False, "error": {"code": exc.code, "message": exc.message}}


#: handler(cmd, args, reply_later) -> reply dict, or None when reply_later(reply) will be called later
Handler = Callable[[str, dict, Callable[[dict], None]], "dict | None"]


class ControlServer(SocketThread):
    """ROUTER server thread calling ``handler`` for each validated request.

    The handler runs in the control thread and must be quick; long work is
    handed to the daemon, which answers through ``reply_later`` (thread-safe).
    An exception in the handler becomes an ``internal_error`` reply.
    """

    what = "control endpoint"

    def __init__(
        self,
        endpoint: str,
        handler: Handler,
        *,
        max_bytes: int,
        linger_ms: int,
        on_error: Callable[[BaseException], None] | None = None,
        context: zmq.Context | None = None,
    ):
        super().__init__(endpoint, thread_name="dscope-control", context=context)
        self._handler = handler
        self._max_bytes = max_bytes
        self._linger_ms = linger_ms
        self._on_error = on_error
        self._later: collections.deque = collections.deque()
        self.handled = 0

    def _reply_later_fn(self, envelope: list[bytes]) -> Callable[[dict], None]:
        done = threading.Event()

        def reply_later(reply: dict) -> None:
            if done.is_set():
                return
            done.set()
            self._later.append((envelope, reply))
            self._waker.wake()

        return reply_later

    def _run(self) -> None:
        def configure(sock):
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
            # far larger requests are dropped by ZeroMQ (memory bound); merely too large ones get a bad_request reply
            sock.setsockopt(zmq.MAXMSGSIZE, 16 * self._max_bytes)

        bound = self._bind(zmq.ROUTER, configure)
        if bound is None:
            return
        sock, poller = bound
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(1000))
                self._waker.drain()
                if sock in events:
                    self._serve(sock)
                self._send_later(sock)
            self._send_later(sock)
        finally:
            sock.close(self._linger_ms)

    def _send(self, sock, envelope: list[bytes], reply: dict) -> None:
        try:
            body = dumps(reply).encode()
        except (TypeError, ValueError) as exc:
            body = dumps(error_reply(DScopeError("internal_error", f"reply not serialisable: {exc}"))).encode()
        try:
            sock.send_multipart([*envelope, body], flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # peer gone: nothing to do
            pass

    def _send_later(self, sock) -> None:
        while self._later:
            envelope, reply = self._later.popleft()
            self._send(sock, envelope, reply)

    def _serve(self, sock) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # REQ peers send [identity, b"", body]; DEALER peers may send [identity, body]
            if len(frames) >= 3 and frames[-2] == b"":
                envelope, raw = frames[:-1], frames[-1]
            elif len(frames) == 2:
                envelope, raw = frames[:1], frames[1]
            else:
                envelope, raw = frames[:1], b""
            self.handled += 1
            try:
                cmd, args = parse_request(raw, self._max_bytes)
                reply = self._handler(cmd, args, self._reply_later_fn(envelope))
            except DScopeError as exc:
                reply = error_reply(exc)
            except Exception as exc:  # a bug in a handler must not kill the control loop
                if self._on_error is not None:
                    self._on_error(exc)
                reply = error_reply(DScopeError("internal_error", f"{type(exc).__name__}: {exc}"))
            if reply is not None:
                self._send(sock, envelope, reply)
