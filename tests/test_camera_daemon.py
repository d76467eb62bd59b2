"""The real daemon subprocess driving pylon's camera emulator (``--camera emulated:FOLDER``).

``dscope ctl trigger`` -> one verdict per trigger on a real SUB socket, raw frame saved losslessly,
focus topic, removal -> fault published -> reconnect -> capturing again, calibrate (reference fiber);
calibrate on a served dot grid -> calibration.json + history CSV + ``calibration`` topic + scale applied,
and a blank target -> ``calibration_failed`` back in idle.
Helpers (daemon subprocess with its own ports/folders, SUB collection) come from test_daemon_e2e.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import csv

import cv2
import numpy as np
import pytest

from dscope.calibration_io import HISTORY_NAME, load_calibration
from dscope.ipc.client import Subscriber
from dscope.synth import make_dot_grid, random_spec, render

from test_daemon_e2e import REPO, DaemonProc, db_rows, wait_live  # noqa: E402  (pytest puts tests/ on sys.path)

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def _folder(tmp: Path, n: int = 3) -> tuple[Path, list[np.ndarray], list]:
    """``n`` sharp end faces, then a badly defocused copy of the first (the last file served)."""
    d = tmp / "emu"
    d.mkdir()
    rng = np.random.default_rng(77)
    imgs, truths = [], []
    for i in range(n):
        spec = random_spec(rng, "mixed", width=640, height=480)
        img, truth = render(spec)
        if i == 0:
            blurred, blurred_truth = render(dataclasses.replace(spec, blur_sigma_px=6.0))
        cv2.imwrite(str(d / f"frame_{i:02d}.png"), img)
        imgs.append(img)
        truths.append(truth)
    cv2.imwrite(str(d / f"frame_{n:02d}.png"), blurred)
    imgs.append(blurred)
    truths.append(blurred_truth)
    return d, imgs, truths


def _ctl(d: DaemonProc, *args: str, timeout_s: float = 60) -> dict:
    """The real CLI: ``dscope ctl --control EP COMMAND ...`` (JSON reply on stdout)."""
    p = subprocess.run(
        [sys.executable, "-m", "dscope", "ctl", "--control", d.control, "--timeout", str(timeout_s), *args],
        capture_output=True, text=True, timeout=timeout_s + 30, cwd=str(REPO),
    )
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ctl {args}: rc {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}") from None


def _next(sub: Subscriber, pred, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = sub.recv(timeout_s=0.5)
        if msg is not None and pred(*msg):
            return msg
    return None


def test_daemon_on_emulator_trigger_focus_removal_reconnect_calibrate(tmp_path):
    folder, imgs, truths = _folder(tmp_path)
    unplug = tmp_path / "unplug"
    d = DaemonProc(tmp_path)
    d.hot.mkdir()
    data = json.loads(d.config_path.read_text())
    data["camera"]["reconnect"].update({"initial_backoff_s": 0.2, "max_backoff_s": 0.5, "removal_poll_s": 0.1})
    data["camera"]["emulator"]["unplug_file"] = str(unplug)
    data["camera"]["preview_fps"] = 10.0
    d.config_path.write_text(json.dumps(data))
    d.extra_args = ["--camera", f"emulated:{folder}"]
    try:
        st = d.start()
        assert st["state"] == "idle", st
        assert st["camera"]["connected"] is True
        serial = st["camera"]["serial"]
        with Subscriber(d.pub, ["verdict", "state", "heartbeat", "focus"]) as sub:
            wait_live(sub)
            # --- software trigger through the CLI: one verdict per trigger, the right image, saved losslessly
            replies = [_ctl(d, "trigger") for _ in range(3)]
            assert all(r["ok"] and r["serial"] == serial for r in replies), replies
            verdicts = []
            while len(verdicts) < 3:
                msg = _next(sub, lambda t, b: t == "verdict")
                assert msg is not None, f"got {len(verdicts)} verdicts"
                verdicts.append(msg[1])
            assert [v["source"]["frame_id"] for v in verdicts] == [r["frame_id"] for r in replies]
            for i, v in enumerate(verdicts):
                src = v["source"]
                assert src["kind"] == "camera" and src["serial"] == serial
                assert v["status"] in ("PASS", "FAIL", "UNGRADED", "ERROR")
                png = Path(v["stored_as"])
                raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                assert np.array_equal(raw, imgs[i])  # served in name order, stored bit-exact
                assert json.loads(png.with_suffix(".json").read_text())["status"] == v["status"]
            assert _next(sub, lambda t, b: t == "verdict", timeout_s=1.0) is None  # exactly one per trigger

            # --- focus topic at the preview rate
            assert _ctl(d, "focus_start")["ok"] is True
            focus = []
            while len(focus) < 4:
                msg = _next(sub, lambda t, b: t == "focus", timeout_s=10)
                assert msg is not None
                focus.append(msg[1])
            assert _ctl(d, "focus_stop")["ok"] is True
            assert all(f["metric"] > 0 and f["metric_name"] == "laplacian_var" for f in focus)
            assert all(f["serial"] == serial for f in focus)

            # --- the defocused frame (served 4th) is graded with an out-of-focus warning in its result
            blurred = None
            for _ in range(len(imgs)):
                r = _ctl(d, "trigger", "wait=true")
                assert r["ok"], r
                if np.array_equal(cv2.imread(r["verdict"]["stored_as"], cv2.IMREAD_UNCHANGED), imgs[-1]):
                    blurred = r["verdict"]
                    break
            assert blurred is not None
            assert any("out of focus" in w for w in blurred["result"]["warnings"]), blurred["result"]["warnings"]

            # --- removal -> fault published -> supervisor reconnects -> capturing again
            unplug.write_text("")
            fault = _next(sub, lambda t, b: t == "state" and b.get("new") == "fault", timeout_s=20)
            assert fault is not None
            assert (fault[1].get("error") or {}).get("code") == "camera_removed"
            back = _next(sub, lambda t, b: t == "state" and b.get("old") == "fault", timeout_s=30)
            assert back is not None and back[1]["new"] == "idle"
            assert not unplug.exists()
            r = _ctl(d, "trigger", "wait=true")
            assert r["ok"], r
            assert r["verdict"]["source"]["kind"] == "camera" and r["verdict"]["source"]["serial"] == serial
            assert any(np.array_equal(cv2.imread(r["verdict"]["stored_as"], cv2.IMREAD_UNCHANGED), im) for im in imgs)

            # --- calibration on a reference fiber of known cladding diameter (the served end face)
            r = _ctl(d, "calibrate", f"cladding_um={truths[0].cladding_um}", "apply=false")
            assert r["ok"], r
            cal = cv2.imread(r["frame_path"], cv2.IMREAD_UNCHANGED)
            which = [i for i, im in enumerate(imgs) if np.array_equal(cal, im)]
            assert len(which) == 1
            assert r["method"] == "reference_fiber" and r["n_dots"] == 0 and r["applied"] is False
            t = truths[which[0]]  # whichever end face was served: its cladding radius in px is known
            expected = truths[0].cladding_um / (2 * t.cladding_radius_px)
            assert abs(r["um_per_px"] / expected - 1) < 0.03, (r["um_per_px"], expected, which)
            assert r["settings"]["calibration_path"] is None  # apply=false: the scale in use is unchanged
        rows = db_rows(d.state)
        assert len(rows) >= 5 and all(r["source_kind"] == "camera" for r in rows)
        assert {r["camera_serial"] for r in rows} == {serial}
        st = d.ctl({"cmd": "status"})
        assert st["state"] == "idle" and st["camera"]["connected"] is True
        assert d.terminate() == 0
    finally:
        d.kill()


def _ctl_rc(d: DaemonProc, *args: str, timeout_s: float = 60) -> tuple[int, dict]:
    p = subprocess.run(
        [sys.executable, "-m", "dscope", "ctl", "--control", d.control, "--timeout", str(timeout_s), *args],
        capture_output=True, text=True, timeout=timeout_s + 30, cwd=str(REPO),
    )
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else {"stderr": p.stderr})


def _until_idle(sub: Subscriber, timeout_s: float = 30) -> tuple[list[tuple], list[dict]]:
    """State changes up to (and including) the next return to idle, and the calibration messages meanwhile."""
    seen, cals = [], []
    while True:
        msg = _next(sub, lambda t, b: t in ("state", "calibration"), timeout_s=timeout_s)
        assert msg is not None, f"no return to idle; states so far {seen}"
        if msg[0] == "calibration":
            cals.append(msg[1])
            continue
        seen.append((msg[1]["old"], msg[1]["new"], msg[1]["trigger"]))
        if msg[1]["new"] in ("idle", "fault"):
            return seen, cals


def test_daemon_calibrates_a_served_dot_grid_and_applies_the_scale(tmp_path):
    folder = tmp_path / "emu"
    folder.mkdir()
    grid, truth = make_dot_grid(width=640, height=480, spacing_um=10.0, um_per_px=0.37, rotation_deg=17.0,
                                n_missing=12, n_extra=6, seed=1)
    cv2.imwrite(str(folder / "a_grid.png"), grid)
    blank = np.full((480, 640), 200, np.uint8)  # no target in view
    cv2.imwrite(str(folder / "b_blank.png"), blank)
    fiber, fiber_truth = render(random_spec(np.random.default_rng(5), "clean", width=640, height=480))
    d = DaemonProc(tmp_path)
    d.hot.mkdir()
    d.extra_args = ["--camera", f"emulated:{folder}"]
    cal_file = d.state / "calibration.json"
    try:
        st = d.start()
        assert st["state"] == "idle" and st["camera"]["connected"] is True, st
        assert st["settings"]["calibration_path"] is None
        serial = st["camera"]["serial"]
        with Subscriber(d.pub, ["verdict", "state", "heartbeat", "calibration"]) as sub:
            wait_live(sub)
            # --- bad arguments are refused before anything moves (the real CLI)
            for args in (["calibrate"], ["calibrate", "--dot-spacing-um", "10", "--cladding-um", "125"],
                         ["calibrate", "--dot-spacing-um", "-1"], ["calibrate", "dot_spacing_um=10", "apply=yes"],
                         ["trigger", "--dot-spacing-um", "10"]):
                rc, r = _ctl_rc(d, *args)
                assert rc != 0, (args, r)
                if "error" in r:
                    assert r["error"]["code"] == "bad_argument", (args, r)
                else:
                    assert "bad_argument" in r["stderr"], (args, r)
            assert d.ctl({"cmd": "status"})["state"] == "idle"

            # --- the dot grid (served first): idle -> calibrating -> idle, file, history, topic, reply
            rc, r = _ctl_rc(d, "calibrate", "--dot-spacing-um", "10")
            assert rc == 0 and r["ok"], r
            assert abs(r["um_per_px"] / truth["um_per_px"] - 1) < 0.002, (r["um_per_px"], truth["um_per_px"])
            assert 0 < r["uncertainty_um_per_px"] < 0.002 * r["um_per_px"]
            assert 0.85 * truth["n_dots"] <= r["n_dots"] <= truth["n_dots"]
            assert r["method"] == "dot_grid" and r["applied"] is True
            assert r["source"]["kind"] == "camera" and r["source"]["serial"] == serial
            assert Path(r["calibration_file"]) == cal_file
            assert r["settings"]["calibration_path"] == str(cal_file)
            states, cals = _until_idle(sub)
            assert states == [("idle", "calibrating", "calibrate"), ("calibrating", "idle", "calibrated")]
            assert len(cals) == 1
            pub = cals[0]
            assert pub["schema"] == "dscope.calibration" and pub["ok"] is True
            assert pub["um_per_px"] == r["um_per_px"] and pub["n_dots"] == r["n_dots"]
            doc = load_calibration(cal_file)  # validates the schema
            assert doc["um_per_px"] == r["um_per_px"] and doc["method"] == "dot_grid" and doc["dot_spacing_um"] == 10.0
            assert abs(doc["um_per_px"] / truth["um_per_px"] - 1) < 0.002
            frame_png = Path(doc["image"])
            assert frame_png.parent == cal_file.parent and frame_png == Path(r["frame_path"])
            assert np.array_equal(cv2.imread(str(frame_png), cv2.IMREAD_UNCHANGED), grid)  # lossless
            with open(cal_file.parent / HISTORY_NAME, newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert len(rows) == 1
            assert float(rows[0]["um_per_px"]) == pytest.approx(r["um_per_px"], rel=1e-9)
            assert rows[0]["method"] == "dot_grid" and float(rows[0]["dot_spacing_um"]) == 10.0
            assert rows[0]["calibration_file"] == str(cal_file) and rows[0]["image"] == str(frame_png)

            # --- the next verdict uses the calibrated scale
            cv2.imwrite(str(d.hot / "after_cal.png"), fiber)
            v = _next(sub, lambda t, b: t == "verdict", timeout_s=60)
            assert v is not None
            fib = v[1]["result"]["fiber"]
            assert fib is not None, v[1]["result"]
            assert fib["scale_source"] == "calibration"
            assert fib["um_per_px"] == pytest.approx(r["um_per_px"], rel=1e-5)  # the document rounds
            states, _ = _until_idle(sub)  # inspecting -> reporting -> idle
            assert states[-1] == ("reporting", "idle", "finish")

            # --- a blank target: calibration_failed, back to idle (not fault), nothing overwritten
            rc, bad = _ctl_rc(d, "calibrate", "dot_spacing_um=10")
            assert rc == 1 and bad["ok"] is False and bad["error"]["code"] == "calibration_failed", bad
            assert np.array_equal(cv2.imread(bad["frame_path"], cv2.IMREAD_UNCHANGED), blank)
            states, cals = _until_idle(sub)
            assert states == [("idle", "calibrating", "calibrate"), ("calibrating", "idle", "abort")]
            assert len(cals) == 1 and cals[0]["ok"] is False and cals[0]["error"]["code"] == "calibration_failed"
            assert load_calibration(cal_file)["um_per_px"] == r["um_per_px"]
            with open(cal_file.parent / HISTORY_NAME, newline="") as fh:
                assert len(list(csv.DictReader(fh))) == 1
            st = d.ctl({"cmd": "status"})
            assert st["state"] == "idle" and st["error"] is None
            assert st["settings"]["calibration_path"] == str(cal_file)
            assert st["last_calibration"]["ok"] is False

            # --- a user cladding diameter still sets the scale; the applied calibration is cross-checked
            r2 = d.ctl({"cmd": "set_fiber", "type": "mm", "core_um": fiber_truth.core_um,
                        "cladding_um": fiber_truth.cladding_um})
            assert r2["ok"] and r2["settings"]["calibration_path"] == str(cal_file), r2
            assert abs(fiber_truth.um_per_px / r["um_per_px"] - 1) > 0.05  # the generator's fiber has another scale
            cv2.imwrite(str(d.hot / "user_cladding.png"), fiber)
            v = _next(sub, lambda t, b: t == "verdict", timeout_s=60)
            assert v is not None
            res = v[1]["result"]
            assert res["fiber"]["scale_source"] == "user_cladding"
            assert any(w.startswith("scale_disagreement") for w in res["warnings"]), res["warnings"]
        assert d.terminate() == 0
    finally:
        d.kill()


def test_calibrate_grab_timeout_faults_with_the_error_published(tmp_path):
    """A camera error while calibrating -> fault (error on the state topic); reset -> idle."""
    folder = tmp_path / "emu"
    folder.mkdir()
    grid, _ = make_dot_grid(width=640, height=480, spacing_um=10.0, um_per_px=0.5, seed=2)
    cv2.imwrite(str(folder / "grid.png"), grid)
    d = DaemonProc(tmp_path, daemon_overrides={"camera_timeout_s": 0.001})  # the emulator needs ~10 ms per frame
    d.hot.mkdir()
    d.extra_args = ["--camera", f"emulated:{folder}"]
    try:
        st = d.start()
        assert st["state"] == "idle" and st["camera"]["connected"] is True, st
        with Subscriber(d.pub, ["state", "heartbeat", "calibration"]) as sub:
            wait_live(sub)
            r = d.ctl({"cmd": "calibrate", "dot_spacing_um": 10.0}, timeout_s=60)
            assert r["ok"] is False and r["error"]["code"] == "grab_timeout", r
            seen = []
            while not seen or seen[-1]["new"] != "fault":
                msg = _next(sub, lambda t, b: t in ("state", "calibration"), timeout_s=30)
                assert msg is not None and msg[0] == "state", (msg, seen)  # no calibration message: nothing measured
                seen.append(msg[1])
            assert [(m["old"], m["new"]) for m in seen] == [("idle", "calibrating"), ("calibrating", "fault")]
            assert seen[-1]["error"]["code"] == "grab_timeout" and seen[-1]["error"]["message"]
            fault = d.ctl({"cmd": "status"})
            assert fault["state"] == "fault" and fault["error"]["code"] == "grab_timeout"
            assert fault["last_calibration"] is None
            assert not (d.state / "calibration.json").exists()
            assert d.ctl({"cmd": "reset"}) == {"ok": True, "state": "idle"}
        assert d.terminate() == 0
    finally:
        d.kill()
