"""Detection / classification / measurement benchmark on generated end faces with ground truth.

Usage::

    python benchmarks/bench_detection.py [--n 70] [--seed 1] [--profile deep_inspection]
        [--geometry pipeline|truth] [--zones core,cladding,adhesive,contact] [--out FILE.json]

Images: ``dscope.synth.random_spec`` cycling through the scenarios ``mixed``,
``scratch``, ``pit``, ``chip``, ``crack``, ``contamination`` and ``clean``
(SM / MM / large-core fibers, both glass and defect polarities, noise, blur,
uneven light, ellipses, JPEG, as drawn by the generator).

``--geometry pipeline`` runs the lead's full pipeline (localization, scale,
zones, detect, characterize); ``--geometry truth`` runs detect + characterize
on the true geometry and scale (isolates this module).  The faithful DO2MR +
LEI baseline (:mod:`dscope.inspection.baseline`) always runs on the same
images and the same (true) zones.

Matching (documented rule): a detected region D and a truth defect T match
when ``|D & dilate(T, 2 px)| / min(|D|, |T|) >= 0.3``; pairs are assigned
one-to-one, best overlap first.  A detection overlapping an already matched
truth is a *fragment* (counted separately, not a false positive).  Truth
defects that are not *detectable* (CNR < 2 or narrower than 1 px) and
detections matching them are ignored by recall and precision.  Detections
matching nothing are false positives.  Targets are evaluated on core +
cladding (truth zone for recall, detected zone for precision).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dscope.config import load_config  # noqa: E402
from dscope.inspection.baseline import BaselineResult, baseline_detect  # noqa: E402
from dscope.inspection.classify import characterize  # noqa: E402
from dscope.inspection.detect import detect  # noqa: E402
from dscope.inspection.types import DEFECT_TYPES, FiberGeometry, Scale, ZoneMask  # noqa: E402
from dscope.synth import random_spec, render  # noqa: E402
from dscope.synth.spec import zones_for  # noqa: E402

SCENARIOS = ("mixed", "scratch", "pit", "chip", "crack", "contamination", "clean")
TARGET_ZONES = ("core", "cladding")
MATCH_TOL_PX = 2
MATCH_MIN_OVERLAP = 0.3
SCORE_BINS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)


# --------------------------------------------------------------------------------------------------
def truth_geometry(t) -> FiberGeometry:
    return FiberGeometry(
        center_px=tuple(t.center_px), cladding_radius_px=t.cladding_radius_px, cladding_ellipse=t.ellipse,
        core_radius_px=t.core_radius_px, core_visible=t.core_visible, glass_polarity=t.glass_polarity,
    )


def truth_zone_masks(t, shape, geo: FiberGeometry, names, margin_px: int = 8) -> list[ZoneMask]:
    """Zone masks from the true geometry (same zone table as the generator's truth)."""
    table = [z for z in zones_for(t.fiber_type, t.core_um, t.cladding_um) if z[0] in names]
    upp = t.um_per_px
    outer = max(o for _, _, o in table) / 2 / upp
    cx, cy = geo.center_px
    H, W = shape
    x0, y0 = max(int(cx - outer) - margin_px, 0), max(int(cy - outer) - margin_px, 0)
    x1, y1 = min(int(cx + outer) + margin_px + 1, W), min(int(cy + outer) + margin_px + 1, H)
    roi = (x0, y0, x1 - x0, y1 - y0)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = geo.normalized_radius(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(yy.shape)
    return [ZoneMask(n, i, o, i / 2 / upp, o / 2 / upp, (r >= i / 2 / upp) & (r < o / 2 / upp), roi)
            for n, i, o in table]


def contour_object(contour: np.ndarray):
    """Filled polygon of a contour as (x0, y0, mask)."""
    c = np.asarray(contour, np.int32).reshape(-1, 2)
    x0, y0 = c.min(0)
    x1, y1 = c.max(0)
    m = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(m, [c - (x0, y0)], 1)
    if len(c) < 3:
        m[c[:, 1] - y0, c[:, 0] - x0] = 1
    return int(x0), int(y0), m > 0


def label_objects(labels: np.ndarray, roi) -> dict[int, tuple[int, int, np.ndarray]]:
    from scipy import ndimage

    out = {}
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        out[k] = (roi[0] + sl[1].start, roi[1] + sl[0].start, labels[sl] == k)
    return out


def match(objs: list, truth_labels: np.ndarray, truth_ids: list[int]):
    """One-to-one matching; returns (pairs {det_index: truth_id}, fragments set, overlaps)."""
    H, W = truth_labels.shape
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MATCH_TOL_PX + 1,) * 2)
    t_area = np.bincount(truth_labels.ravel(), minlength=max(truth_ids, default=0) + 1)
    cands = []
    for i, (x0, y0, m) in enumerate(objs):
        pad = MATCH_TOL_PX
        xa, ya = max(x0 - pad, 0), max(y0 - pad, 0)
        xb, yb = min(x0 + m.shape[1] + pad, W), min(y0 + m.shape[0] + pad, H)
        tl = truth_labels[ya:yb, xa:xb]
        dm = np.zeros(tl.shape, bool)
        dm[y0 - ya:y0 - ya + m.shape[0], x0 - xa:x0 - xa + m.shape[1]] = m
        d_area = int(m.sum())
        for tid in np.unique(tl[tl > 0]):
            tm = cv2.dilate((tl == tid).astype(np.uint8), k) > 0
            inter = int(np.count_nonzero(tm & dm))
            score = inter / max(min(d_area, int(t_area[tid])), 1)
            if score >= MATCH_MIN_OVERLAP:
                cands.append((score, i, int(tid)))
    cands.sort(reverse=True)
    pairs, used_t, overl = {}, set(), defaultdict(set)
    for score, i, tid in cands:
        overl[i].add(tid)
        if i in pairs or tid in used_t:
            continue
        pairs[i] = tid
        used_t.add(tid)
    frags = {i for i in overl if i not in pairs}
    return pairs, frags, overl


