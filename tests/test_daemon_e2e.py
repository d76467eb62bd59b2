"""End-to-end: the real daemon as a subprocess on free loopback ports, real inotify, real SQLite, real SUB/REQ.

Images come from dscope.synth (seeded, 640x480).  Every wait is for an event
(a message, a reply, a process exit) with a generous upper bound; nothing
sleeps to let a subscriber join: the test waits for a heartbeat instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dscope.errors import DScopeError
from dscope.ipc.client import ControlClient, Subscriber

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parent.parent
GOOD = {"PASS", "FAIL", "UNGRADED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synth_png(path: Path, seed: int) -> Path:
    import cv2

    from dscope.synth import random_spec, render

    img, _ = render(random_spec(np.random.default_rng(seed), "mixed", width=640, height=480))
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DaemonProc:
    """The daemon in a subprocess with its own config file, folders and ports."""

    def __init__(self, tmp: Path, daemon_overrides: dict | None = None, env: dict | None = None):
        self.tmp = tmp
        self.hot = tmp / "hot"
        self.state = tmp / "state"
        self.requests = tmp / "requests"
        self.requests.mkdir(exist_ok=True)
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.control = f"tcp://127.0.0.1:{free_port()}"
        data = json.loads((REPO / "config" / "config.json").read_text())
        daemon = {
            "workers": 1,
            "heartbeat_interval_s": 0.2,
            "stability_interval_s": 0.1,
            "empty_file_settle_s": 0.5,
            "profile": "fast_scan",
            "request_roots": [str(self.requests)],
            "daemon_id": "e2e",
        }
        daemon.update(daemon_overrides or {})
        data["daemon"] = daemon
        self.config_path = tmp / "config.json"
        self.config_path.write_text(json.dumps(data))
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.extra_args: list[str] = []
        self.stderr_path = tmp / f"daemon-{time.monotonic_ns()}.log"

    def start(self) -> dict:
        self.stderr_path = self.tmp / f"daemon-{time.monotonic_ns()}.log"
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dscope", "daemon", "--config", str(self.config_path), "--hot-folder",
             str(self.hot), "--state-dir", str(self.state), "--pub", self.pub, "--control", self.control,
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=self._err, env=self.env, cwd=str(REPO),
        )
        deadline = time.monotonic() + 60
        with ControlClient(self.control, timeout_s=5) as c:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    return c.wait_ready(timeout_s=0.5)
                except DScopeError:
                    continue
        self.kill()
        raise AssertionError(f"daemon did not start (rc {self.proc.returncode}):\n{self.log_text()}")

    def ctl(self, req: dict, timeout_s: float = 30) -> dict:
        with ControlClient(self.control, timeout_s=timeout_s) as c:
            return c.request(req)

    def terminate(self, sig=signal.SIGTERM, timeout_s: float = 60) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout_s)
        self._err.close()
        return rc

    def log_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture()
def daemon_factory(tmp_path):
    made = []

    def make(**kw) -> DaemonProc:
        d = DaemonProc(tmp_path, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()


def wait_live(sub: Subscriber, timeout_s: float = 30) -> None:
    """Block until a heartbeat arrives: from then on the subscription is live (no slow-joiner sleep)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = sub.recv(timeout_s=1)
        if msg and msg[0] == "heartbeat":
            return
    raise AssertionError("no heartbeat")


def collect(sub: Subscriber, n_verdicts: int, timeout_s: float = 90) -> tuple[list[dict], list[dict]]:
    verdicts, states = [], []
    deadline = time.monotonic() + timeout_s
    while len(verdicts) < n_verdicts and time.monotonic() < deadline:
        msg = sub.recv(timeout_s=1)
        if msg is None:
            continue
        topic, body = msg
        if topic == "verdict":
            verdicts.append(body)
        elif topic == "state":
            states.append(body)
    return verdicts, states


def db_rows(state: Path) -> list[dict]:
    conn = sqlite3.connect(state / "results.sqlite3")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM verdicts ORDER BY id")]
    conn.close()
    return rows


