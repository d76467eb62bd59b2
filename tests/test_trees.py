"""Boosted trees kept as data: the NumPy evaluator, its validation, the scikit-learn export and the config hook."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dscope.config import load_config, parse_config
from dscope.errors import ConfigError
from dscope.inspection.classify import LOGISTIC_FEATURES, classify, classify_trees
from dscope.inspection.trees import TreeEnsemble
from dscope.inspection.types import DEFECT_TYPES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _stump(cls: int, feature: int, thr: float, lo: float, hi: float) -> dict:
    return dict(cls=cls, feature=[feature, -2, -2], threshold=[thr, -2.0, -2.0], left=[1, -1, -1],
                right=[2, -1, -1], value=[0.0, lo, hi])


def _model(trees, n_features=2, classes=("a", "b")) -> TreeEnsemble:
    return TreeEnsemble.model_validate(dict(features=[f"x{i}" for i in range(n_features)], classes=list(classes),
                                            init=[0.0] * len(classes), trees=trees))


def test_stumps_add_up_per_class_and_split_left_at_the_threshold():
    m = _model([_stump(0, 0, 1.0, 2.0, -1.0), _stump(1, 1, 0.0, 0.5, 3.0)])
    # x0 <= 1 goes left (inclusive), x1 > 0 goes right
    np.testing.assert_allclose(m.scores([1.0, 0.1]), [2.0, 3.0])
    np.testing.assert_allclose(m.scores([1.0001, -5.0]), [-1.0, 0.5])
    assert m.predict([1.0, 0.1]) == "b" and m.predict([0.0, -1.0]) == "a"
    # a batch gives the rows of the single calls
    X = np.array([[1.0, 0.1], [1.0001, -5.0], [0.0, -1.0]])
    np.testing.assert_allclose(m.scores(X), np.stack([m.scores(x) for x in X]))


def test_trees_of_different_depths_are_walked_to_their_leaves():
    deep = dict(cls=1, feature=[0, 1, -2, -2, -2], threshold=[0.0, 5.0, 0, 0, 0], left=[1, 2, -1, -1, -1],
                right=[4, 3, -1, -1, -1], value=[0, 0, 10.0, 20.0, 30.0])
    m = _model([_stump(0, 0, 0.0, 1.0, 2.0), deep])
    assert m.scores([-1.0, 4.0])[1] == 10.0
    assert m.scores([-1.0, 6.0])[1] == 20.0
    assert m.scores([1.0, 4.0])[1] == 30.0 and m.scores([1.0, 4.0])[0] == 2.0


@pytest.mark.parametrize("bad", [
    dict(left=[1, -1, -1], right=[-1, -1, -1]),          # one child only
    dict(left=[0, -1, -1], right=[2, -1, -1]),           # child before its parent (a loop)
    dict(left=[1, -1, -1], right=[7, -1, -1]),           # child outside the tree
    dict(feature=[5, -2, -2]),                           # unknown feature
    dict(cls=3),                                         # unknown class
    dict(value=[0.0, 1.0]),                              # arrays of different lengths
])
def test_malformed_trees_are_rejected(bad):
    with pytest.raises(Exception):
        _model([{**_stump(0, 0, 0.0, 1.0, -1.0), **bad}])
    with pytest.raises(ValueError):
        _model([_stump(0, 0, 0.0, 1.0, -1.0)]).scores([1.0, 2.0, 3.0])  # wrong feature count


def test_scikit_learn_export_reproduces_its_decisions():
    sklearn = pytest.importorskip("sklearn")  # installed with the test extra
    assert sklearn
    from train_classifier import export_trees, fit_trees

    rng = np.random.default_rng(5)
    n = 400
    X = rng.normal(size=(n, len(LOGISTIC_FEATURES)))
    y = (np.argmax(X[:, :5] + 0.3 * rng.normal(size=(n, 5)), axis=1)).astype(int)
    gb, acc = fit_trees(X, y, n_estimators=20, max_depth=3)
    assert acc > 0.6
    model = TreeEnsemble.model_validate(export_trees(gb, X))
    Xt = rng.normal(size=(200, len(LOGISTIC_FEATURES)))
    np.testing.assert_allclose(model.scores(Xt), gb.decision_function(Xt), atol=1e-9)
    pred = [model.predict(x) for x in Xt]
    assert pred == [DEFECT_TYPES[int(c)] for c in gb.predict(Xt)]


def _features(**kw):
    f = dict(elongation=1.2, aspect_ratio=1.1, length_um=8.0, tortuosity=1.0, branch_points=0, touches_edge=False,
             outside_fraction=0.0, sharpness=0.4, circularity=0.9, solidity=0.97, polarity="dark", width_um=8.0,
             diameter_um=8.2, cnr=12.0)
    f.update(kw)
    return f


def test_shipped_trees_models_are_loaded_and_classify_clear_cases(config):
    for profile in ("deep_inspection", "fast_scan"):
        cp = config.classification_for(profile)
        assert cp.classifier == "trees" and cp.trees is not None
        assert list(cp.trees.features) == list(LOGISTIC_FEATURES)
        line = _features(elongation=80, aspect_ratio=25, length_um=60, width_um=1.0, diameter_um=60, cnr=10,
                         solidity=0.7, circularity=0.05, sharpness=0.2)
        assert classify_trees(_features(), cp.trees) == "pit", profile
        assert classify_trees(line, cp.trees) == "scratch", profile
    assert config.classification_for("fast_scan").trees != config.classification_for("deep_inspection").trees


def test_shape_guard_applies_to_the_trees_answer(config):
    cp = config.classification
    always_crack = _model([_stump(DEFECT_TYPES.index("crack"), 0, 0.0, 10.0, 10.0)],
                          n_features=len(LOGISTIC_FEATURES), classes=DEFECT_TYPES)
    compact = _features()
    for guard, want in ((False, "crack"), (True, classify(compact, cp.model_copy(update={"classifier": "rules"})))):
        p = cp.model_copy(update={"trees": always_crack, "logistic_shape_guard": guard})
        assert classify(compact, p) == want
    assert want != "crack"


def test_trees_model_errors_name_the_key(tmp_path, config_data):
    (tmp_path / "models").mkdir()
    cfg_path = tmp_path / "cfg.json"
    # a trees classifier with no model file named
    data = json.loads(json.dumps(config_data))
    data["classification"]["trees_model"] = None
    data["classification"]["classifier"] = "trees"
    for prof in data["profiles"].values():
        prof.pop("trees_model", None)
    with pytest.raises(ConfigError) as ei:
        parse_config(data, str(cfg_path))
    assert ei.value.code == "config_invalid" and "classification.trees_model" in ei.value.message
    # a file that is nowhere
    data["classification"]["trees_model"] = "no-such-model.json"
    with pytest.raises(ConfigError) as ei:
        parse_config(data, str(cfg_path))
    assert "classification.trees_model" in ei.value.message and "not found" in ei.value.message
    # a malformed model beside the config file wins over the shipped folder and is rejected
    (tmp_path / "models" / "bad.json").write_text(json.dumps({"features": ["x"], "classes": ["a"], "init": [0],
                                                              "trees": []}))
    data["profiles"]["fast_scan"]["trees_model"] = "bad.json"
    data["classification"]["trees_model"] = config_data["classification"]["trees_model"]
    with pytest.raises(ConfigError) as ei:
        parse_config(data, str(cfg_path))
    assert "profiles.fast_scan.trees_model" in ei.value.message


def test_models_beside_a_copied_config_are_found_first(tmp_path, config_data):
    shipped = Path(load_config().source_path).parent / "models" / config_data["classification"]["trees_model"]
    (tmp_path / "models").mkdir()
    shutil.copy(shipped, tmp_path / "models" / "mine.json")
    data = json.loads(json.dumps(config_data))
    data["classification"]["trees_model"] = "mine.json"
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(data))
    cfg = load_config(cfg_path)
    assert cfg.classification.trees == load_config().classification.trees
    # the loaded model stays out of dumps (config show prints the file name, not thousands of nodes)
    assert "trees" not in cfg.classification.model_dump() and cfg.classification.model_dump()["trees_model"] == "mine.json"


def test_a_trees_file_on_other_features_is_rejected(tmp_path, config_data):
    # a valid ensemble, but over inputs the classifier does not feed it: it would read the wrong features
    (tmp_path / "models").mkdir()
    other = _model([_stump(0, 0, 0.0, 1.0, -1.0)], n_features=len(LOGISTIC_FEATURES), classes=DEFECT_TYPES)
    (tmp_path / "models" / "other.json").write_text(json.dumps(other.model_dump()))
    data = json.loads(json.dumps(config_data))
    data["classification"]["trees_model"] = "other.json"
    with pytest.raises(ConfigError) as ei:
        parse_config(data, str(tmp_path / "cfg.json"))
    assert ei.value.code == "config_invalid"
    assert "classification.trees_model" in ei.value.message and "features must be" in ei.value.message


def test_training_reads_a_config_whose_models_no_longer_match_the_features(tmp_path):
    # after a feature change the shipped models are invalid; training must not need them
    from train_classifier import config_without_models

    from dscope.config import default_config_path

    data = json.loads(default_config_path().read_text())
    data["classification"]["logistic"]["features"] = data["classification"]["logistic"]["features"][:-1]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="features must be"):
        load_config(p)
    cfg = config_without_models(p)
    assert cfg.classification.classifier == "rules" and cfg.classification.logistic is None
    for name in cfg.profiles:
        assert cfg.classification_for(name).trees is None
