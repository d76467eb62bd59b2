"""Daemon building blocks with real inotify, real processes: hot folder, state machine, worker pool, config."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from dscope.daemon.config import DaemonConfig, endpoint_is_loopback
from dscope.daemon.hotfolder import HotFolder, check_inside, move_no_clobber, unique_destination, write_new_file
from dscope.daemon.machine import STATES, TRANSITIONS, BenchMachine
from dscope.daemon.workers import WorkerPool
from dscope.errors import DScopeError

pytestmark = pytest.mark.timeout(60)

EXTS = [".png", ".tif"]


# ----------------------------------------------------------------------------- config
def test_daemon_config_validation():
    cfg = DaemonConfig()
    assert cfg.pub_endpoint == "tcp://127.0.0.1:5555" and cfg.control_endpoint == "tcp://127.0.0.1:5556"
    for bad in (
        {"pub_endpoint": "tcp://0.0.0.0:5555"},
        {"control_endpoint": "udp://127.0.0.1:1"},
        {"pub_endpoint": "tcp://127.0.0.1:5556"},
        {"workers": 0},
        {"image_timeout_s": 0},
        {"done_dir": "../x"},
        {"camera": "webcam"},
        {"unknown_key": 1},
    ):
        with pytest.raises(Exception):
            DaemonConfig(**bad)
    assert DaemonConfig(pub_endpoint="tcp://0.0.0.0:5555", allow_remote_endpoints=True).pub_endpoint.endswith("5555")
    assert DaemonConfig(camera="emulated:/data/imgs").camera == "emulated:/data/imgs"
    assert endpoint_is_loopback("tcp://[::1]:1") and endpoint_is_loopback("ipc:///tmp/x")
    assert not endpoint_is_loopback("tcp://10.0.0.1:1")


def test_shipped_config_daemon_section(config):
    d = config.daemon
    assert endpoint_is_loopback(d.pub_endpoint) and endpoint_is_loopback(d.control_endpoint)
    assert d.camera == "none"


# ----------------------------------------------------------------------------- state machine
def test_machine_table_and_refusals():
    changes = []
    m = BenchMachine(on_change=lambda old, new, trig, err: changes.append((old, new, trig, err)))
    assert m.state == "idle"
    assert {d for _, _, d in TRANSITIONS if d} <= set(STATES)
    # a full camera cycle
    for trig, expect in [("trigger", "capturing"), ("captured", "inspecting"), ("inspect", "inspecting"),
                         ("report", "reporting"), ("finish", "idle"), ("focus_start", "focusing"),
                         ("focus_stop", "idle"), ("calibrate", "calibrating"), ("abort", "idle")]:
        assert m.fire(trig) == expect
    # the internal inspect -> inspecting did not produce a change record
    assert [c[2] for c in changes].count("inspect") == 0
    assert len(changes) == 8
    # a busy hot folder does not block a camera trigger; focus and calibrate need idle
    assert m.fire("inspect") == "inspecting"
    for trig in ("focus_start", "calibrate"):
        assert m.try_fire(trig) is False
    assert m.fire("trigger") == "capturing" and m.fire("captured") == "inspecting"
    assert m.fire("report") == "reporting" and m.fire("finish") == "idle"
    assert [c[:2] for c in changes[8:]] == [("idle", "inspecting"), ("inspecting", "capturing"),
                                             ("capturing", "inspecting"), ("inspecting", "reporting"),
                                             ("reporting", "idle")]
    # refused transitions give invalid_state, never an exception of another kind
    for trig in ("reset", "captured", "report", "finish", "focus_stop", "calibrated"):
        with pytest.raises(DScopeError) as ei:
            m.fire(trig)
        assert ei.value.code == "invalid_state" and "idle" in ei.value.message
        assert m.try_fire(trig) is False
    assert m.state == "idle"
    # fault keeps the error; reset clears it
    m.fire("fail", {"code": "camera_removed", "message": "unplugged"})
    assert m.state == "fault" and m.error["code"] == "camera_removed"
    assert changes[-1][1] == "fault" and changes[-1][3]["code"] == "camera_removed"
    with pytest.raises(DScopeError):
        m.fire("trigger")
    m.fire("recovered")
    assert m.state == "idle" and m.error is None


def test_machine_is_thread_safe():
    m = BenchMachine()
    results = []

    def worker():
        for _ in range(200):
            results.append(m.try_fire("trigger"))
            m.try_fire("abort")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.state == "idle" and any(results)


# ----------------------------------------------------------------------------- hot folder
def _cfg(**kw):
    base = dict(stability_interval_s=0.1, empty_file_settle_s=0.5, open_file_timeout_s=30)
    base.update(kw)
    return DaemonConfig(**base)


def _collect(hf: HotFolder, n: int, timeout_s: float = 10.0) -> list:
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += hf.poll()
        time.sleep(0.02)
    return out


def test_hotfolder_three_write_styles_startup_and_filters(tmp_path):
    hot, outside = tmp_path / "hot", tmp_path / "outside"
    hot.mkdir()
    outside.mkdir()
    (hot / "present.png").write_bytes(b"p" * 100)  # before start
    hf = HotFolder(hot, _cfg(), EXTS)
    hf.start()
    try:
        assert (hot / "done").is_dir() and (hot / "failed").is_dir()
        (hot / "inplace.png").write_bytes(b"a" * 1000)
        src = outside / "copied.png"
        src.write_bytes(b"b" * 1000)
        shutil.copy(src, hot / "copied.png")
        moved = outside / "moved.png"
        moved.write_bytes(b"c" * 1000)
        os.rename(moved, hot / "moved.png")
        (hot / "renamed.png.part").write_bytes(b"d" * 10)
        os.rename(hot / "renamed.png.part", hot / "renamed.png")
        for ignored in (".hidden.png", "x.png.tmp", "~lock.png", "notes.txt"):
            (hot / ignored).write_bytes(b"z")
        (hot / "done" / "sub.png").write_bytes(b"s")  # sub-folders are not watched
        got = _collect(hf, 5)
        names = sorted(p.name for p in got)
        assert names == ["copied.png", "inplace.png", "moved.png", "present.png", "renamed.png"]
        assert hf.poll() == []  # each handed out once
        # events on a claimed file (e.g. our own reads) do not hand it out again
        (hot / "inplace.png").read_bytes()
        with open(hot / "inplace.png", "ab") as fh:
            fh.write(b"more")
        assert _collect(hf, 1, timeout_s=0.5) == []
        # after release, a new file of the same name is handed out again
        os.unlink(hot / "inplace.png")
        hf.release(hot / "inplace.png")
        (hot / "inplace.png").write_bytes(b"new")
        assert [p.name for p in _collect(hf, 1)] == ["inplace.png"]
    finally:
        hf.stop()


def test_hotfolder_waits_for_an_open_writer(tmp_path):
    hot = tmp_path / "hot"
    hf = HotFolder(hot, _cfg(), EXTS)
    hf.start()
    try:
        fh = open(hot / "slow.png", "wb")
        fh.write(b"x" * 10)
        fh.flush()
        assert _collect(hf, 1, timeout_s=0.6) == []  # stable but still open for writing
        fh.write(b"y" * 10)
        fh.close()
        assert [p.name for p in _collect(hf, 1)] == ["slow.png"]
        # an empty file moved in is handed out only after empty_file_settle_s
        (tmp_path / "e.png").write_bytes(b"")
        os.rename(tmp_path / "e.png", hot / "empty.png")
        assert _collect(hf, 1, timeout_s=0.25) == []
        assert [p.name for p in _collect(hf, 1, timeout_s=5)] == ["empty.png"]
    finally:
        hf.stop()


def test_paths_outside_are_refused(tmp_path):
    root, other = tmp_path / "root", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    (root / "ok.png").write_bytes(b"1")
    (other / "secret.png").write_bytes(b"2")
    (root / "link.png").symlink_to(other / "secret.png")
    assert check_inside(root / "ok.png", [root]) == (root / "ok.png").resolve()
    for bad in (root / "link.png", root / ".." / "other" / "secret.png", root, "relative.png"):
        with pytest.raises(DScopeError) as ei:
            check_inside(bad, [root])
        assert ei.value.code == "path_refused"
    with pytest.raises(DScopeError) as ei:
        check_inside(root / "missing.png", [root])
    assert ei.value.code == "file_not_found"


def test_unique_destination_and_no_clobber_moves(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "a.png").write_bytes(b"old")
    (done / "a-1.json").write_bytes(b"{}")
    img, js = unique_destination(done, "a", ".png")
    assert (img.name, js.name) == ("a-2.png", "a-2.json")
    src = tmp_path / "a.png"
    src.write_bytes(b"new")
    move_no_clobber(src, img)
    assert img.read_bytes() == b"new" and not src.exists() and (done / "a.png").read_bytes() == b"old"
    src.write_bytes(b"again")
    with pytest.raises(FileExistsError):
        move_no_clobber(src, img)
    assert src.exists() and img.read_bytes() == b"new"
    write_new_file(js, b"{}")
    with pytest.raises(FileExistsError):
        write_new_file(js, b"[]")


# ----------------------------------------------------------------------------- worker pool
def _drain(pool: WorkerPool, n: int, timeout_s: float = 30.0) -> list:
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += pool.collect()
        time.sleep(0.01)
    return out


def _wait_idle(pool: WorkerPool, n: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pool.idle() < n:
        assert time.monotonic() < deadline, "workers did not start"
        pool.collect()
        time.sleep(0.02)


@pytest.mark.system
def test_worker_pool_result_timeout_and_crash():
    events = []
    pool = WorkerPool(2, opencv_threads=1, start_timeout_s=60, preload=False,
                      on_event=lambda name, **kw: events.append(name))
    pool.start()
    try:
        _wait_idle(pool, 2)
        assert pool.submit("ok", "call", (divmod, (17, 5)), None, 1, timeout_s=20)
        assert pool.submit("hang", "call", (time.sleep, (60,)), None, 1, timeout_s=0.5)
        assert not pool.submit("x", "call", (divmod, (1, 1)), None, 1, timeout_s=1)  # none idle
        got = {f.job_id: f for f in _drain(pool, 2)}
        assert got["ok"].doc == (3, 2) and got["ok"].error is None
        assert got["hang"].doc is None and got["hang"].error.code == "timeout"
        assert "worker_killed" in events
        _wait_idle(pool, 2)  # the killed worker was replaced
        assert pool.submit("crash", "call", (os._exit, (3,)), None, 1, timeout_s=20)
        (fin,) = _drain(pool, 1)
        assert fin.job_id == "crash" and fin.error.code == "worker_crashed" and "3" in fin.error.message
        _wait_idle(pool, 2)
        assert pool.submit("bug", "call", (int, ("not a number",)), None, 1, timeout_s=20)
        (fin,) = _drain(pool, 1)
        assert fin.error.code == "internal_error" and "ValueError" in fin.error.message
        assert pool.restarts == 2
    finally:
        pool.stop()


def test_rescan_finds_files_without_events_and_keeps_claims(tmp_path):
    hot = tmp_path / "hot"
    hot.mkdir()
    hf = HotFolder(hot, _cfg(), EXTS)  # observer not started: no events at all
    (hot / "missed.png").write_bytes(b"m" * 50)
    hf.rescan()
    got = _collect(hf, 1)
    assert [p.name for p in got] == ["missed.png"]
    hf.rescan()  # claimed: not handed out again
    assert _collect(hf, 1, timeout_s=0.4) == []
    hf.release(got[0])
    hf.rescan()  # released but still there (e.g. a failed move): offered again for a retry
    assert [p.name for p in _collect(hf, 1)] == ["missed.png"]
