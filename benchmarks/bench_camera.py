"""Camera path speed on pylon's emulator: trigger -> verdict latency and sustained inspected frames/s.

Usage::

    python benchmarks/bench_camera.py [--images 8] [--frames 20] [--size 2048x1536] [--seed 5]
        [--profiles fast_scan,deep_inspection] [--threads 1] [--daemon] [--out FILE.json]

``--images`` synthetic end faces (``dscope.synth``, "mixed" scenario, default Basler
a2A2048 size) are written to a temporary folder which the emulator serves in name
order.  For each profile, ``--frames`` software triggers are run back to back, each
followed by the full inspection of the frame (``dscope.runner.inspect_array``, the
daemon's path without ZeroMQ/SQLite):

* latency = trigger issued -> result document ready (p50 / p95 / max, ms), split
  into grab (trigger -> frame in memory, incl. focus metric) and inspect;
* sustained rate = frames / wall time of the whole run (capture and inspection in
  sequence on one thread, as the daemon's single camera executor does).

With ``--daemon`` the same is measured through the real daemon subprocess
(``dscope daemon --camera emulated:FOLDER``, 1 worker): ``ctl trigger wait=true``
round trip (control request -> grab -> worker inspection -> SQLite -> verdict
published -> reply) and the arrival of the verdict on a SUB socket; the profile is
switched with ``ctl set_profile``.

The machine is shared: run it when the CPU is otherwise quiet and report the
figures with the core count (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYLON_CAMEMU", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dscope.config import load_config  # noqa: E402
from dscope.hardware.controller import create_controller  # noqa: E402
from dscope.runner import RunSettings, inspect_array  # noqa: E402
from dscope.synth import random_spec, render  # noqa: E402


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def run_profile(ctl, settings: RunSettings, frames: int) -> dict:
    grab_ms, inspect_ms, total_ms, statuses = [], [], [], {}
    t_start = time.perf_counter()
    for _ in range(frames):
        t0 = time.perf_counter()
        frame = ctl.trigger()
        t1 = time.perf_counter()
        doc = inspect_array(frame.image, settings, image_info={"path": None, "sha256": None})
        t2 = time.perf_counter()
        grab_ms.append((t1 - t0) * 1e3)
        inspect_ms.append((t2 - t1) * 1e3)
        total_ms.append((t2 - t0) * 1e3)
        statuses[doc["status"]] = statuses.get(doc["status"], 0) + 1
    wall = time.perf_counter() - t_start
    return {
        "frames": frames,
        "latency_ms": {"p50": _pct(total_ms, 50), "p95": _pct(total_ms, 95), "max": max(total_ms)},
        "grab_ms": {"p50": _pct(grab_ms, 50), "p95": _pct(grab_ms, 95)},
        "inspect_ms": {"p50": _pct(inspect_ms, 50), "p95": _pct(inspect_ms, 95)},
        "sustained_fps": frames / wall,
        "statuses": statuses,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_daemon(folder: str, profiles: list[str], frames: int, report: dict) -> None:
    """Trigger -> verdict through the real daemon (control REQ round trip and SUB arrival)."""
    from dscope.ipc.client import ControlClient, Subscriber

    repo = Path(__file__).resolve().parents[1]
    tmp = Path(folder).parent
    cfg = json.loads((repo / "config" / "config.json").read_text())
    cfg["daemon"] = {"workers": 1, "heartbeat_interval_s": 0.5, "daemon_id": "bench-camera",
                     "fiber_type": cfg["default_fiber_type"], "image_timeout_s": 120.0}
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    pub, ctl = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dscope", "daemon", "--config", str(cfg_path), "--state-dir", str(tmp / "state"),
         "--pub", pub, "--control", ctl, "--camera", f"emulated:{folder}"],
        stdout=subprocess.DEVNULL, stderr=log, cwd=str(repo),
    )
    try:
        with ControlClient(ctl, timeout_s=120) as c, Subscriber(pub, ["verdict", "heartbeat"]) as sub:
            c.wait_ready(60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = sub.recv(1.0)
                if msg and msg[0] == "heartbeat" and msg[1].get("workers_idle", 0) >= 1:
                    break
            for prof in profiles:
                r = c.request({"cmd": "set_profile", "profile": prof})
                if not r.get("ok"):
                    raise SystemExit(f"set_profile {prof}: {r}")
                c.request({"cmd": "trigger", "wait": True})  # warm-up
                while sub.recv(0.2) is not None:
                    pass
                rtt, sub_ms, statuses = [], [], {}
                t_start = time.perf_counter()
                for _ in range(frames):
                    t0 = time.perf_counter()
                    r = c.request({"cmd": "trigger", "wait": True})
                    t1 = time.perf_counter()
                    if not r.get("ok"):
                        raise SystemExit(f"trigger failed: {r}")
                    rtt.append((t1 - t0) * 1e3)
                    vid = r["verdict"]["verdict_id"]
                    while True:
                        msg = sub.recv(10.0)
                        if msg is None:
                            raise SystemExit("verdict not published")
                        if msg[0] == "verdict" and msg[1]["verdict_id"] == vid:
                            sub_ms.append((time.perf_counter() - t0) * 1e3)
                            break
                    st = r["verdict"]["status"]
                    statuses[st] = statuses.get(st, 0) + 1
                wall = time.perf_counter() - t_start
                res = {
                    "frames": frames,
                    "reply_latency_ms": {"p50": _pct(rtt, 50), "p95": _pct(rtt, 95), "max": max(rtt)},
                    "sub_latency_ms": {"p50": _pct(sub_ms, 50), "p95": _pct(sub_ms, 95)},
                    "sustained_fps": frames / wall,
                    "statuses": statuses,
                }
                report.setdefault("daemon", {})[prof] = res
                print(
                    f"daemon {prof:16s} ctl trigger wait=true p50 {res['reply_latency_ms']['p50']:7.1f} ms"
                    f"  p95 {res['reply_latency_ms']['p95']:7.1f} ms  (SUB verdict p50 {res['sub_latency_ms']['p50']:7.1f} ms)"
                    f"  sustained {res['sustained_fps']:5.2f} frames/s  {statuses}"
                )
            c.request({"cmd": "shutdown"})
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="distinct synthetic images served by the emulator")
    ap.add_argument("--frames", type=int, default=20, help="triggers per profile")
    ap.add_argument("--size", default="2048x1536", help="WxH of the synthetic frames")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--profiles", default="fast_scan,deep_inspection")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (0 = OpenCV default)")
    ap.add_argument("--daemon", action="store_true", help="also measure through the real daemon subprocess")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.images < 1 or args.frames < 1:
        ap.error("--images and --frames must be >= 1")
    w, h = (int(v) for v in args.size.lower().split("x"))
    cv2.setNumThreads(args.threads)
    config = load_config()
    rng = np.random.default_rng(args.seed)
    report = {"size": [w, h], "images": args.images, "cpu_count": os.cpu_count(), "threads": args.threads,
              "profiles": {}}
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as tmp_root:
        tmp = os.path.join(tmp_root, "frames")
        os.mkdir(tmp)
        for i in range(args.images):
            img, _ = render(random_spec(rng, "mixed", width=w, height=h))
            cv2.imwrite(os.path.join(tmp, f"img_{i:04d}.png"), img)
        ctl = create_controller(f"emulated:{tmp}", config, on_frame=lambda f: None, on_fault=print,
                                on_recovered=print, on_focus=lambda d: None)
        ctl.start()
        try:
            ctl.trigger()  # warm-up (first buffer allocation)
            for prof in profiles:
                settings = RunSettings.create(config, profile=prof, fiber_type=config.default_fiber_type)
                inspect_array(ctl.trigger().image, settings, image_info={"path": None, "sha256": None})  # warm-up
                r = run_profile(ctl, settings, args.frames)
                report["profiles"][prof] = r
                print(
                    f"{prof:16s} trigger->verdict p50 {r['latency_ms']['p50']:7.1f} ms  p95 {r['latency_ms']['p95']:7.1f} ms"
                    f"  (grab p50 {r['grab_ms']['p50']:5.1f} ms, inspect p50 {r['inspect_ms']['p50']:7.1f} ms)"
                    f"  sustained {r['sustained_fps']:5.2f} frames/s  {r['statuses']}"
                )
        finally:
            ctl.stop()
        if args.daemon:
            run_daemon(tmp, profiles, args.frames, report)
    print(f"{w}x{h}, {args.images} images, cv2 threads {args.threads}, {os.cpu_count()} CPUs (shared)")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