# --------------------------------------------------------------------------------------------------
def make_pipeline_runner(profile: str, config=None):
    from dscope.inspection.pipeline import inspect_image  # noqa: F401  (fails until the pipeline is complete)
    from dscope.runner import RunSettings

    cache = {}

    def run(img, t, zones_names):
        key = t.fiber_type
        if key not in cache:
            cache[key] = RunSettings.create(config, profile=profile, fiber_type=t.fiber_type, zones=list(zones_names))
        settings = cache[key]
        res = inspect_image(img, settings.pipeline_params())
        return res.defects, res.timings_s, res.status

    return run


def evaluate(args) -> dict:
    cfg = load_config(args.config)
    prof = cfg.profile(args.profile)
    zones_names = tuple(args.zones.split(","))
    pipe = None
    if args.geometry == "pipeline":
        pipe = make_pipeline_runner(args.profile, cfg)
    truth_rec, det_rec, base_truth, base_det = [], [], [], []
    clean_fp, clean_fp_base, n_clean = 0, 0, 0
    times = defaultdict(list)
    errors = Counter()
    for i in range(args.n):
        scen = SCENARIOS[i % len(SCENARIOS)]
        spec = random_spec(np.random.default_rng([args.seed, i]), scen)
        img, t = render(spec)
        if img.dtype != np.uint8:
            img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        geo = truth_geometry(t)
        zones = truth_zone_masks(t, img.shape, geo, zones_names)
        t0 = time.perf_counter()
        if pipe is None:
            det = detect(img, geo, zones, prof.detection, 1.0 / t.um_per_px)
            t1 = time.perf_counter()
            defects = characterize(img, det, geo, zones, Scale(t.um_per_px, "um_per_px"), 1.0 / t.um_per_px,
                                   cfg.classification_for(args.profile))
            times["detect"].append(t1 - t0)
            times["characterize"].append(time.perf_counter() - t1)
        else:
            defects, tim, status = pipe(img, t, zones_names)
            for k, v in tim.items():
                times[k].append(v)
            if status == "ERROR":
                errors["pipeline_error"] += 1
        t2 = time.perf_counter()
        if args.no_baseline:
            base = BaselineResult(zones[0].roi_xywh, np.zeros(zones[0].mask.shape, np.int32), {})
        else:
            base = baseline_detect(img, zones, prof.detection.baseline)
        times["baseline"].append(time.perf_counter() - t2)

        truth_by_id = {d.id: d for d in t.defects}
        tids = sorted(truth_by_id)
        # ---- ours
        objs = [contour_object(d.contour_px) for d in defects]
        pairs, frags, overl = match(objs, t.labels, tids)
        matched_t = {tid: i for i, tid in pairs.items()}
        for d_i, d in enumerate(defects):
            tid = pairs.get(d_i)
            td = truth_by_id.get(tid) if tid else None
            counted = td is None or (td.detectable and td.zone in zones_names)
            status = "tp" if td is not None else ("fragment" if d_i in frags else "fp")
            det_rec.append(dict(image=i, scenario=scen, type=d.type, zone=d.zone, score=d.features.get("score", 0.0),
                                confidence=d.confidence, status=status, counted=counted and status != "fragment",
                                truth_type=td.type if td else None, truth_detectable=bool(td.detectable) if td else None,
                                features={k: v for k, v in d.features.items() if isinstance(v, (int, float, bool, str))},
                                evidence=dict(d.features.get("evidence", {})), cnr=d.cnr))
            if scen == "clean" and d.zone in TARGET_ZONES and status == "fp":
                clean_fp += 1
        for tid in tids:
            td = truth_by_id[tid]
            d = defects[matched_t[tid]] if tid in matched_t else None
            rec = dict(image=i, type=td.type, zone=td.zone, polarity=td.polarity, detectable=bool(td.detectable),
                       cnr=float(td.cnr), found=d is not None, pred=d.type if d else None)
            if d is not None:
                rec.update(width_true=td.width_um, width_det=d.width_um, diam_true=td.diameter_um,
                           diam_det=d.diameter_um, length_true=td.length_um, length_det=d.length_um)
            truth_rec.append(rec)
        # ---- baseline
        bobjs_d = label_objects(base.labels, base.roi_xywh)
        bkeys = sorted(bobjs_d)
        bobjs = [bobjs_d[k] for k in bkeys]
        bpairs, bfrags, _ = match(bobjs, t.labels, tids)
        geo_r = []
        for b_i, (x0, y0, m) in enumerate(bobjs):
            ys, xs = np.nonzero(m)
            r = float(geo.normalized_radius(np.array([[xs.mean() + x0, ys.mean() + y0]]))[0]) * t.um_per_px * 2
            zname = next((z.name for z in zones if z.inner_um <= r < z.outer_um), "outside")
            tid = bpairs.get(b_i)
            td = truth_by_id.get(tid) if tid else None
            counted = td is None or (td.detectable and td.zone in zones_names)
            status = "tp" if td is not None else ("fragment" if b_i in bfrags else "fp")
            base_det.append(dict(zone=zname, status=status, counted=counted and status != "fragment",
                                 type=base.classes[bkeys[b_i]]))
            if scen == "clean" and zname in TARGET_ZONES and status == "fp":
                clean_fp_base += 1
            geo_r.append(zname)
        bmatched = set(bpairs.values())
        for tid in tids:
            td = truth_by_id[tid]
            base_truth.append(dict(type=td.type, zone=td.zone, detectable=bool(td.detectable), found=tid in bmatched))
        n_clean += scen == "clean"
        if args.verbose:
            print(f"[{i}] {scen} {t.fiber_type} truth={len(tids)} ours={len(defects)} base={len(bobjs)}", flush=True)
    return summarize(args, truth_rec, det_rec, base_truth, base_det, clean_fp, clean_fp_base, n_clean, times, errors)


