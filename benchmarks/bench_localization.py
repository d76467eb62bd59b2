"""Localization and calibration benchmark on generated images with known geometry.

Usage::

    .venv/bin/python benchmarks/bench_localization.py [--per-condition N] [--no-fiber N] [--seed S]
        [--width W --height H] [--profiles fast_scan,deep_inspection] [--dot-grids N] [--cv-threads N] [--out FILE.json]

Images come from :func:`dscope.synth.random_spec` with ``scenario="localization"``
(one hard condition each: small/large fiber, off-centre, partly outside, ellipse,
analog pixels, low contrast, bright/dark glass, blur, noise, JPEG, black borders,
uneven illumination, invisible core, particles on the edge), drawn until every
condition has ``--per-condition`` images, plus ``--no-fiber`` fiber-free frames
(blank ferrule, black, white, noise) and ``--dot-grids`` stage-micrometer grids.

Reported per condition and overall, per profile: median / p95 centre error (px),
cladding radius relative error median / p95 (%), core radius relative error
median (% , images with a visible core found), share of images within 1 % of
the cladding radius, share localized among images with >= 80 % of the fiber in
frame, false localizations on fiber-free images, time per image (ms).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dscope.config import default_config_path, strip_comments  # noqa: E402
from dscope.errors import DScopeError  # noqa: E402
from dscope.inspection.calibration import CalibrationParams, calibrate_dot_grid  # noqa: E402
from dscope.inspection.localize import LocalizationParams, localize_fiber  # noqa: E402
from dscope.synth import LOCALIZATION_CONDITIONS, make_dot_grid, random_spec, render  # noqa: E402


def _load_sections(path: Path, profiles: list[str]):
    raw = strip_comments(json.loads(path.read_text(encoding="utf-8")))
    loc = {p: LocalizationParams.model_validate(raw["profiles"][p]["localization"]) for p in profiles}
    cal = CalibrationParams.model_validate(raw["calibration"])
    return loc, cal


def _specs(seed: int, per_condition: int, n_no_fiber: int, width: int, height: int):
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = defaultdict(int)
    out = []
    guard = 0
    while min((counts[c] for c in LOCALIZATION_CONDITIONS), default=0) < per_condition and guard < 100 * per_condition * len(LOCALIZATION_CONDITIONS):
        guard += 1
        s = random_spec(rng, "localization", width=width, height=height)
        cond = s.tags[-1]
        if counts[cond] >= per_condition:
            continue
        counts[cond] += 1
        out.append((cond, s))
    kinds = ("blank", "black", "white", "noise")
    for i in range(n_no_fiber):
        s = random_spec(rng, "no_fiber", width=width, height=height, no_fiber_kind=kinds[i % len(kinds)])
        out.append(("no_fiber:" + s.no_fiber_kind, s))
    return out


def _pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def _summarise(rows: list[dict]) -> dict:
    fib = [r for r in rows if r["has_fiber"]]
    ok = [r for r in fib if r["localized"]]
    ce = [r["center_err_px"] for r in ok]
    re = [abs(r["radius_rel_err"]) * 100 for r in ok]
    core = [abs(r["core_rel_err"]) * 100 for r in ok if r.get("core_rel_err") is not None]
    in80 = [r for r in fib if r["in_frame_fraction"] >= 0.8]
    nf = [r for r in rows if not r["has_fiber"]]
    return {
        "n": len(rows),
        "n_fiber": len(fib),
        "center_err_px_median": _pct(ce, 50),
        "center_err_px_p95": _pct(ce, 95),
        "radius_rel_err_pct_median": _pct(re, 50),
        "radius_rel_err_pct_p95": _pct(re, 95),
        "core_rel_err_pct_median": _pct(core, 50),
        "n_core_found": len(core),
        "within_1pct_share": (sum(1 for v in re if v <= 1.0) / len(fib)) if fib else float("nan"),
        "localized_share_in_frame_80": (sum(1 for r in in80 if r["localized"]) / len(in80)) if in80 else float("nan"),
        "n_in_frame_80": len(in80),
        "false_localizations": sum(1 for r in nf if r["localized"]),
        "n_no_fiber": len(nf),
        "time_ms_median": _pct([r["time_ms"] for r in rows], 50),
        "time_ms_p95": _pct([r["time_ms"] for r in rows], 95),
        "cpu_ms_median": _pct([r["cpu_ms"] for r in rows], 50),
    }


def _run_one(img, truth, params, spec):
    ratio = (truth.core_um / truth.cladding_um) if truth.has_fiber else None
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        g = localize_fiber(img, params, core_to_cladding_ratio=ratio, graded_index=spec.graded_index)
        err = None
    except DScopeError as exc:
        g, err = None, exc.code
    dt = (time.perf_counter() - t0) * 1e3
    cpu = (time.process_time() - c0) * 1e3
    row = {"has_fiber": truth.has_fiber, "localized": g is not None, "error": err, "time_ms": dt, "cpu_ms": cpu,
           "in_frame_fraction": truth.in_frame_fraction}
    if g is not None and truth.has_fiber:
        row["center_err_px"] = math.hypot(g.center_px[0] - truth.center_px[0], g.center_px[1] - truth.center_px[1])
        row["radius_rel_err"] = (g.cladding_radius_px - truth.cladding_radius_px) / truth.cladding_radius_px
        row["quality"] = g.quality
        if g.core_radius_px is not None and truth.core_visible and truth.core_radius_px:
            row["core_rel_err"] = (g.core_radius_px - truth.core_radius_px) / truth.core_radius_px
        row["core_visible"] = g.core_visible
        row["core_visible_truth"] = truth.core_visible
    return row


def _fmt(v, spec=".3f"):
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _print_table(title: str, summaries: dict[str, dict]):
    print(f"\n== {title}")
    hdr = f"{'condition':24s} {'n':>4s} {'ce_med':>7s} {'ce_p95':>7s} {'r%_med':>7s} {'r%_p95':>7s} {'core%':>7s} {'<=1%':>6s} {'loc80':>6s} {'falseL':>6s} {'ms_med':>7s} {'ms_p95':>7s} {'cpu_ms':>7s}"
    print(hdr)
    for k, s in summaries.items():
        print(
            f"{k:24s} {s['n']:4d} {_fmt(s['center_err_px_median'])!s:>7s} {_fmt(s['center_err_px_p95'])!s:>7s} "
            f"{_fmt(s['radius_rel_err_pct_median'])!s:>7s} {_fmt(s['radius_rel_err_pct_p95'])!s:>7s} "
            f"{_fmt(s['core_rel_err_pct_median'], '.2f')!s:>7s} {_fmt(s['within_1pct_share'], '.2f')!s:>6s} "
            f"{_fmt(s['localized_share_in_frame_80'], '.2f')!s:>6s} {s['false_localizations']:>3d}/{s['n_no_fiber']:<2d} "
            f"{_fmt(s['time_ms_median'], '.1f')!s:>7s} {_fmt(s['time_ms_p95'], '.1f')!s:>7s} {_fmt(s['cpu_ms_median'], '.1f')!s:>7s}"
        )


def bench_sizes(loc: dict, sizes: list[tuple[int, int]], n: int, seed: int) -> dict:
    """Time per image (best of 3 runs: wall ms and CPU ms) for each profile and image size on clean random fibers."""
    rng = np.random.default_rng(seed)
    out = {}
    for w, h in sizes:
        imgs = [render(random_spec(rng, "clean", width=w, height=h))[0] for _ in range(n)]
        for p, params in loc.items():
            best, best_cpu = [], []
            for img in imgs:
                ts, cs = [], []
                for _ in range(3):
                    t0, c0 = time.perf_counter(), time.process_time()
                    try:
                        localize_fiber(img, params)
                    except DScopeError:
                        pass
                    ts.append((time.perf_counter() - t0) * 1e3)
                    cs.append((time.process_time() - c0) * 1e3)
                best.append(min(ts))
                best_cpu.append(min(cs))
            out[f"{p} {w}x{h}"] = {"median_ms": _pct(best, 50), "max_ms": float(max(best)),
                                   "cpu_median_ms": _pct(best_cpu, 50), "cpu_max_ms": float(max(best_cpu))}
    return out


def bench_calibration(cal: CalibrationParams, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    errs, times, fails = [], [], 0
    for i in range(n):
        upp = float(rng.uniform(0.15, 1.2))
        spacing_um = float(rng.choice([10.0, 20.0, 50.0]))
        if spacing_um / upp > 120 or spacing_um / upp < 8:
            spacing_um = 12.0 * upp * float(rng.uniform(1, 5))
        img, t = make_dot_grid(
            width=1280, height=960, spacing_um=spacing_um, um_per_px=upp, rotation_deg=float(rng.uniform(-45, 45)),
            n_missing=int(rng.integers(0, 12)), n_extra=int(rng.integers(0, 8)), noise_sigma=float(rng.uniform(1, 6)),
            blur_sigma_px=float(rng.uniform(0.5, 1.5)), offset_px=(float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20))),
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        t0 = time.perf_counter()
        try:
            res = calibrate_dot_grid(img, spacing_um, cal)
        except DScopeError:
            fails += 1
            continue
        times.append((time.perf_counter() - t0) * 1e3)
        errs.append(abs(res.um_per_px - t["um_per_px"]) / t["um_per_px"] * 100)
    return {
        "n": n, "failures": fails,
        "rel_err_pct_median": _pct(errs, 50), "rel_err_pct_max": float(max(errs)) if errs else float("nan"),
        "time_ms_median": _pct(times, 50),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-condition", type=int, default=6, help="images per localization condition")
    ap.add_argument("--no-fiber", type=int, default=24, help="fiber-free frames")
    ap.add_argument("--dot-grids", type=int, default=12, help="dot-grid calibration images")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1536)
    ap.add_argument("--profiles", default="fast_scan,deep_inspection")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--timing-sizes", default="640x480,1280x960,2048x1536", help="image sizes of the timing sweep ('' = off)")
    ap.add_argument("--timing-images", type=int, default=4, help="images per size in the timing sweep")
    ap.add_argument("--cv-threads", type=int, default=1, help="cv2.setNumThreads (the fast_scan budget is for one core)")
    ap.add_argument("--out", type=Path, default=None, help="write all figures as JSON")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.cv_threads)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    loc, cal = _load_sections(args.config or default_config_path(), profiles)
    specs = _specs(args.seed, args.per_condition, args.no_fiber, args.width, args.height)
    rows: dict[str, list[dict]] = {p: [] for p in profiles}
    for cond, spec in specs:
        img, truth = render(spec)
        for p in profiles:
            r = _run_one(img, truth, loc[p], spec)
            r["condition"] = cond
            r["seed"] = spec.seed
            rows[p].append(r)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "profiles": {}}
    for p in profiles:
        by: dict[str, list[dict]] = defaultdict(list)
        for r in rows[p]:
            by[r["condition"].split(":")[0] if r["condition"].startswith("no_fiber") else r["condition"]].append(r)
        summ = {k: _summarise(v) for k, v in sorted(by.items())}
        summ["OVERALL"] = _summarise(rows[p])
        _print_table(f"profile {p} ({args.width}x{args.height})", summ)
        fails = [r for r in rows[p] if r["has_fiber"] and (not r["localized"] or abs(r["radius_rel_err"]) > 0.01)]
        for r in fails[:20]:
            print(f"   miss: {r['condition']} seed={r['seed']} in_frame={r['in_frame_fraction']:.2f} err={r['error']} "
                  f"ce={_fmt(r.get('center_err_px'))} re%={_fmt(r.get('radius_rel_err', float('nan')) * 100)}")
        report["profiles"][p] = {"summary": summ, "rows": rows[p]}
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.timing_sizes.split(",") if s.strip()]
    if sizes and args.timing_images > 0:
        t = bench_sizes(loc, sizes, args.timing_images, args.seed + 2)
        print(f"\n== time per image (best of 3, clean fibers, OpenCV threads {cv2.getNumThreads()})")
        for k, v in t.items():
            print(f"{k:32s} wall median {v['median_ms']:7.1f}  max {v['max_ms']:7.1f}   CPU median {v['cpu_median_ms']:7.1f}  max {v['cpu_max_ms']:7.1f}")
        report["timing"] = t
    if args.dot_grids > 0:
        c = bench_calibration(cal, args.dot_grids, args.seed + 1)
        print(f"\n== calibration on {c['n']} dot grids: failures {c['failures']}, |rel err| median {_fmt(c['rel_err_pct_median'], '.4f')} %, "
              f"max {_fmt(c['rel_err_pct_max'], '.4f')} %, {_fmt(c['time_ms_median'], '.1f')} ms")
        report["calibration"] = c
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
