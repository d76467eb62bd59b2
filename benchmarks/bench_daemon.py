"""Daemon burst benchmark (not a test): drop N images into the hot folder at once and measure.

Starts the real daemon (``python -m dscope daemon``) on free loopback ports with
a temporary hot folder and state dir, subscribes to ``verdict``, drops the
images as fast as possible (write in place / copy / move in, round robin), and
reports:

* throughput (images/s, first drop to last verdict),
* latency from file close (or rename) to verdict publish (the envelope's ``time``), p50/p95/max,
* peak RSS (VmHWM) of the daemon process and of its workers,
* lost and duplicated verdicts (must be 0/0), ``seq`` gaps, database rows.

Usage::

    .venv/bin/python benchmarks/bench_daemon.py --images 500 --workers 2
    .venv/bin/python benchmarks/bench_daemon.py --images 50 --rate 5   # unqueued latency
    .venv/bin/python benchmarks/bench_daemon.py --images 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dscope.ipc.client import ControlClient, Subscriber  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_sources(folder: Path, n: int, width: int, height: int, seed: int) -> list[Path]:
    import cv2

    from dscope.synth import random_spec, render

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img, _ = render(random_spec(rng, "mixed", width=width, height=height))
        p = folder / f"src{i:04d}.png"
        cv2.imwrite(str(p), img)
        out.append(p)
    return out


def rss_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500, help="images dropped in one burst (default 500)")
    ap.add_argument("--distinct", type=int, default=40, help="distinct synthetic images rendered (reused round robin)")
    ap.add_argument("--workers", type=int, default=2, help="daemon worker processes (default 2)")
    ap.add_argument("--size", default="640x480", help="image size WxH (default 640x480)")
    ap.add_argument("--profile", default="fast_scan", help="processing profile (default fast_scan)")
    ap.add_argument("--fiber-type", default="sm-pc", help="explicit fiber type, so images are graded (default sm-pc)")
    ap.add_argument("--style", choices=["mixed", "inplace", "copy", "move"], default="mixed")
    ap.add_argument("--rate", type=float, default=0.0, help="drop at this many images/s (default 0 = one burst)")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="dscope-bench-daemon-"))
    hot, state, src_dir, outside = tmp / "hot", tmp / "state", tmp / "src", tmp / "outside"
    for d in (hot, src_dir, outside):
        d.mkdir()
    print(f"rendering {args.distinct} distinct {width}x{height} images ...", flush=True)
    sources = render_sources(src_dir, args.distinct, width, height, seed=2026)
    payloads = [p.read_bytes() for p in sources]

    cfg = json.loads((REPO / "config" / "config.json").read_text())
    cfg["daemon"] = {
        "workers": args.workers,
        "profile": args.profile,
        "fiber_type": args.fiber_type,
        "heartbeat_interval_s": 0.5,
        "stability_interval_s": 0.1,
        "daemon_id": "bench",
        "image_timeout_s": 120.0,
        "pub_sndhwm": 100000,
    }
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    pub, ctl = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dscope", "daemon", "--config", str(cfg_path), "--hot-folder", str(hot),
         "--state-dir", str(state), "--pub", pub, "--control", ctl],
        stdout=subprocess.DEVNULL, stderr=log, cwd=str(REPO),
    )
    result: dict = {"images": args.images, "workers": args.workers, "size": args.size, "profile": args.profile,
                    "fiber_type": args.fiber_type, "style": args.style, "rate": args.rate or "burst", "cpus": os.cpu_count()}
    try:
        with ControlClient(ctl, timeout_s=5) as c:
            c.wait_ready(60)
        sub = Subscriber(pub, ["verdict", "heartbeat"])
        # wait for a heartbeat (subscription live) and for every worker to be ready
        deadline = time.monotonic() + 120
        live = False
        while time.monotonic() < deadline:
            msg = sub.recv(1.0)
            if msg and msg[0] == "heartbeat":
                live = True
                if msg[1].get("workers_idle", 0) >= args.workers:
                    break
        if not live:
            raise SystemExit("no heartbeat from the daemon")
        hwm = {"daemon": 0, "workers": 0}
        sampling = threading.Event()
        sampling.set()

        def sample():
            while sampling.is_set():
                hwm["daemon"] = max(hwm["daemon"], rss_hwm_kb(proc.pid) or 0)
                kids = [k for k in children(proc.pid) if k]
                hwm["workers"] = max(hwm["workers"], sum(rss_hwm_kb(k) or 0 for k in kids))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        styles = ["inplace", "copy", "move"] if args.style == "mixed" else [args.style]
        closed: dict[str, float] = {}
        print(f"dropping {args.images} images ({args.style}) ...", flush=True)
        t_start = time.time()
        for i in range(args.images):
            name = f"img{i:05d}.png"
            data = payloads[i % len(payloads)]
            style = styles[i % len(styles)]
            if style == "inplace":
                with open(hot / name, "wb") as fh:
                    fh.write(data)
            elif style == "copy":
                shutil.copyfile(sources[i % len(sources)], hot / name)
            else:
                (outside / name).write_bytes(data)
                os.rename(outside / name, hot / name)
            closed[str(hot / name)] = time.time()
            if args.rate > 0:
                time.sleep(max(0.0, t_start + (i + 1) / args.rate - time.time()))
        t_dropped = time.time()

        verdicts: list[dict] = []
        received_at: list[float] = []
        deadline = time.monotonic() + args.timeout
        quiet_since = time.monotonic()
        while len(verdicts) < args.images and time.monotonic() < deadline:
            msg = sub.recv(1.0)
            if msg is None:
                if time.monotonic() - quiet_since > 120:
                    break
                continue
            if msg[0] == "verdict":
                verdicts.append(msg[1])
                received_at.append(time.time())
                quiet_since = time.monotonic()
        # a short grace period to catch duplicates (heartbeats keep coming: bound it by time)
        grace_end = time.monotonic() + 2.0
        while (left := grace_end - time.monotonic()) > 0:
            msg = sub.recv(left)
            if msg is not None and msg[0] == "verdict":
                verdicts.append(msg[1])
        sampling.clear()
        sampler.join(2)

        names = [v["source"]["path"] for v in verdicts]
        seen = set(names)
        lost = len(set(closed) - seen)
        duplicated = len(names) - len(seen)
        lat = np.array([v["time"] - closed[v["source"]["path"]] for v in verdicts if v["source"]["path"] in closed])
        def pct(key):
            vals = np.array([v["daemon_timings_s"][key] for v in verdicts if key in v.get("daemon_timings_s", {})])
            if not vals.size:
                return {}
            return {"p50": round(float(np.percentile(vals, 50)), 4), "p95": round(float(np.percentile(vals, 95)), 4)}

        statuses: dict[str, int] = {}
        for v in verdicts:
            statuses[v["status"]] = statuses.get(v["status"], 0) + 1
        t_last = max(v["time"] for v in verdicts) if verdicts else float("nan")
        result.update(
            {
                "verdicts": len(verdicts),
                "lost": lost,
                "duplicated": duplicated,
                "seq_gaps": int(sub.gaps.lost["verdict"]),
                "statuses": statuses,
                "drop_s": round(t_dropped - t_start, 3),
                "wall_s": round(t_last - t_start, 3),
                "throughput_img_per_s": round(len(seen) / (t_last - t_start), 2) if verdicts else 0.0,
                "latency_close_to_publish_s": {
                    "p50": round(float(np.percentile(lat, 50)), 3),
                    "p95": round(float(np.percentile(lat, 95)), 3),
                    "max": round(float(lat.max()), 3),
                    "min": round(float(lat.min()), 3),
                } if lat.size else {},
                "daemon_queue_wait_s": pct("queued"),
                "daemon_inspect_s": pct("inspect"),
                "peak_rss_mb": {"daemon": round(hwm["daemon"] / 1024, 1),
                                "workers_total": round(hwm["workers"] / 1024, 1)},
            }
        )
        sub.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                result["exit_code"] = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                result["exit_code"] = "killed"
        log.close()
    conn = sqlite3.connect(state / "results.sqlite3")
    result["db_rows"] = conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    result["db_distinct_paths"] = conn.execute("SELECT COUNT(DISTINCT source_path) FROM verdicts").fetchone()[0]
    conn.close()
    result["left_in_hot_folder"] = sum(1 for p in hot.iterdir() if p.is_file())

    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    ok = result.get("lost") == 0 and result.get("duplicated") == 0 and result["db_rows"] == args.images
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
