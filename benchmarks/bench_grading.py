"""End-to-end grading benchmark: pipeline verdict vs the verdict of the ground truth.

For each generated image (``dscope.synth``, seeded, SM/MM/large-core mix):

* **truth verdict**: :func:`dscope.inspection.grading.grade` applied to Defect
  objects built from the generator's ``DefectTruth`` (type, centroid zone,
  zones touched, width_um, diameter_um) with the fiber type's rule set and a
  known scale.  Only defects marked ``detectable`` by the generator (CNR >= 2
  and width >= 1 px) count: an invisible defect cannot be asked of any
  detector.  Images without a fiber have the truth verdict ERROR.
* **pipeline verdict**: the real pipeline through ``dscope.runner.inspect_array``
  with ``--fiber-type`` set to the image's fiber type (so the scale is the
  fiber type's nominal cladding, as on the bench).

Reported: agreement share (same status; also with the undetectable defects
optional, i.e. the pipeline may give either the verdict of the detectable
defects or that of all defects: finding a real defect below CNR 2 is not an
error), the share of truth-FAIL images the
pipeline reports PASS (false passes), the confusion matrix and seconds per image.
The issue's targets are agreement >= 97 % and false passes <= 1 %.

With ``--seeds`` several seeds run (``--jobs`` processes at a time) and the
summary is pooled over all their images, after one line per seed: at ~165
truth-FAIL images per seed of 300, a single false pass moves one seed's share by
0.6 %, so the pooled figure is the one to quote.

Usage::

    .venv/bin/python benchmarks/bench_grading.py --n 60 --seed 7
    .venv/bin/python benchmarks/bench_grading.py --n 300 --seeds 7,11,23,31,41,53 --jobs 2
    .venv/bin/python benchmarks/bench_grading.py --n 200 --truth-only   # generator/rules side only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dscope.inspection.grading import grade, make_defect  # noqa: E402
from dscope.inspection.rules import CLASS_OF_TYPE, RuleSet, load_rule_set  # noqa: E402

STATUSES = ("PASS", "FAIL", "UNGRADED", "ERROR")


def truth_defects(truth, *, detectable_only: bool = True):
    """Grading Defects built from the synth ground truth."""
    out = []
    for t in truth.defects:
        if detectable_only and not t.detectable:
            continue
        linear = CLASS_OF_TYPE.get(t.type) in ("scratch", "crack")
        size_um = t.width_um if linear else t.diameter_um
        size_px = t.width_px if linear else t.diameter_px
        out.append(make_defect(f"t{t.id}", t.type, t.zone, list(t.zones_touched), float(size_um),
                               size_px=float(size_px)))
    return out


def truth_verdict(truth, rule_set: RuleSet, *, detectable_only: bool = True):
    """Status (and the Grade) the ground truth calls for."""
    if not truth.has_fiber:
        return "ERROR", None
    g = grade(truth_defects(truth, detectable_only=detectable_only), rule_set, scale_known=True)
    return g.status, g


def failing_defects_max_cnr(truth, g) -> float | None:
    """Contrast-to-noise ratio of the most visible truth defect named by a violation (None without one):
    how hard the easiest defect that fails the image is to see."""
    if g is None or not g.violations:
        return None
    ids = {i for v in g.violations for i in v.defect_ids}
    cnrs = [float(t.cnr) for t in truth.defects if f"t{t.id}" in ids]
    return max(cnrs) if cnrs else None


def fiber_type_rule_sets() -> dict[str, str]:
    """fiber type -> rule-set name, from config/config.json (raw, so a half-edited config elsewhere does not matter)."""
    from dscope.config import default_config_path

    raw = json.loads(default_config_path().read_text(encoding="utf-8"))
    return {k: v["rule_set"] for k, v in raw["fiber_types"].items() if k != "$comment"}


def zones_agree(truth, rule_set: RuleSet) -> bool:
    """Whether the generator's zone table is the rule set's (names and diameters)."""
    if not truth.zones:
        return True
    got = [(n, float(a), float(b)) for n, a, b in truth.zones]
    want = [(z.name, z.inner_um, z.outer_um) for z in rule_set.zone_defs()]
    return got == want


def _parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="number of images per seed (default 40)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds, pooled in one summary (overrides --seed)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes at a time (default 1)")
    ap.add_argument("--scenario", default="mixed,mixed,mixed,clean",
                    help="comma-separated dscope.synth scenarios, cycled by image index (default mixed,mixed,mixed,clean)")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--profile", default=None, help="processing profile (default: the config's default)")
    ap.add_argument("--truth-only", action="store_true", help="skip the pipeline; report the truth side only")
    ap.add_argument("--config", default=None, help="configuration file (default: the shipped one)")
    ap.add_argument("--json", metavar="FILE", help="write per-image rows and the summary as JSON")
    args = ap.parse_args(argv)
    if args.seeds is not None:
        try:
            args.seed_list = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
        if not args.seed_list:
            ap.error("--seeds names no seed")
    else:
        args.seed_list = [args.seed]
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    return args


def run_seed(args: argparse.Namespace, seed: int) -> tuple[list[dict], dict]:
    """Render and grade ``args.n`` images of one seed: the per-image rows and the stage seconds."""
    from dscope.synth import render, scenario_specs

    ft_rules = fiber_type_rule_sets()
    rule_sets = {ft: load_rule_set(name) for ft, name in ft_rules.items()}

    pipeline = None
    pipeline_error = None
    if not args.truth_only:
        try:
            from dscope.config import load_config
            from dscope.runner import RunSettings, inspect_array

            cfg = load_config(args.config)
            settings_by_type = {}

            def pipeline(img, fiber_type):
                if fiber_type not in settings_by_type:
                    settings_by_type[fiber_type] = RunSettings.create(cfg, profile=args.profile, fiber_type=fiber_type)
                doc = inspect_array(img, settings_by_type[fiber_type])
                return doc["status"], doc
        except Exception as exc:  # report, do not crash: the engine is being written concurrently
            pipeline_error = f"{type(exc).__name__}: {exc}"

    scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    streams = {s: scenario_specs(seed, args.n, s, width=args.width, height=args.height) for s in set(scenarios)}
    rows = []
    t_render = t_pipe = t_grade = 0.0
    for i in range(args.n):
        spec = next(streams[scenarios[i % len(scenarios)]])
        t0 = time.perf_counter()
        img, truth = render(spec)
        t_render += time.perf_counter() - t0
        ft = spec.fiber_type
        rs = rule_sets.get(ft)
        if rs is None:
            print(f"seed {seed} image {i}: fiber type {ft!r} has no rule set in config.json; skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        tv, tg = truth_verdict(truth, rs)
        t_grade += time.perf_counter() - t0
        tv_all, _ = truth_verdict(truth, rs, detectable_only=False)
        row = {
            "seed_set": seed, "index": i, "scenario": spec.scenario, "seed": spec.seed, "fiber_type": ft,
            "rule_set": rs.name, "has_fiber": truth.has_fiber,
            "n_defects": len(truth.defects), "n_detectable": sum(d.detectable for d in truth.defects),
            "truth": tv, "truth_all_defects": tv_all, "zones_agree": zones_agree(truth, rs),
            "truth_violations": [v.message for v in tg.violations] if tg else [],
            "truth_rule_classes": sorted({v.rule.split(".")[1].split("[")[0].split("(")[0] for v in tg.violations})
            if tg else [],
            "truth_fail_max_cnr": failing_defects_max_cnr(truth, tg),
        }
        if pipeline is not None:
            t0 = time.perf_counter()
            try:
                status, doc = pipeline(img, ft)
                row["pipeline_violations"] = [v["message"] for v in doc.get("violations", [])]
                if doc.get("error"):
                    row["pipeline_error"] = doc["error"].get("code")
            except Exception as exc:  # a crash is a finding, counted as ERROR
                status = "ERROR"
                row["pipeline_error"] = f"crash: {type(exc).__name__}: {exc}"
            t_pipe += time.perf_counter() - t0
            row["pipeline"] = status
        rows.append(row)
    return rows, {"render_s": t_render, "pipeline_s": t_pipe, "grade_s": t_grade, "pipeline_error": pipeline_error}


def summarize(rows: list[dict], times: dict | None = None) -> dict:
    """Summary figures of graded rows (one seed or several pooled); pure: rows in, dict out.

    Rows without a ``pipeline`` verdict (``--truth-only``) give the truth-side figures only.
    """
    times = times or {}
    n = len(rows)
    summary = {
        "n_images": n,
        "truth_counts": dict(Counter(r["truth"] for r in rows)),
        "truth_changes_if_undetectable_counted": sum(r["truth"] != r["truth_all_defects"] for r in rows),
        "zone_table_mismatches": sum(not r["zones_agree"] for r in rows),
        "render_s_per_image": times.get("render_s", 0.0) / max(n, 1),
        "truth_grade_s_per_image": times.get("grade_s", 0.0) / max(n, 1),
    }
    if n and all("pipeline" in r for r in rows):
        agree = sum(r["pipeline"] == r["truth"] for r in rows)
        truth_fail = [r for r in rows if r["truth"] == "FAIL"]
        false_passes = [r for r in truth_fail if r["pipeline"] == "PASS"]
        confusion = {t: {p: 0 for p in STATUSES} for t in STATUSES}
        for r in rows:
            confusion[r["truth"]][r["pipeline"]] += 1
        # a defect the generator marks undetectable (CNR < 2) is optional: missing it is not an error, and
        # reporting it is not one either (the connector has that defect: the verdict of the full truth)
        agree_opt = sum(r["pipeline"] in (r["truth"], r["truth_all_defects"]) for r in rows)
        summary.update({
            "agreement": agree / n,
            "agreement_undetectable_optional": agree_opt / n,
            "truth_fail_images": len(truth_fail),
            "false_passes": len(false_passes),
            "false_pass_share_of_truth_fail": (len(false_passes) / len(truth_fail)) if truth_fail else None,
            "confusion_truth_rows_pipeline_cols": confusion,
            "pipeline_s_per_image": times.get("pipeline_s", 0.0) / n,
            "pipeline_errors": dict(Counter(r.get("pipeline_error") for r in rows if r.get("pipeline_error"))),
            "false_pass_by_fiber_type": dict(Counter(r["fiber_type"] for r in false_passes)),
            # how visible the failing defects of the false passes are (diagnostic): the largest CNR among
            # the truth defects that fail each such image
            "false_pass_failing_max_cnr": sorted(
                round(r["truth_fail_max_cnr"], 2) for r in false_passes if r["truth_fail_max_cnr"] is not None),
            "false_pass_truth_rule_classes": dict(Counter(
                cls for r in false_passes for cls in r["truth_rule_classes"])),
            "disagreements_by_fiber_type": dict(Counter(r["fiber_type"] for r in rows if r["pipeline"] != r["truth"])),
            # diagnostics of the disagreements (the headline figures above are unchanged by them)
            "false_fail": sum(r["truth"] == "PASS" and r["pipeline"] == "FAIL" for r in rows),
            "false_fail_also_fail_with_undetectable": sum(
                r["truth"] == "PASS" and r["pipeline"] == "FAIL" and r["truth_all_defects"] == "FAIL" for r in rows),
            "error_on_fiber_images": sum(r["truth"] != "ERROR" and r["pipeline"] == "ERROR" for r in rows),
        })
    return summary


def _print_summary(summary: dict, title: str) -> None:
    print(title)
    print(f"truth verdicts: {summary['truth_counts']}  "
          f"(verdict changes if undetectable defects counted: {summary['truth_changes_if_undetectable_counted']}; "
          f"zone-table mismatches generator vs rule set: {summary['zone_table_mismatches']})")
    if "agreement" in summary:
        fp = summary["false_pass_share_of_truth_fail"]
        print(f"agreement pipeline vs truth: {summary['agreement']:.1%}  (target >= 97%); with the undetectable "
              f"(CNR < 2) defects optional (either truth verdict): {summary['agreement_undetectable_optional']:.1%}")
        print(f"truth-FAIL reported PASS: {'n/a' if fp is None else f'{fp:.1%}'} of {summary['truth_fail_images']}"
              "  (target <= 1%)")
        print("confusion (rows truth, cols pipeline):  " + "  ".join(f"{p:>8}" for p in STATUSES))
        for t in STATUSES:
            print(f"  {t:<8}" + " " * 31 + "  ".join(f"{summary['confusion_truth_rows_pipeline_cols'][t][p]:>8}"
                                                     for p in STATUSES))
        print(f"pipeline: {summary['pipeline_s_per_image']:.3f} s/image; errors: {summary['pipeline_errors']}")
        print(f"false passes by fiber type: {summary['false_pass_by_fiber_type']}; "
              f"by broken truth rule class: {summary['false_pass_truth_rule_classes']}; CNR of the most visible "
              f"failing defect: {summary['false_pass_failing_max_cnr']}")
        print(f"disagreements by fiber type: {summary['disagreements_by_fiber_type']}")
        print(f"false FAILs: {summary['false_fail']} (of which {summary['false_fail_also_fail_with_undetectable']} "
              "would be FAIL in the truth too if its undetectable defects counted); ERROR on images with a fiber: "
              f"{summary['error_on_fiber_images']}")
    elif "pipeline_unavailable" in summary:
        print(f"pipeline unavailable: {summary['pipeline_unavailable']}")
    print(f"render: {summary['render_s_per_image']:.3f} s/image; truth-side grade(): "
          f"{summary['truth_grade_s_per_image'] * 1e3:.3f} ms/image")


def main(argv=None) -> int:
    args = _parse_args(argv)
    seeds = args.seed_list
    if args.jobs > 1 and len(seeds) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(args.jobs, len(seeds))) as ex:
            results = list(ex.map(run_seed, [args] * len(seeds), seeds))
    else:
        results = [run_seed(args, s) for s in seeds]
    rows = [r for seed_rows, _ in results for r in seed_rows]
    times = {k: sum(t[k] for _, t in results) for k in ("render_s", "pipeline_s", "grade_s")}
    pipeline_error = next((t["pipeline_error"] for _, t in results if t["pipeline_error"]), None)
    size = f"{args.width}x{args.height}"
    per_seed = {}
    if len(seeds) > 1:
        for seed, (seed_rows, t) in zip(seeds, results):
            s = summarize(seed_rows, t)
            per_seed[str(seed)] = s
            if "agreement" in s:
                fp = s["false_pass_share_of_truth_fail"]
                print(f"seed {seed}: agreement {s['agreement']:.1%}, truth-FAIL reported PASS "
                      f"{'n/a' if fp is None else f'{fp:.1%}'} ({s['false_passes']} of {s['truth_fail_images']}), "
                      f"false FAILs {s['false_fail']}")
    summary = summarize(rows, times)
    summary.update({"seeds": seeds, "scenario": args.scenario, "size": [args.width, args.height]})
    if len(seeds) == 1:
        summary["seed"] = seeds[0]
    else:
        summary["per_seed"] = per_seed
    if pipeline_error and "agreement" not in summary:
        summary["pipeline_unavailable"] = pipeline_error
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {','.join(map(str, seeds))} pooled"
    _print_summary(summary, f"images: {summary['n_images']} (scenario {args.scenario}, {which}, {size})")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
