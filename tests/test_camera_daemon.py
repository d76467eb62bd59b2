"""The real daemon subprocess driving pylon's camera emulator (``--camera emulated:FOLDER``).

``dscope ctl trigger`` -> one verdict per trigger on a real SUB socket, raw frame saved losslessly,
focus topic, removal -> fault published -> reconnect -> capturing again, calibrate.
Helpers (daemon subprocess with its own ports/folders, SUB collection) come from test_daemon_e2e.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dscope.ipc.client import Subscriber
from dscope.synth import random_spec, render

from test_daemon_e2e import REPO, DaemonProc, db_rows, wait_live  # noqa: E402  (pytest puts tests/ on sys.path)

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def _folder(tmp: Path, n: int = 3) -> tuple[Path, list[np.ndarray]]:
    """``n`` sharp end faces, then a badly defocused copy of the first (the last file served)."""
    d = tmp / "emu"
    d.mkdir()
    rng = np.random.default_rng(77)
    imgs = []
    for i in range(n):
        spec = random_spec(rng, "mixed", width=640, height=480)
        img, _ = render(spec)
        if i == 0:
            blurred, _ = render(dataclasses.replace(spec, blur_sigma_px=6.0))
        cv2.imwrite(str(d / f"frame_{i:02d}.png"), img)
        imgs.append(img)
    cv2.imwrite(str(d / f"frame_{n:02d}.png"), blurred)
    imgs.append(blurred)
    return d, imgs


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
    folder, imgs = _folder(tmp_path)
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

            # --- calibration capture
            r = _ctl(d, "calibrate")
            assert r["ok"], r
            cal = cv2.imread(r["path"], cv2.IMREAD_UNCHANGED)
            assert cal is not None and any(np.array_equal(cal, im) for im in imgs)
        rows = db_rows(d.state)
        assert len(rows) >= 5 and all(r["source_kind"] == "camera" for r in rows)
        assert {r["camera_serial"] for r in rows} == {serial}
        st = d.ctl({"cmd": "status"})
        assert st["state"] == "idle" and st["camera"]["connected"] is True
        assert d.terminate() == 0
    finally:
        d.kill()
