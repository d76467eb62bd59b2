"""ZeroMQ layer: envelopes, command validation, real PUB/SUB and ROUTER/REQ on loopback."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import zmq

from dscope.errors import DScopeError
from dscope.ipc.client import ControlClient, Subscriber
from dscope.ipc.control import COMMANDS, EXACTLY_ONE, ControlServer, parse_request, validate_command
from dscope.ipc.envelope import ENVELOPE_KEYS, GapDetector, SequenceCounter, decode, dumps, encode
from dscope.ipc.publisher import Publisher

pytestmark = pytest.mark.timeout(60)


# ----------------------------------------------------------------------------- envelopes
def test_envelope_round_trip_and_per_topic_seq():
    c = SequenceCounter()
    seqs = {"state": [], "verdict": []}
    for topic in ["state", "verdict", "state", "state", "verdict"]:
        frames = encode(topic, {"x": 1}, c, "bench", 12.5)
        t, body = decode(frames)
        assert t == topic and frames[0] == topic.encode()
        assert all(k in body for k in ENVELOPE_KEYS)
        assert body["schema"] == f"dscope.{topic}" and body["daemon_id"] == "bench" and body["boot_time"] == 12.5
        seqs[topic].append(body["seq"])
    assert seqs == {"state": [1, 2, 3], "verdict": [1, 2]}


def test_envelope_keys_win_over_payload_and_unknown_topic_rejected():
    c = SequenceCounter()
    _, body = decode(encode("heartbeat", {"seq": 999, "schema": "fake"}, c, "d", 0.0))
    assert body["seq"] == 1 and body["schema"] == "dscope.heartbeat"
    with pytest.raises(ValueError):
        encode("nope", {}, c, "d", 0.0)


def test_dumps_handles_numpy_and_nan():
    s = dumps({"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(3), "d": np.bool_(True)})
    assert json.loads(s) == {"a": 3, "b": 0.5, "c": [0, 1, 2], "d": True}
    assert json.loads(dumps({"x": np.float64("nan")})) == {"x": None}


@pytest.mark.parametrize("frames", [[b"state"], [b"state", b"{not json"], [b"state", b'{"topic": "verdict"}']])
def test_decode_rejects_malformed(frames):
    with pytest.raises(ValueError):
        decode(frames)


def test_gap_detector_counts_lost_and_resets_on_restart():
    g = GapDetector()
    gaps = [g.feed({"topic": "verdict", "seq": s, "boot_time": 1.0}) for s in (1, 2, 3, 7, 8)]
    assert gaps == [0, 0, 0, 3, 0]
    assert g.feed({"topic": "verdict", "seq": 1, "boot_time": 2.0}) == 0  # a new daemon process
    assert g.feed({"topic": "state", "seq": 5, "boot_time": 1.0}) == 0  # first seen: no gap
    assert g.lost["verdict"] == 3


# ----------------------------------------------------------------------------- commands
@pytest.mark.parametrize(
    "raw, code",
    [
        (b"{", "bad_request"),
        (b"\xff\xfe", "bad_request"),
        (b"[1, 2]", "bad_request"),
        (b'{"command": "status"}', "bad_request"),
        (b'{"cmd": 5}', "bad_request"),
        (b'{"cmd": "explode"}', "unknown_command"),
        (b'{"cmd": "inspect"}', "bad_argument"),
        (b'{"cmd": "inspect", "path": 3}', "bad_argument"),
        (b'{"cmd": "inspect", "path": ""}', "bad_argument"),
        (b'{"cmd": "status", "verbose": true}', "bad_argument"),
        (b'{"cmd": "set_fiber", "type": "mm", "core_um": true}', "bad_argument"),
        (b'{"cmd": "set_fiber", "type": "mm", "core_um": "50"}', "bad_argument"),
        (b'{"cmd": "trigger", "wait": 1}', "bad_argument"),
    ],
)
def test_parse_request_errors(raw, code):
    with pytest.raises(DScopeError) as ei:
        parse_request(raw)
    assert ei.value.code == code
    assert ei.value.message


def test_parse_request_accepts_every_command_with_its_required_args():
    for name, (_help, spec) in COMMANDS.items():
        req = {"cmd": name}
        for arg_name, arg in spec.items():
            if arg.required:
                req[arg_name] = {"str": "x", "number": 1.5, "bool": True}[arg.type]
        if name in EXACTLY_ONE:
            req[EXACTLY_ONE[name][0]] = 1.5
        assert validate_command(req) == (name, {k: v for k, v in req.items() if k != "cmd"})
    with pytest.raises(DScopeError) as ei:
        parse_request(b'{"cmd": "status"}' + b" " * 100, max_bytes=50)
    assert ei.value.code == "bad_request"


def test_calibrate_needs_exactly_one_positive_target():
    assert validate_command({"cmd": "calibrate", "dot_spacing_um": 10}) == ("calibrate", {"dot_spacing_um": 10})
    assert validate_command({"cmd": "calibrate", "cladding_um": 125.0, "apply": False})[1]["apply"] is False
    for bad in ({}, {"dot_spacing_um": 10, "cladding_um": 125}, {"dot_spacing_um": 0}, {"cladding_um": -125},
                {"dot_spacing_um": True}, {"dot_spacing_um": "10"}, {"dot_spacing_um": 10, "apply": 1},
                {"dot_spacing_um": 10, "path": "/x"}):
        with pytest.raises(DScopeError) as ei:
            validate_command({"cmd": "calibrate", **bad})
        assert ei.value.code == "bad_argument", bad


# ----------------------------------------------------------------------------- PUB/SUB
def _wait_live(pub: Publisher, sub: Subscriber, topic: str = "heartbeat") -> None:
    """Publish probes until the subscriber receives one (slow-joiner handshake, no sleeping)."""
    for _ in range(200):
        pub.publish(topic, {"probe": True})
        if sub.recv(timeout_s=0.05) is not None:
            while sub.recv(timeout_s=0.05) is not None:  # drain the other probes
                pass
            return
    raise AssertionError("subscriber never received a probe")


def test_publisher_subscriber_topics_seq_and_numpy():
    pub = Publisher("tcp://127.0.0.1:*", "bench", sndhwm=1000, linger_ms=0)
    pub.start()
    try:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith("*")
        with Subscriber(pub.endpoint, ["verdict", "heartbeat"]) as sub:
            _wait_live(pub, sub)
            for i in range(20):
                pub.publish("state", {"i": i})  # not subscribed
                pub.publish("verdict", {"i": i, "value": np.float32(i) / 2})
            got = []
            while (msg := sub.recv(timeout_s=2.0)) is not None:
                got.append(msg)
                if len(got) == 20:
                    break
            assert [t for t, _ in got] == ["verdict"] * 20
            assert [b["i"] for _, b in got] == list(range(20))
            seqs = [b["seq"] for _, b in got]
            assert seqs == list(range(seqs[0], seqs[0] + 20))
            assert got[3][1]["value"] == 1.5
            assert sub.gaps.lost["verdict"] == 0
    finally:
        pub.stop()
    assert not pub.alive


def test_slow_subscriber_never_blocks_publisher_and_sees_gaps():
    pub = Publisher("tcp://127.0.0.1:*", "bench", sndhwm=20, linger_ms=0)
    pub.start()
    try:
        with Subscriber(pub.endpoint, ["verdict", "heartbeat"], rcvhwm=20) as sub:
            _wait_live(pub, sub)
            blob = "x" * 20000
            n = 3000
            for i in range(n):
                pub.publish("verdict", {"i": i, "blob": blob})
            done = threading.Event()

            def waiter():
                while pub.pending():
                    threading.Event().wait(0.01)
                done.set()

            threading.Thread(target=waiter, daemon=True).start()
            assert done.wait(30), "publisher thread blocked on a subscriber that does not read"
            received = 0
            while sub.recv(timeout_s=0.5) is not None:
                received += 1
            assert 0 < received < n
            assert sub.gaps.lost["verdict"] > 0
    finally:
        pub.stop()


def test_publisher_bind_failure_is_a_clear_error():
    first = Publisher("tcp://127.0.0.1:*", "a", sndhwm=10, linger_ms=0)
    first.start()
    try:
        second = Publisher(first.endpoint, "b", sndhwm=10, linger_ms=0)
        with pytest.raises(DScopeError) as ei:
            second.start()
        assert "cannot bind" in ei.value.message
    finally:
        first.stop()


# ----------------------------------------------------------------------------- control server
def test_control_server_replies_errors_and_deferred():
    deferred = []

    def handler(cmd, args, reply_later):
        if cmd == "status":
            return {"ok": True, "state": "idle"}
        if cmd == "set_profile" and args["profile"] == "boom":
            raise RuntimeError("handler bug")
        if cmd == "set_profile":
            raise DScopeError("config_invalid", f"unknown profile {args['profile']!r}")
        if cmd == "inspect":
            t = threading.Timer(0.05, reply_later, args=({"ok": True, "verdict": {"path": args["path"]}},))
            deferred.append(t)
            t.start()
            return None
        return {"ok": True}

    errors = []
    server = ControlServer("tcp://127.0.0.1:*", handler, max_bytes=4096, linger_ms=0, on_error=errors.append)
    server.start()
    try:
        with ControlClient(server.endpoint, timeout_s=5) as c:
            assert c.request({"cmd": "status"}) == {"ok": True, "state": "idle"}
            r = c.request_raw(b"not json")
            assert r["ok"] is False and r["error"]["code"] == "bad_request"
            r = c.request({"cmd": "fly"})
            assert r["error"]["code"] == "unknown_command"
            r = c.request({"cmd": "set_profile", "profile": "nope"})
            assert r["error"] == {"code": "config_invalid", "message": "unknown profile 'nope'"}
            r = c.request({"cmd": "set_profile", "profile": "boom"})
            assert r["error"]["code"] == "internal_error" and len(errors) == 1
            r = c.request({"cmd": "inspect", "path": "/x.png", "wait": True})
            assert r == {"ok": True, "verdict": {"path": "/x.png"}}
            r = c.request_raw(b'{"cmd": "status", "pad": "' + b"y" * 5000 + b'"}')
            assert r["error"]["code"] == "bad_request"
            assert c.request({"cmd": "status"})["ok"] is True  # still serving
        # two clients interleaved on one ROUTER
        a, b = zmq.Context.instance().socket(zmq.REQ), zmq.Context.instance().socket(zmq.REQ)
        for s in (a, b):
            s.setsockopt(zmq.LINGER, 0)
            s.connect(server.endpoint)
        a.send(b'{"cmd": "status"}')
        b.send(b'{"cmd": "reset"}')
        assert a.poll(5000) and json.loads(a.recv())["state"] == "idle"
        assert b.poll(5000) and json.loads(b.recv()) == {"ok": True}
        a.close()
        b.close()
    finally:
        server.stop()
        for t in deferred:
            t.join()