def _pr(truths, dets, zones):
    tr = [r for r in truths if r["detectable"] and r["zone"] in zones]
    dr = [r for r in dets if r["counted"] and r["zone"] in zones]
    rec = sum(r["found"] for r in tr) / len(tr) if tr else float("nan")
    prec = sum(r["status"] == "tp" for r in dr) / len(dr) if dr else float("nan")
    f1 = 2 * rec * prec / (rec + prec) if (rec + prec) > 0 else float("nan")
    return dict(recall=rec, precision=prec, f1=f1, n_truth=len(tr), n_det=len(dr))


def summarize(args, truth_rec, det_rec, base_truth, base_det, clean_fp, clean_fp_base, n_clean, times, errors):
    zones_names = tuple(args.zones.split(","))
    out: dict = dict(n_images=args.n, seed=args.seed, profile=args.profile, geometry=args.geometry,
                     zones=list(zones_names), n_clean_images=n_clean, errors=dict(errors))
    out["ours_core_cladding"] = _pr(truth_rec, det_rec, TARGET_ZONES)
    out["baseline_core_cladding"] = _pr(base_truth, base_det, TARGET_ZONES)
    out["ours_all_zones"] = _pr(truth_rec, det_rec, zones_names)
    out["baseline_all_zones"] = _pr(base_truth, base_det, zones_names)
    out["f1_gain_core_cladding"] = out["ours_core_cladding"]["f1"] - out["baseline_core_cladding"]["f1"]
    per = {}
    for c in DEFECT_TYPES:
        for z in zones_names:
            tr = [r for r in truth_rec if r["type"] == c and r["zone"] == z and r["detectable"]]
            dr = [r for r in det_rec if r["type"] == c and r["zone"] == z and r["counted"]]
            per[f"{c}/{z}"] = dict(
                recall=(sum(r["found"] for r in tr) / len(tr)) if tr else None, n_truth=len(tr),
                precision=(sum(r["status"] == "tp" and r["truth_type"] == c for r in dr) / len(dr)) if dr else None,
                n_pred=len(dr),
            )
    out["per_class_zone"] = per
    conf = {c: Counter() for c in DEFECT_TYPES}
    for r in truth_rec:
        if r["found"] and r["detectable"] and r["zone"] in TARGET_ZONES:
            conf[r["type"]][r["pred"]] += 1
    out["confusion_core_cladding"] = {c: {p: conf[c][p] for p in DEFECT_TYPES} for c in DEFECT_TYPES}
    n_m = sum(sum(v.values()) for v in conf.values())
    out["classification_accuracy"] = (sum(conf[c][c] for c in DEFECT_TYPES) / n_m) if n_m else float("nan")
    sizes = {}
    for c, key, rel in (("scratch", "width", False), ("crack", "width", False), ("pit", "diam", True),
                        ("chip", "diam", True), ("contamination", "diam", True)):
        errs = [abs(r[f"{key}_det"] - r[f"{key}_true"]) / (r[f"{key}_true"] if rel else 1.0)
                for r in truth_rec if r["found"] and r["detectable"] and r["type"] == c and r["pred"] == c
                and r.get(f"{key}_det") is not None and r.get(f"{key}_true")]
        sizes[f"{c}_{key}_{'rel' if rel else 'um'}_error"] = dict(
            median=float(np.median(errs)) if errs else None, p90=float(np.percentile(errs, 90)) if errs else None,
            n=len(errs))
    out["size_errors"] = sizes
    out["false_detections_per_clean_image_core_cladding"] = clean_fp / max(n_clean, 1)
    out["baseline_false_detections_per_clean_image_core_cladding"] = clean_fp_base / max(n_clean, 1)
    cal = []
    for lo, hi in zip(SCORE_BINS[:-1], SCORE_BINS[1:]):
        for key in ("score", "confidence"):
            pass
        rs = [r for r in det_rec if lo <= r["score"] < hi and r["status"] != "fragment"]
        cs = [r for r in det_rec if lo <= r["confidence"] < hi and r["status"] != "fragment"]
        cal.append(dict(bin=[lo, min(hi, 1.0)], n_score=len(rs),
                        real_share_by_score=(sum(r["status"] == "tp" for r in rs) / len(rs)) if rs else None,
                        n_confidence=len(cs),
                        real_share_by_confidence=(sum(r["status"] == "tp" for r in cs) / len(cs)) if cs else None))
    out["calibration"] = cal
    out["suggested_confidence_calibration"] = fit_calibration(det_rec)
    out["fragments"] = sum(r["status"] == "fragment" for r in det_rec)
    out["timing_ms_median"] = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    if args.records:
        out["records"] = dict(truth=truth_rec, detections=det_rec)
    return out


