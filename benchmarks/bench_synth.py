"""Render-time benchmark of dscope.synth.

Usage::

    .venv/bin/python benchmarks/bench_synth.py --n 10 [--width 2048 --height 1536] [--scenario mixed ...]

Prints per-scenario median / p95 / max wall render time (ms), the median CPU
time (process time, less sensitive to other load on a shared machine) and the
mean number of defects placed and dropped.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dscope.synth import SCENARIOS, render, scenario_specs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="images per scenario (default 10)")
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = ap.parse_args(argv)
    print(f"{'scenario':<14} {'n':>3} {'median_ms':>9} {'p95_ms':>8} {'max_ms':>8} {'cpu_med':>8} "
          f"{'defects':>8} {'dropped':>8}")
    all_ms = []
    for scen in args.scenario:
        ms, cpu, nd, ndrop = [], [], [], []
        for spec in scenario_specs(args.seed, args.n, scen, width=args.width, height=args.height):
            t0, c0 = time.perf_counter(), time.process_time()
            _, truth = render(spec)
            ms.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            nd.append(len(truth.defects))
            ndrop.append(truth.dropped_defects)
        all_ms += ms
        print(f"{scen:<14} {len(ms):>3} {np.median(ms):>9.1f} {np.percentile(ms, 95):>8.1f} {max(ms):>8.1f} "
              f"{np.median(cpu):>8.1f} {np.mean(nd):>8.2f} {np.mean(ndrop):>8.2f}")
    print(f"{'ALL':<14} {len(all_ms):>3} {np.median(all_ms):>9.1f} {np.percentile(all_ms, 95):>8.1f} "
          f"{max(all_ms):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
