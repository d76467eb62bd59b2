"""Message envelopes of the daemon's PUB socket.

Every message is two frames ``[topic, body]``; ``body`` is a UTF-8 JSON object
carrying, besides the topic's payload keys:

``schema``          ``"dscope.<topic>"`` (e.g. ``dscope.verdict``)
``schema_version``  :data:`ENVELOPE_SCHEMA_VERSION`
``topic``           the topic again (handy after ``jq``)
``seq``             per-topic counter starting at 1 for each daemon start; a gap means lost messages
``time``            epoch seconds when the message was sent
``daemon_id``       the sending daemon's name
``boot_time``       epoch seconds when that daemon process started (seq restarts with it)

Topics: ``verdict`` (``result`` = the result document, ``source``, ``status``),
``state`` (``old``, ``new``, ``trigger``, ``error``), ``heartbeat``, ``focus`` and
``calibration`` (``ok``, ``um_per_px``, ``uncertainty_um_per_px``, ``n_dots``, ... or ``error``).

Examples
--------
>>> seq = SequenceCounter()
>>> frames = encode("state", {"old": "idle", "new": "inspecting"}, seq, "bench-1", 0.0)
>>> topic, body = decode(frames)
>>> topic, body["seq"], body["new"]
('state', 1, 'inspecting')
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import PurePath

import numpy as np

ENVELOPE_SCHEMA_VERSION = "1.0.0"
TOPICS = ("verdict", "state", "heartbeat", "focus", "calibration")
ENVELOPE_KEYS = ("schema", "schema_version", "topic", "seq", "time", "daemon_id", "boot_time")


def json_default(obj):
    """``json.dumps`` default that understands numpy scalars/arrays and paths."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _finite_only(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_only(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_only(v) for v in obj]
    return obj


def dumps(obj) -> str:
    """Compact, strict JSON with :func:`json_default`; NaN/inf become ``null`` (JSON has no NaN)."""
    try:
        return json.dumps(obj, default=json_default, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite_only(obj), default=json_default, separators=(",", ":"), allow_nan=False)


class SequenceCounter:
    """Per-topic sequence numbers (not thread-safe: owned by the publisher thread)."""

    def __init__(self):
        self._seq: dict[str, int] = defaultdict(int)

    def next(self, topic: str) -> int:
        self._seq[topic] += 1
        return self._seq[topic]

    def current(self) -> dict[str, int]:
        return dict(self._seq)


def envelope(topic: str, payload: dict, seq: int, daemon_id: str, boot_time: float, now: float | None = None) -> dict:
    """The body dict of one message (payload keys plus the envelope keys, which win)."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; topics are {TOPICS}")
    body = dict(payload)
    body.update(
        {
            "schema": f"dscope.{topic}",
            "schema_version": ENVELOPE_SCHEMA_VERSION,
            "topic": topic,
            "seq": seq,
            "time": time.time() if now is None else now,
            "daemon_id": daemon_id,
            "boot_time": boot_time,
        }
    )
    return body


def encode(topic: str, payload: dict, counter: SequenceCounter, daemon_id: str, boot_time: float) -> list[bytes]:
    """Two frames ``[topic, json body]``, taking the next sequence number of ``topic``."""
    body = envelope(topic, payload, counter.next(topic), daemon_id, boot_time)
    return [topic.encode(), dumps(body).encode()]


def decode(frames: list[bytes]) -> tuple[str, dict]:
    """Inverse of :func:`encode`; raise ``ValueError`` for a malformed message."""
    if len(frames) != 2:
        raise ValueError(f"expected 2 frames, got {len(frames)}")
    topic = frames[0].decode("utf-8", "replace")
    try:
        body = json.loads(frames[1])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("topic") != topic:
        raise ValueError("body is not an envelope of its topic")
    return topic, body


class GapDetector:
    """Counts messages lost per topic from the ``seq`` numbers a subscriber sees.

    A new ``boot_time`` (daemon restart) restarts the count instead of reporting a gap.

    Examples
    --------
    >>> g = GapDetector()
    >>> [g.feed({"topic": "verdict", "seq": s, "boot_time": 1.0}) for s in (1, 2, 5)]
    [0, 0, 2]
    """

    def __init__(self):
        self._last: dict[tuple[str, float], int] = {}
        self.lost: dict[str, int] = defaultdict(int)

    def feed(self, body: dict) -> int:
        key = (body["topic"], body.get("boot_time"))
        seq = int(body["seq"])
        last = self._last.get(key)
        self._last[key] = seq if last is None else max(last, seq)
        gap = 0 if last is None else max(0, seq - last - 1)
        self.lost[body["topic"]] += gap
        return gap