def fit_calibration(det_rec, n_knots: int = 6) -> list[list[float]]:
    """Isotonic (pool-adjacent-violators) fit of 'is real' on the raw score; knots for the config.

    The knots are the mean score and the real share of ``n_knots`` equal-count groups after
    pooling, anchored at (0, 0) and (1, last share); use them as ``classification.confidence_calibration``.
    """
    rs = sorted((r["score"], 1.0 if r["status"] == "tp" else 0.0) for r in det_rec if r["status"] != "fragment")
    if len(rs) < n_knots:
        return []
    groups = [[x, y, 1.0] for x, y in rs]  # score sum, real sum, count
    merged: list[list[float]] = []
    for g in groups:
        merged.append(g)
        while len(merged) > 1 and merged[-2][1] / merged[-2][2] > merged[-1][1] / merged[-1][2]:
            b = merged.pop()
            a = merged.pop()
            merged.append([a[0] + b[0], a[1] + b[1], a[2] + b[2]])
    pts = [(g[0] / g[2], g[1] / g[2], g[2]) for g in merged]
    # thin to about n_knots points by equal counts
    total = sum(p[2] for p in pts)
    knots, acc, cx, cy, cn = [], 0.0, 0.0, 0.0, 0.0
    for x, y, n in pts:
        cx += x * n
        cy += y * n
        cn += n
        acc += n
        if cn >= total / n_knots:
            knots.append([round(cx / cn, 3), round(cy / cn, 3)])
            cx = cy = cn = 0.0
    if cn:
        knots.append([round(cx / cn, 3), round(cy / cn, 3)])
    out = [[0.0, 0.0]] + [k for k in knots if 0.0 < k[0] < 1.0]
    out.append([1.0, max(k[1] for k in out)])
    clean = [out[0]]
    for k in out[1:]:
        if k[0] > clean[-1][0]:
            clean.append([k[0], max(k[1], clean[-1][1])])
    return clean