def test_hot_folder_end_to_end_restart_and_control(daemon_factory, tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.2)
    msgs: list[str] = []
    reading = threading.Event()
    reading.set()

    def read_notify():  # like systemd: always drain the socket
        while reading.is_set():
            try:
                msgs.append(notify.recv(4096).decode())
            except socket.timeout:
                pass
            except OSError:
                return

    reader = threading.Thread(target=read_notify, daemon=True)
    reader.start()
    d = daemon_factory(env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"})
    outside = tmp_path / "outside"
    outside.mkdir()
    d.hot.mkdir()
    early_sha = sha256(synth_png(d.hot / "early.png", 1))  # present before start-up
    for sub_dir in ("done", "failed"):  # forces a collision suffix for the copy below
        (d.hot / sub_dir).mkdir()
        synth_png(d.hot / sub_dir / "copied.png", 99)
    d.start()

    with Subscriber(d.pub, ["verdict", "state", "heartbeat"]) as sub:
        wait_live(sub)
        expected: dict[str, str] = {}  # source name -> sha256
        # 1) written in place
        src = synth_png(outside / "w.png", 2)
        with open(d.hot / "inplace.png", "wb") as fh:
            fh.write(src.read_bytes())
        expected["inplace.png"] = sha256(src)
        # 2) copied in
        shutil.copy(synth_png(outside / "c.png", 3), d.hot / "copied.png")
        expected["copied.png"] = sha256(outside / "c.png")
        # 3) moved in
        moved = synth_png(outside / "moved.png", 4)
        expected["moved.png"] = sha256(moved)
        os.rename(moved, d.hot / "moved.png")
        # a corrupt image and an ignored temporary file
        (d.hot / "broken.png").write_bytes(b"this is not a png at all" * 10)
        expected["broken.png"] = sha256(d.hot / "broken.png")
        (d.hot / "partial.png.part").write_bytes(b"x")
        # a symlink to a file outside the hot folder is refused, never read
        secret = synth_png(outside / "secret.png", 7)
        (d.hot / "link.png").symlink_to(secret)
        expected["link.png"] = None
        expected["early.png"] = early_sha

        verdicts, states = collect(sub, 6)
        assert len(verdicts) == 6, d.log_text()[-3000:]
        # nothing more arrives (exactly once)
        extra, more_states = collect(sub, 1, timeout_s=1.0)
        assert extra == []
        states += more_states
        assert sub.gaps.lost["verdict"] == 0 and sub.gaps.lost["state"] == 0

    by_name = {Path(v["source"]["path"]).name: v for v in verdicts}
    assert set(by_name) == set(expected)
    for name, v in by_name.items():
        assert v["schema"] == "dscope.verdict" and v["daemon_id"] == "e2e"
        assert v["source"] == {"kind": "hot_folder", "path": str(d.hot / name)}
        doc = v["result"]
        assert doc["schema"] == "dscope.result" and doc["status"] == v["status"]
        assert doc["image"]["sha256"] == expected[name]
        if name == "broken.png":
            assert doc["status"] == "ERROR" and doc["error"]["code"] == "unreadable_image"
        elif name == "link.png":
            assert doc["status"] == "ERROR" and doc["error"]["code"] == "path_refused"
        else:
            assert doc["status"] in GOOD, doc.get("error")
        assert Path(v["stored_as"]).parent == d.hot / ("failed" if doc["status"] == "ERROR" else "done")
        stored = Path(v["stored_as"])
        assert (stored.is_symlink() if name == "link.png" else stored.is_file())
        assert json.loads(stored.with_suffix(".json").read_text()) == doc
    assert Path(by_name["copied.png"]["stored_as"]).name == "copied-1.png"  # collision: nothing overwritten
    assert sha256(d.hot / "done" / "copied.png") == sha256(d.hot / "failed" / "copied.png") != expected["copied.png"]
    assert sorted(p.name for p in d.hot.iterdir()) == ["done", "failed", "partial.png.part"]
    kept = sorted(p.name for p in (d.hot / "done").iterdir()) + sorted(p.name for p in (d.hot / "failed").iterdir())
    assert len(kept) == 2 + 2 * 6  # the two collision files + image and JSON of each verdict: nothing lost
    assert secret.exists()
    seqs = sorted(v["seq"] for v in verdicts)
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    # state changes were published with old and new state, and the bench ends idle
    pairs = [(s["old"], s["new"]) for s in states]
    assert ("idle", "inspecting") in pairs and ("inspecting", "reporting") in pairs and pairs[-1] == ("reporting", "idle")

    # durable rows: one per verdict, written before publishing, all published and finalized
    rows = db_rows(d.state)
    assert sorted(r["verdict_id"] for r in rows) == sorted(v["verdict_id"] for v in verdicts)
    for r in rows:
        v = next(v for v in verdicts if v["verdict_id"] == r["verdict_id"])
        assert r["status"] == v["status"] and r["published"] == 1 and r["finalized"] == 1
        assert r["image_path"] == v["stored_as"] and json.loads(r["result_json"]) == v["result"]
        assert r["fiber_type"] == v["result"]["fiber_type"] and r["rule_set"] == v["result"]["rule_set"]
    assert sqlite3.connect(d.state / "results.sqlite3").execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # control: status is the late-joiner snapshot
    st = d.ctl({"cmd": "status"})
    assert st["ok"] and st["state"] == "idle" and st["counts"]["verdicts"] == 6
    assert st["last_verdict"]["seq"] == max(seqs) and st["settings"]["profile"] == "fast_scan"
    # control: error replies, never a crash
    with ControlClient(d.control, timeout_s=10) as c:
        for raw, code in [
            (b"{oops", "bad_request"),
            (b'"status"', "bad_request"),
            (b'{"cmd": "dance"}', "unknown_command"),
            (b'{"cmd": "inspect"}', "bad_argument"),
            (b'{"cmd": "set_fiber", "type": "sm-pc", "core_um": -3}', "bad_argument"),
            (b'{"cmd": "set_profile", "profile": "warp"}', "config_invalid"),
            (b'{"cmd": "inspect", "path": "/etc/hostname"}', "path_refused"),
            (b'{"cmd": "trigger"}', "camera_unavailable"),
            (b'{"cmd": "focus_start"}', "camera_unavailable"),
            (b'{"cmd": "calibrate", "dot_spacing_um": 10}', "camera_unavailable"),
            (b'{"cmd": "calibrate"}', "bad_argument"),
            (b'{"cmd": "calibrate", "dot_spacing_um": 10, "cladding_um": 125}', "bad_argument"),
            (b'{"cmd": "calibrate", "cladding_um": 0}', "bad_argument"),
            (b'{"cmd": "reset"}', "invalid_state"),
        ]:
            r = c.request_raw(raw)
            assert r["ok"] is False and r["error"]["code"] == code, (raw, r)
            assert r["error"]["message"]
        r = c.request({"cmd": "set_fiber", "type": "mm"})
        assert r["ok"] and r["settings"]["fiber_type"] == "mm" and r["settings"]["core_um"] == 50.0
        # inspect by request (file stays in place), reply carries the verdict
        req_img = synth_png(d.requests / "asked.png", 5)
        r = c.request({"cmd": "inspect", "path": str(req_img), "wait": True}, timeout_s=60)
        assert r["ok"], r
        assert r["verdict"]["source"] == {"kind": "request", "path": str(req_img)}
        assert r["verdict"]["result"]["fiber_type"] == "mm" and r["verdict"]["result"]["status"] in GOOD
        assert req_img.exists()

    # the command-line clients
    cli = [sys.executable, "-m", "dscope"]
    p = subprocess.run([*cli, "ctl", "--control", d.control, "status"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["state"] == "idle"
    p = subprocess.run([*cli, "ctl", "--control", d.control, "set_profile", "nope"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and json.loads(p.stdout)["error"]["code"] == "config_invalid"
    p = subprocess.run([*cli, "subscribe", "--pub", d.pub, "--topic", "heartbeat", "--count", "2", "--timeout", "20"],
                       capture_output=True, text=True, timeout=60)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 0 and [x["topic"] for x in lines] == ["heartbeat", "heartbeat"]
    assert lines[1]["seq"] == lines[0]["seq"] + 1

    # systemd: READY, WATCHDOG pings while the loop runs, RELOADING on SIGHUP, STOPPING on SIGTERM
    # reload picks up a scale calibration named in the edited config file
    good_config = d.config_path.read_text()
    cal = {"schema": "dscope.calibration", "schema_version": "1.0.0", "um_per_px": 0.25,
           "uncertainty_um_per_px": 0.0001, "n_dots": 412, "method": "dot_grid", "dot_spacing_um": 10.0,
           "image": "grid.png", "timestamp": "2026-11-24T01:00:00Z", "details": {}}
    (d.state / "calibration.json").write_text(json.dumps(cal))
    edited = json.loads(good_config)
    edited["daemon"]["calibration_file"] = "calibration.json"
    d.config_path.write_text(json.dumps(edited))
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "config_reloaded" not in [e.get("event") for e in d.log_events()]:
        time.sleep(0.1)
    assert "config_reloaded" in [e.get("event") for e in d.log_events()]
    st = d.ctl({"cmd": "status"})
    assert st["settings"]["calibration_path"] == str(d.state / "calibration.json")
    assert st["settings"]["fiber_type"] == "mm"  # the operator's choice survives a reload
    # a broken file on reload: logged, old configuration kept, still serving
    d.config_path.write_text("{ not json")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "reload_failed" not in [e.get("event") for e in d.log_events()]:
        time.sleep(0.1)
    assert "reload_failed" in [e.get("event") for e in d.log_events()]
    assert d.ctl({"cmd": "status"})["settings"]["fiber_type"] == "mm"
    d.config_path.write_text(good_config)
    assert d.terminate() == 0
    reading.clear()
    reader.join(5)
    notify.close()
    firsts = [m.split("\n")[0] for m in msgs]
    assert firsts[0] == "READY=1"
    assert firsts.count("WATCHDOG=1") >= 2
    assert "RELOADING=1" in firsts and firsts.index("RELOADING=1") < len(firsts) - 1
    assert firsts[firsts.index("RELOADING=1") + 1:].count("READY=1") >= 1
    assert firsts[-1] == "STOPPING=1" or "STOPPING=1" in firsts[-3:]
    events = [e.get("event") for e in d.log_events()]
    assert "daemon_stopped" in events and "state_changed" in events

    # restart: nothing is repeated; a new drop is processed once
    d.env.pop("NOTIFY_SOCKET")
    d.env.pop("WATCHDOG_USEC")
    before = len(db_rows(d.state))
    d.start()
    with Subscriber(d.pub, ["verdict", "heartbeat"]) as sub:
        wait_live(sub)
        shutil.copy(synth_png(outside / "after.png", 6), d.hot / "after.png")
        verdicts, _ = collect(sub, 1)
        more, _ = collect(sub, 1, timeout_s=1.0)
    assert [Path(v["source"]["path"]).name for v in verdicts] == ["after.png"] and more == []
    assert verdicts[0]["seq"] == 1  # a new daemon process restarts the sequence (new boot_time)
    assert len(db_rows(d.state)) == before + 1
    assert d.terminate() == 0


def test_crash_recovery_publishes_stored_verdict_without_reinspecting(daemon_factory, tmp_path):
    """A verdict stored just before a crash (file not yet moved, not published) is published and finalized
    on restart, and the image is not inspected a second time."""
    from dscope.daemon.store import ResultStore

    d = daemon_factory()
    d.hot.mkdir()
    img = synth_png(d.hot / "interrupted.png", 11)
    digest = sha256(img)
    doc = {"schema": "dscope.result", "status": "PASS", "error": None, "image": {"path": str(img), "sha256": digest},
           "fiber_type": "sm-pc", "rule_set": "iec61300-3-35-ed2-sm-pc", "counts": {"total": 0}, "violations": []}
    store = ResultStore(d.state / "results.sqlite3")
    store.insert("before-crash", doc, {"kind": "hot_folder", "path": str(img)}, "e2e")
    store.close()
    st = d.start()
    assert st["ok"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (db_rows(d.state)[0]["finalized"] and not img.exists()):
        time.sleep(0.05)
    assert not img.exists() and (d.hot / "done" / "interrupted.png").is_file()
    assert json.loads((d.hot / "done" / "interrupted.json").read_text()) == doc
    st = d.ctl({"cmd": "status"})
    assert st["last_verdict"]["verdict_id"] == "before-crash" and st["last_verdict"]["recovered"] is True
    rows = db_rows(d.state)
    assert len(rows) == 1 and rows[0]["published"] == 1 and rows[0]["finalized"] == 1
    assert d.terminate() == 0


def test_per_image_timeout_gives_error_and_daemon_keeps_serving(daemon_factory, tmp_path):
    d = daemon_factory(daemon_overrides={"image_timeout_s": 0.001})
    d.hot.mkdir()
    d.start()
    with Subscriber(d.pub, ["verdict", "heartbeat", "state"]) as sub:
        wait_live(sub)
        shutil.copy(synth_png(tmp_path / "slow.png", 21), d.hot / "slow.png")
        verdicts, states = collect(sub, 1, timeout_s=60)
        assert len(verdicts) == 1
        v = verdicts[0]
        assert v["status"] == "ERROR" and v["result"]["error"]["code"] == "timeout"
        assert Path(v["stored_as"]).parent == d.hot / "failed"
        while not states or states[-1]["new"] != "idle":  # back to idle after reporting
            msg = sub.recv(timeout_s=30)
            assert msg is not None
            if msg[0] == "state":
                states.append(msg[1])
        assert d.ctl({"cmd": "status"})["state"] == "idle"
        # the replacement worker serves the next image too
        shutil.copy(synth_png(tmp_path / "next.png", 22), d.hot / "next.png")
        verdicts, _ = collect(sub, 1, timeout_s=60)
        assert [Path(v["source"]["path"]).name for v in verdicts] == ["next.png"]
    r = d.ctl({"cmd": "shutdown"})
    assert r == {"ok": True, "stopping": True}
    assert d.proc.wait(60) == 0


def test_sigterm_mid_burst_then_restart_loses_and_repeats_nothing(daemon_factory, tmp_path):
    d = daemon_factory()
    d.hot.mkdir()
    src = [synth_png(tmp_path / f"s{i}.png", 30 + i) for i in range(3)]
    names = [f"b{i:02d}.png" for i in range(20)]
    d.start()
    with Subscriber(d.pub, ["verdict", "heartbeat"]) as sub:
        wait_live(sub)
        for i, name in enumerate(names):
            shutil.copy(src[i % 3], d.hot / name)
        first, _ = collect(sub, 1)  # at least one image is through; stop while others are queued
        assert d.terminate() == 0
        while (msg := sub.recv(timeout_s=0.5)) is not None:  # verdicts of the images that were finishing
            if msg[0] == "verdict":
                first.append(msg[1])
    done_first = {Path(v["source"]["path"]).name for v in first}
    left = {p.name for p in d.hot.iterdir() if p.is_file()}
    assert done_first and left, "SIGTERM should have arrived while images were still queued"
    assert not (done_first & left) and done_first | left == set(names)
    assert len(db_rows(d.state)) == len(done_first)
    d.start()
    with Subscriber(d.pub, ["verdict", "heartbeat"]) as sub:
        wait_live(sub)
        rest, _ = collect(sub, len(left))
        more, _ = collect(sub, 1, timeout_s=1.0)
    assert {Path(v["source"]["path"]).name for v in rest} == left and more == []
    rows = db_rows(d.state)
    assert len(rows) == len(names) and len({r["source_path"] for r in rows}) == len(names)
    assert all(r["published"] == 1 and r["finalized"] == 1 for r in rows)
    assert not [p for p in d.hot.iterdir() if p.is_file()]
    assert d.terminate() == 0


def test_camera_emulator_trigger_focus_and_calibrate(daemon_factory, tmp_path):
    """The camera hook on pylon's emulator: a triggered frame takes the same path as a hot-folder image."""
    pytest.importorskip("pypylon")
    d = daemon_factory()
    d.hot.mkdir()
    d.extra_args = ["--camera", "emulated"]
    st = d.start()
    if st["state"] == "fault":
        pytest.skip(f"pylon emulator not usable here: {st['error']}")
    assert st["camera"]["connected"] is True
    serial = st["camera"]["serial"]
    with Subscriber(d.pub, ["verdict", "state", "heartbeat", "focus"]) as sub:
        wait_live(sub)
        r = d.ctl({"cmd": "trigger", "wait": True}, timeout_s=60)
        assert r["ok"], r
        v = r["verdict"]
        assert v["source"]["kind"] == "camera" and v["source"]["serial"] == serial
        png = Path(v["stored_as"])
        assert png.is_file() and png.suffix == ".png" and png.is_relative_to(d.state / "frames")
        assert json.loads(png.with_suffix(".json").read_text()) == v["result"]
        import cv2

        frame = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert v["result"]["image"]["path"] == str(png)
        if v["result"]["image"]["width"]:
            assert frame.shape[:2] == (v["result"]["image"]["height"], v["result"]["image"]["width"])
        verdicts, states = collect(sub, 1, timeout_s=10)
        assert verdicts and verdicts[0]["verdict_id"] == v["verdict_id"]
        # focus: state focusing, focus messages published, a trigger is refused meanwhile
        assert d.ctl({"cmd": "focus_start"}, timeout_s=30) == {"ok": True, "state": "focusing"}
        focus = None
        deadline = time.monotonic() + 30
        while focus is None and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=1)
            if msg and msg[0] == "focus":
                focus = msg[1]
        assert focus is not None and focus["schema"] == "dscope.focus"
        r = d.ctl({"cmd": "trigger"})
        assert r["ok"] is False and r["error"]["code"] == "invalid_state"
        assert d.ctl({"cmd": "focus_stop"}, timeout_s=30)["ok"] is True
        # the emulator's test pattern is no dot grid: calibration_failed, back to idle, frame kept
        r = d.ctl({"cmd": "calibrate", "dot_spacing_um": 10.0}, timeout_s=60)
        assert r["ok"] is False and r["error"]["code"] == "calibration_failed", r
        assert Path(r["frame_path"]).is_file()
        assert d.ctl({"cmd": "status"})["state"] == "idle"
    rows = db_rows(d.state)
    assert [(r["source_kind"], r["camera_serial"]) for r in rows] == [("camera", serial)]
    assert d.terminate() == 0


def test_camera_fault_keeps_serving_the_hot_folder(daemon_factory, tmp_path):
    d = daemon_factory()
    d.hot.mkdir()
    d.extra_args = ["--camera", f"emulated:{tmp_path / 'no-such-folder'}"]
    st = d.start()
    assert st["state"] == "fault" and st["error"]["code"] in ("file_not_found", "camera_unavailable")
    with Subscriber(d.pub, ["verdict", "heartbeat"]) as sub:
        wait_live(sub)
        shutil.copy(synth_png(tmp_path / "x.png", 41), d.hot / "x.png")
        verdicts, _ = collect(sub, 1)
    assert [Path(v["source"]["path"]).name for v in verdicts] == ["x.png"]
    st = d.ctl({"cmd": "status"})
    assert st["state"] == "fault" and st["counts"]["verdicts"] == 1
    r = d.ctl({"cmd": "trigger"})
    assert r["ok"] is False and r["error"]["code"] in ("invalid_state", "camera_unavailable")
    assert d.ctl({"cmd": "reset"}) == {"ok": True, "state": "idle"}
    assert d.terminate() == 0


def test_bad_options_and_busy_port_exit_2_with_a_clear_message(tmp_path):
    import zmq

    cli = [sys.executable, "-m", "dscope", "daemon", "--state-dir", str(tmp_path / "s")]
    p = subprocess.run([*cli, "--pub", "tcp://0.0.0.0:5555"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2 and "not a loopback address" in p.stderr
    p = subprocess.run([*cli, "--camera", "webcam"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2 and "camera" in p.stderr
    busy = zmq.Context.instance().socket(zmq.PUB)
    busy.setsockopt(zmq.LINGER, 0)
    port = busy.bind_to_random_port("tcp://127.0.0.1")
    try:
        p = subprocess.run([*cli, "--pub", f"tcp://127.0.0.1:{port}", "--control", f"tcp://127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    finally:
        busy.close()
    assert p.returncode == 2 and "cannot bind PUB endpoint" in p.stderr and "Traceback" not in p.stderr
