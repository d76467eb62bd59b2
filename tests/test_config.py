"""Configuration loading and validation: every bad file is rejected with the key and the file named."""

from __future__ import annotations

import json

import pytest

from dscope.cli import main
from dscope.config import load_config, parse_config
from dscope.errors import ConfigError


def _write(tmp_path, data, name="cfg.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_shipped_config_is_valid_and_has_both_profiles(config):
    assert {"fast_scan", "deep_inspection"} <= set(config.profiles)
    assert config.default_profile in config.profiles
    for name, ft in config.fiber_types.items():
        assert ft.core_um < ft.cladding_um, name


def test_unknown_key_is_rejected_naming_key_and_file(tmp_path, config_data):
    config_data["io"]["max_image_pixelz"] = 5
    p = _write(tmp_path, config_data)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.code == "config_invalid"
    assert "io.max_image_pixelz" in ei.value.message
    assert str(p) in ei.value.message
    assert "unknown key" in ei.value.message


def test_wrong_type_is_rejected(tmp_path, config_data):
    config_data["output"]["annotated_max_side_px"] = "large"
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, config_data))
    assert "output.annotated_max_side_px" in ei.value.message


def test_out_of_range_value_is_rejected(tmp_path, config_data):
    config_data["preprocess"]["clipped_fraction_warn"] = 1.5
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, config_data))
    assert "preprocess.clipped_fraction_warn" in ei.value.message
    assert "1.5" in ei.value.message


def test_missing_required_profile_is_rejected(config_data):
    del config_data["profiles"]["fast_scan"]
    config_data["default_profile"] = "deep_inspection"
    with pytest.raises(ConfigError) as ei:
        parse_config(config_data, "x.json")
    assert "fast_scan" in ei.value.message


def test_default_profile_must_exist(config_data):
    config_data["default_profile"] = "turbo"
    with pytest.raises(ConfigError) as ei:
        parse_config(config_data, "x.json")
    assert "turbo" in ei.value.message


def test_comments_are_ignored_anywhere(config_data):
    config_data["io"]["$comment"] = "documentation"
    cfg = parse_config(config_data, "x.json")
    assert cfg.io.min_image_side_px == config_data["io"]["min_image_side_px"]


def test_invalid_json_names_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{\n  "schema_version": 1,\n  oops\n}')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "line 3" in ei.value.message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.json")
    assert ei.value.code == "config_invalid"


def test_core_must_be_smaller_than_cladding(config_data):
    config_data["fiber_types"]["sm-pc"]["core_um"] = 200
    with pytest.raises(ConfigError) as ei:
        parse_config(config_data, "x.json")
    assert "fiber_types.sm-pc" in ei.value.message


def test_cli_config_check_exit_codes(tmp_path, config_data, capsys, repo_root):
    assert main(["config", "check", str(repo_root / "config" / "config.json")]) == 0
    config_data["daemon"] = {"no_such_setting": 1}
    bad = _write(tmp_path, config_data)
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "daemon.no_such_setting" in err


def test_cli_config_show_prints_effective_config(capsys):
    assert main(["config", "show", "--profile", "fast_scan"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "fast_scan" in data and "detection" in data["fast_scan"]


def test_profile_lookup_unknown_name(config):
    with pytest.raises(ConfigError) as ei:
        config.profile("nope")
    assert "nope" in ei.value.message


def test_profile_logistic_model_overrides_the_shared_one(config, config_data):
    fast = config.classification_for("fast_scan")
    deep = config.classification_for("deep_inspection")
    assert config.profile("deep_inspection").logistic is None
    assert deep.logistic == config.classification.logistic
    if config.profile("fast_scan").logistic is not None:
        assert fast.logistic == config.profile("fast_scan").logistic != config.classification.logistic
    # everything else of the section is shared
    assert fast.model_dump(exclude={"logistic"}) == deep.model_dump(exclude={"logistic"})
    # a malformed profile model is rejected with its key
    config_data["profiles"]["fast_scan"]["logistic"] = {"features": ["x"], "classes": ["pit"], "mean": [0],
                                                        "std": [1], "weights": [[1]], "bias": [0]}
    with pytest.raises(ConfigError) as exc:
        parse_config(config_data, "test.json")
    assert "profiles.fast_scan.logistic" in exc.value.message


def test_grading_guard_band_defaults_and_is_validated(tmp_path, config_data):
    config_data.pop("grading")
    assert load_config(_write(tmp_path, config_data)).grading.guard_band_px == 1.0  # the documented default
    config_data["grading"] = {"guard_band_px": -1}
    with pytest.raises(ConfigError) as ei:
        load_config(_write(tmp_path, config_data))
    assert ei.value.code == "config_invalid" and "grading.guard_band_px" in ei.value.message
