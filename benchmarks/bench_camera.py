"""Camera path speed on pylon's emulator: trigger -> verdict latency and sustained inspected frames/s.

Usage::

    python benchmarks/bench_camera.py [--images 8] [--frames 20] [--size 2048x1536] [--seed 5]
        [--profiles fast_scan,deep_inspection] [--threads 1] [--out FILE.json]

``--images`` synthetic end faces (``dscope.synth``, "mixed" scenario, default Basler
a2A2048 size) are written to a temporary folder which the emulator serves in name
order.  For each profile, ``--frames`` software triggers are run back to back, each
followed by the full inspection of the frame (``dscope.runner.inspect_array``, the
daemon's path without ZeroMQ/SQLite):

* latency = trigger issued -> result document ready (p50 / p95 / max, ms), split
  into grab (trigger -> frame in memory, incl. focus metric) and inspect;
* sustained rate = frames / wall time of the whole run (capture and inspection in
  sequence on one thread, as the daemon's single camera executor does).

The machine is shared: run it when the CPU is otherwise quiet and report the
figures with the core count (printed).
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8, help="distinct synthetic images served by the emulator")
    ap.add_argument("--frames", type=int, default=20, help="triggers per profile")
    ap.add_argument("--size", default="2048x1536", help="WxH of the synthetic frames")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--profiles", default="fast_scan,deep_inspection")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (0 = OpenCV default)")
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
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as tmp:
        for i in range(args.images):
            img, _ = render(random_spec(rng, "mixed", width=w, height=h))
            cv2.imwrite(os.path.join(tmp, f"img_{i:04d}.png"), img)
        ctl = create_controller(f"emulated:{tmp}", config, on_frame=lambda f: None, on_fault=print,
                                on_recovered=print, on_focus=lambda d: None)
        ctl.start()
        try:
            ctl.trigger()  # warm-up (first buffer allocation)
            for prof in [p.strip() for p in args.profiles.split(",") if p.strip()]:
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
    print(f"{w}x{h}, {args.images} images, cv2 threads {args.threads}, {os.cpu_count()} CPUs (shared)")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
