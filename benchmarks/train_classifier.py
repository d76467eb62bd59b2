"""Train the optional logistic defect classifier on generated images (features -> class).

Usage::

    python benchmarks/train_classifier.py [--n 210] [--seed 100] [--profile deep_inspection] [--out FILE.json]
    python benchmarks/train_classifier.py --model trees --n 350 --seed 100,101 \
        [--profile deep_inspection] --out config/models/defect-trees-deep.json

Images: ``dscope.synth.random_spec`` cycling through the defect scenarios
(``mixed``, ``scratch``, ``pit``, ``chip``, ``crack``, ``contamination``), on a
seed range disjoint from the evaluation benchmark (default seed 100; the
benchmark uses 1 and 2).  Detection and characterization run on the true
geometry; every detection matched to a truth defect (rule of
``bench_detection.py``) gives one training sample: its feature vector and the
truth class.  ``--profile`` selects the detection profile (its passes, e.g. the
fast profile's fine tier, as in the pipeline): a profile's features depend on
its analysis scale, so each profile can carry its own model (``--profile
fast_scan`` prints the block ``profiles.fast_scan.logistic``).  A multinomial logistic regression with L2 penalty is fitted by
gradient descent on standardised features.  The result is printed (and written
to ``--out``) as the JSON block ``classification.logistic`` of the config.

``--model trees`` fits gradient-boosted trees instead (scikit-learn's
``GradientBoostingClassifier``, class-balanced sample weights; scikit-learn is
needed for training only) and writes them as a
:class:`dscope.inspection.trees.TreeEnsemble` file for ``config/models/``;
the export is checked to reproduce scikit-learn's decision function on every
training sample.  ``--seed`` takes a comma-separated list (``--n`` images per
seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_detection import contour_object, match, truth_geometry, truth_zone_masks  # noqa: E402

from dscope.config import default_config_path, parse_config  # noqa: E402
from dscope.errors import ConfigError  # noqa: E402
from dscope.inspection.classify import LOGISTIC_FEATURES, feature_vector  # noqa: E402
from dscope.inspection.tiers import characterize_tiers, detect_tiered  # noqa: E402
from dscope.inspection.types import DEFECT_TYPES, Scale  # noqa: E402
from dscope.jsonio import read_json_file  # noqa: E402
from dscope.synth import random_spec, render  # noqa: E402

SCENARIOS = ("mixed", "scratch", "pit", "chip", "crack", "contamination")


def config_without_models(config=None):
    """The configuration with every classifier model removed (rules classifier).

    The features do not depend on the classifier, and a feature change makes the shipped models invalid
    (their feature lists no longer match): training must not need them.
    """
    p = Path(config) if config else default_config_path()
    data = read_json_file(p, ConfigError, "config_invalid", what="config file")
    sections = [data.get("classification", {})] + [pr for pr in data.get("profiles", {}).values()]
    for sec in sections:
        for key in ("logistic", "trees_model"):
            if key in sec:
                sec[key] = None
        if "classifier" in sec:
            sec["classifier"] = "rules"
    return parse_config(data, str(p))


def collect(n: int, seed: int, config=None, profile: str = "deep_inspection"):
    cfg = config_without_models(config)
    prof = cfg.profile(profile)
    # classes come from the truth; the classifier's own weights do not matter for the features
    cls_params = cfg.classification_for(profile)
    names = ("core", "cladding", "adhesive", "contact")
    X, y = [], []
    for i in range(n):
        spec = random_spec(np.random.default_rng([seed, i]), SCENARIOS[i % len(SCENARIOS)])
        img, t = render(spec)
        if img.dtype != np.uint8:
            continue
        geo = truth_geometry(t)
        zones = truth_zone_masks(t, img.shape, geo, names)
        passes, _ = detect_tiered(img, geo, zones, prof.detection, prof.fine_tier, 1.0 / t.um_per_px)
        defects = characterize_tiers(img, passes, geo, Scale(t.um_per_px, "um_per_px"), 1.0 / t.um_per_px, cls_params)
        objs = [contour_object(d.contour_px) for d in defects]
        truth = {d.id: d for d in t.defects}
        pairs, _, _ = match(objs, t.labels, sorted(truth))
        for di, tid in pairs.items():
            X.append(feature_vector(defects[di].features))
            y.append(DEFECT_TYPES.index(truth[tid].type))
    return np.asarray(X, np.float64), np.asarray(y, np.int64)


def fit(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 4000, lr: float = 0.5):
    mean = X.mean(0)
    std = X.std(0) + 1e-9
    Z = (X - mean) / std
    k = len(DEFECT_TYPES)
    W = np.zeros((Z.shape[1], k))
    b = np.zeros(k)
    Y = np.eye(k)[y]
    # class-balanced weights so rare classes count
    cw = len(y) / (k * np.maximum(np.bincount(y, minlength=k), 1))
    sw = cw[y][:, None]
    for _ in range(steps):  # plain full-batch gradient descent (small data)
        logits = Z @ W + b
        logits -= logits.max(1, keepdims=True)
        P = np.exp(logits)
        P /= P.sum(1, keepdims=True)
        G = (P - Y) * sw / len(y)
        W -= lr * (Z.T @ G + l2 * W)
        b -= lr * G.sum(0)
    acc = float(((Z @ W + b).argmax(1) == y).mean())
    return dict(features=list(LOGISTIC_FEATURES), classes=list(DEFECT_TYPES), mean=mean.round(6).tolist(),
                std=std.round(6).tolist(), weights=W.round(5).tolist(), bias=b.round(5).tolist()), acc


def fit_trees(X: np.ndarray, y: np.ndarray, *, n_estimators: int = 100, max_depth: int = 3,
              learning_rate: float = 0.1, subsample: float = 1.0, random_state: int = 0):
    """Gradient-boosted trees (scikit-learn) on raw features, class-balanced; returns (model, accuracy)."""
    from sklearn.ensemble import GradientBoostingClassifier

    k = len(DEFECT_TYPES)
    cw = len(y) / (k * np.maximum(np.bincount(y, minlength=k), 1))
    gb = GradientBoostingClassifier(n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate,
                                    subsample=subsample, random_state=random_state)
    gb.fit(X, y, sample_weight=cw[y])
    return gb, float((gb.predict(X) == y).mean())


def export_trees(gb, X: np.ndarray) -> dict:
    """A fitted ``GradientBoostingClassifier`` as a :class:`TreeEnsemble` mapping, checked on ``X``.

    Leaf values are stored multiplied by the learning rate; the initial scores
    are recovered from the decision function (whatever the loss's intercept
    convention) and the export must reproduce ``decision_function(X)``.
    """
    from dscope.inspection.trees import TreeEnsemble

    classes = [DEFECT_TYPES[int(c)] for c in gb.classes_]
    lr = float(gb.learning_rate)
    trees = []
    for stage in gb.estimators_:
        for k, est in enumerate(stage):
            t = est.tree_
            trees.append(dict(cls=k, feature=[int(f) for f in t.feature], threshold=[float(v) for v in t.threshold],
                              left=[int(v) for v in t.children_left], right=[int(v) for v in t.children_right],
                              value=[float(v) * lr for v in t.value.reshape(-1)]))
    partial = TreeEnsemble.model_validate(dict(features=list(LOGISTIC_FEATURES), classes=classes,
                                               init=[0.0] * len(classes), trees=trees))
    ref = gb.decision_function(X)
    init = (ref - partial.scores(X)).mean(0)
    model = partial.model_copy(update={"init": [float(v) for v in init]})
    err = float(np.abs(model.scores(X) - ref).max())
    if err > 1e-6:
        raise RuntimeError(f"exported trees differ from scikit-learn by {err:g}")
    return model.model_dump(exclude={"trained_on"})


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=210)
    ap.add_argument("--seed", default="100", help="seed, or comma-separated seeds (--n images each)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--profile", default="deep_inspection", help="detection profile whose features are learnt")
    ap.add_argument("--model", choices=("logistic", "trees"), default="logistic")
    ap.add_argument("--n-estimators", type=int, default=100, help="trees: boosting stages")
    ap.add_argument("--max-depth", type=int, default=3, help="trees: depth of each tree")
    ap.add_argument("--learning-rate", type=float, default=0.1, help="trees: shrinkage")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in str(args.seed).split(",")]
    parts = [collect(args.n, s, args.config, args.profile) for s in seeds]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if args.model == "trees":
        gb, acc = fit_trees(X, y, n_estimators=args.n_estimators, max_depth=args.max_depth,
                            learning_rate=args.learning_rate)
        model = export_trees(gb, X)
        summary = (f"{len(model['trees'])} trees ({args.n_estimators} stages x {len(model['classes'])} classes, "
                   f"depth <= {args.max_depth})")
    else:
        model, acc = fit(X, y)
        summary = None  # the logistic block is printed whole: it is pasted into the config
    model["trained_on"] = (f"{len(y)} matched detections from {args.n} generated images per seed, seeds "
                           f"{','.join(map(str, seeds))}, profile {args.profile}, {args.model}")
    print(f"samples {len(y)} per class {np.bincount(y, minlength=len(DEFECT_TYPES)).tolist()} "
          f"training accuracy {acc:.3f}")
    text = json.dumps(model)
    print(summary or text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