def _f(v):
    return "  -  " if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def print_report(o: dict) -> None:
    print(f"== detection benchmark: {o['n_images']} images (seed {o['seed']}), profile {o['profile']}, "
          f"geometry {o['geometry']}, zones {','.join(o['zones'])}, clean images {o['n_clean_images']}")
    for k in ("ours_core_cladding", "baseline_core_cladding", "ours_all_zones", "baseline_all_zones"):
        r = o[k]
        print(f"{k:26s} recall {_f(r['recall'])}  precision {_f(r['precision'])}  F1 {_f(r['f1'])}  "
              f"(truth {r['n_truth']}, det {r['n_det']})")
    print(f"F1 gain over DO2MR+LEI (core+cladding): {_f(o['f1_gain_core_cladding'])}")
    print(f"classification accuracy (core+cladding, matched): {_f(o['classification_accuracy'])}")
    print(f"false detections per clean image (core+cladding): ours {o['false_detections_per_clean_image_core_cladding']:.3f}"
          f"  baseline {o['baseline_false_detections_per_clean_image_core_cladding']:.3f}")
    print(f"fragments (extra pieces of matched truths): {o['fragments']}")
    print("per class / zone: recall (n truth) | class precision (n predicted)")
    for k, v in o["per_class_zone"].items():
        if v["n_truth"] or v["n_pred"]:
            print(f"  {k:24s} {_f(v['recall'])} ({v['n_truth']:3d}) | {_f(v['precision'])} ({v['n_pred']:3d})")
    print("confusion (rows truth, cols predicted), core+cladding:")
    print("  " + " " * 14 + "".join(f"{c[:8]:>9s}" for c in DEFECT_TYPES))
    for c, row in o["confusion_core_cladding"].items():
        print(f"  {c:14s}" + "".join(f"{row[p]:9d}" for p in DEFECT_TYPES))
    print("size errors (matched, correctly classified):")
    for k, v in o["size_errors"].items():
        print(f"  {k:34s} median {_f(v['median'])}  p90 {_f(v['p90'])}  n {v['n']}")
    print("calibration: bin -> share real (by raw score | by calibrated confidence)")
    for c in o["calibration"]:
        print(f"  [{c['bin'][0]:.2f},{c['bin'][1]:.2f}) score n={c['n_score']:4d} real={_f(c['real_share_by_score'])}"
              f" | confidence n={c['n_confidence']:4d} real={_f(c['real_share_by_confidence'])}")
    print(f"suggested classification.confidence_calibration: {o.get('suggested_confidence_calibration')}")
    print("median ms per image: " + ", ".join(f"{k} {v:.1f}" for k, v in o["timing_ms_median"].items()))


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=70, help="number of images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", default="deep_inspection")
    ap.add_argument("--config", default=None, help="configuration file (default: the shipped config/config.json)")
    ap.add_argument("--geometry", choices=("pipeline", "truth"), default="pipeline")
    ap.add_argument("--zones", default="core,cladding,adhesive,contact")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads")
    ap.add_argument("--out", default=None, help="write the report as JSON")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the DO2MR+LEI baseline (faster tuning runs)")
    ap.add_argument("--records", action="store_true", help="include every truth/detection record in --out")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    o = evaluate(args)
    print_report(o)
    if args.out:
        Path(args.out).write_text(json.dumps(o, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
