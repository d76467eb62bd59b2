"""Rule-set files: validation (errors name the key), listing, loading, JSON Schema, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from dscope.cli import main
from dscope.errors import ConfigError
from dscope.inspection.rules import (
    CLASS_OF_TYPE,
    RULE_CLASSES,
    list_rule_sets,
    load_rule_set,
    parse_rule_set,
    read_rule_set_file,
    rule_set_json_schema,
    rules_dir,
    schema_path,
    schema_text,
)
from dscope.inspection.types import DEFECT_TYPES

REPO = Path(__file__).resolve().parent.parent
SHIPPED_FILES = sorted((REPO / "config" / "rules").rglob("*.json"))
SM_PC = "iec61300-3-35-ed2-sm-pc"


@pytest.fixture()
def sm_pc_data() -> dict:
    return json.loads((REPO / "config" / "rules" / f"{SM_PC}.json").read_text())


def _invalid(data: dict) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_rule_set(data, "x.json")
    assert ei.value.code == "rule_set_invalid"
    assert ei.value.message.startswith("x.json: ")
    return ei.value.message


# -- shipped files ------------------------------------------------------------------------------
def test_shipped_files_exist():
    names = {p.stem for p in SHIPPED_FILES}
    for n in ("iec61300-3-35-ed2-sm-pc", "iec61300-3-35-ed2-sm-apc", "iec61300-3-35-ed2-mm",
              "large-core-200", "large-core-1000"):
        assert n in names


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.stem for p in SHIPPED_FILES])
def test_shipped_file_is_valid_and_complete(path):
    rs = read_rule_set_file(path)
    assert rs.name == path.stem
    assert rs.zone_names == [z.name for z in rs.zone_defs()]
    outers = [z.outer_um for z in rs.zone_defs()]
    assert outers == sorted(outers)
    for zone in rs.zone_names:
        for cls in RULE_CLASSES:
            bins = rs.bins(zone, cls)
            assert bins[0].lo == 0 and bins[0].min_inclusive and bins[-1].max is None
    # the schema (structural) accepts every shipped file, $comment keys included
    jsonschema.validate(json.loads(path.read_text()), rule_set_json_schema())


def test_every_configured_fiber_type_has_an_active_rule_set(config_data):
    """Read from the raw config.json (only the fiber_types section matters here)."""
    fiber_types = {k: v for k, v in config_data["fiber_types"].items() if k != "$comment"}
    assert fiber_types
    for ftype, fc in fiber_types.items():
        rs = load_rule_set(fc["rule_set"])
        assert rs.status == "active", ftype
        # the core zone contains the core, and the cladding edge lies inside the graded zones
        assert rs.zone_defs()[0].outer_um >= fc["core_um"], ftype
        assert rs.zone_defs()[-1].outer_um > fc["cladding_um"], ftype


def test_ed2_tables_have_the_issue_structure():
    """Spot-check the issue's wording: bins read back from the data, not from code."""
    pc = load_rule_set(SM_PC)
    assert [b.max_count for b in pc.bins("core", "scratch")] == [0]
    assert [(b.label(), b.max_count) for b in pc.bins("cladding", "defect")] == [
        ("[0,2)", None), ("[2,5]", 5), ("(5,inf)", 0)]
    assert [(b.label(), b.max_count) for b in pc.bins("contact", "defect")] == [("[0,10)", None), ("[10,inf)", 0)]
    apc = load_rule_set("iec61300-3-35-ed2-sm-apc")
    assert [(b.label(), b.max_count) for b in apc.bins("core", "scratch")] == [("[0,3]", 4), ("(3,inf)", 0)]
    assert [b.max_count for b in apc.bins("cladding", "scratch")] == [None]
    mm = load_rule_set("iec61300-3-35-ed2-mm")
    assert mm.zone_defs()[0].outer_um == 65
    assert [(b.label(), b.max_count) for b in mm.bins("contact", "defect")] == [
        ("[0,20)", None), ("[20,30]", 5), ("(30,inf)", 0)]
    for rs in (pc, apc, mm):
        for z in ("core", "cladding"):
            assert [b.max_count for b in rs.bins(z, "crack")] == [0]


def test_class_mapping_covers_every_defect_type():
    assert set(CLASS_OF_TYPE) == set(DEFECT_TYPES)
    assert set(CLASS_OF_TYPE.values()) == set(RULE_CLASSES)


# -- listing and loading ----------------------------------------------------------------------
def test_list_hides_placeholders_unless_asked():
    active = list_rule_sets()
    everything = list_rule_sets(include_placeholders=True)
    assert SM_PC in active
    hidden = set(everything) - set(active)
    assert hidden and all("ed3" in n for n in hidden)
    for n in hidden:
        with pytest.raises(ConfigError) as ei:
            load_rule_set(n)
        assert ei.value.code == "rule_set_invalid" and "placeholder" in ei.value.message
        assert load_rule_set(n, allow_placeholder=True).status == "placeholder"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as ei:
        load_rule_set("no-such-rules")
    assert ei.value.code == "rule_set_unknown"
    assert SM_PC in ei.value.message


def test_load_by_path_and_env_override(tmp_path, monkeypatch, sm_pc_data):
    d = tmp_path / "rules"
    d.mkdir()
    sm_pc_data["name"] = "mine"
    (d / "mine.json").write_text(json.dumps(sm_pc_data))
    assert load_rule_set(str(d / "mine.json")).name == "mine"
    assert list_rule_sets(d) == ["mine"]
    monkeypatch.setenv("DSCOPE_CONFIG_DIR", str(tmp_path))
    assert rules_dir() == d
    assert load_rule_set("mine").name == "mine"


def test_name_must_match_file_name(tmp_path, sm_pc_data):
    p = tmp_path / "other.json"
    p.write_text(json.dumps(sm_pc_data))
    with pytest.raises(ConfigError) as ei:
        read_rule_set_file(p)
    assert "name" in ei.value.message and "other" in ei.value.message


def test_not_json_names_the_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{\n  "name": "broken",\n  oops\n}')
    with pytest.raises(ConfigError) as ei:
        read_rule_set_file(p)
    assert ei.value.code == "rule_set_invalid" and "line 3" in ei.value.message


# -- validation errors name the key -------------------------------------------------------------
def test_overlapping_bins(sm_pc_data):
    sm_pc_data["limits"]["cladding"]["defect"][1]["min_inclusive"] = True
    sm_pc_data["limits"]["cladding"]["defect"][0]["max_inclusive"] = True
    msg = _invalid(sm_pc_data)
    assert "limits.cladding.defect[1]" in msg and "overlaps" in msg


def test_overlap_by_range(sm_pc_data):
    sm_pc_data["limits"]["cladding"]["scratch"][1]["min"] = 2
    msg = _invalid(sm_pc_data)
    assert "limits.cladding.scratch[1]" in msg and "overlaps" in msg


def test_unsorted_bins(sm_pc_data):
    bins = sm_pc_data["limits"]["cladding"]["defect"]
    bins.reverse()
    msg = _invalid(sm_pc_data)
    assert "limits.cladding.defect[" in msg and "ascending" in msg


def test_gap_is_an_error_unless_allowed(sm_pc_data):
    sm_pc_data["limits"]["cladding"]["defect"][1]["min_inclusive"] = False  # (2,5] after [0,2): 2 uncovered
    msg = _invalid(sm_pc_data)
    assert "limits.cladding.defect[1]" in msg and "gap" in msg
    sm_pc_data["allow_bin_gaps"] = True
    assert parse_rule_set(sm_pc_data).allow_bin_gaps


def test_coverage_must_reach_zero_and_infinity(sm_pc_data):
    data = copy.deepcopy(sm_pc_data)
    data["limits"]["contact"]["defect"].pop()
    msg = _invalid(data)
    assert "limits.contact.defect[0]" in msg and "unbounded" in msg
    data = copy.deepcopy(sm_pc_data)
    data["limits"]["contact"]["defect"].pop(0)
    msg = _invalid(data)
    assert "limits.contact.defect[0]" in msg and "start at 0" in msg


def test_unknown_class(sm_pc_data):
    sm_pc_data["limits"]["core"]["blob"] = sm_pc_data["limits"]["core"]["scratch"]
    msg = _invalid(sm_pc_data)
    assert "limits.core.blob: unknown key" in msg


def test_unknown_top_level_key(sm_pc_data):
    sm_pc_data["colour"] = "red"
    assert "colour: unknown key" in _invalid(sm_pc_data)


def test_unknown_bin_key_and_bad_count(sm_pc_data):
    sm_pc_data["limits"]["core"]["scratch"][0]["max_cnt"] = 1
    sm_pc_data["limits"]["core"]["defect"][0]["max_count"] = -1
    msg = _invalid(sm_pc_data)
    assert "limits.core.scratch[0].max_cnt: unknown key" in msg
    assert "limits.core.defect[0].max_count" in msg


def test_missing_bin_field(sm_pc_data):
    del sm_pc_data["limits"]["core"]["scratch"][0]["max_inclusive"]
    assert "limits.core.scratch[0].max_inclusive: Field required" in _invalid(sm_pc_data)


def test_inconsistent_open_edge(sm_pc_data):
    sm_pc_data["limits"]["core"]["scratch"][0]["max_inclusive"] = True
    msg = _invalid(sm_pc_data)
    assert "limits.core.scratch[0]" in msg and "max_inclusive" in msg


def test_unordered_zones(sm_pc_data):
    z = sm_pc_data["zones"]
    z[0], z[1] = z[1], z[0]
    msg = _invalid(sm_pc_data)
    assert "zones[1].inner_um" in msg


def test_overlapping_zones(sm_pc_data):
    sm_pc_data["zones"][1]["inner_um"] = 20
    assert "zones[1].inner_um" in _invalid(sm_pc_data)


def test_zone_inner_not_below_outer(sm_pc_data):
    sm_pc_data["zones"][0]["outer_um"] = 0.0
    sm_pc_data["zones"][0]["inner_um"] = 0.0
    assert "zones[0]" in _invalid(sm_pc_data)


def test_duplicate_zone_names(sm_pc_data):
    sm_pc_data["zones"][1]["name"] = "core"
    assert "zones[1].name: duplicate" in _invalid(sm_pc_data)


def test_limits_must_match_zones(sm_pc_data):
    data = copy.deepcopy(sm_pc_data)
    data["limits"]["ferrule"] = data["limits"].pop("contact")
    msg = _invalid(data)
    assert "limits.ferrule" in msg and "limits.contact: missing" in msg


def test_units_must_match_zone_fields(sm_pc_data):
    sm_pc_data["units"] = "px"
    assert "zones[0]" in _invalid(sm_pc_data) and "inner_px" in _invalid(sm_pc_data)


def test_bad_enum_value(sm_pc_data):
    sm_pc_data["zone_assignment"] = "nearest"
    assert "zone_assignment" in _invalid(sm_pc_data)


def test_comments_are_ignored_everywhere(sm_pc_data):
    sm_pc_data["limits"]["$comment"] = "note"
    sm_pc_data["limits"]["core"]["$comment"] = "note"
    sm_pc_data["limits"]["core"]["scratch"][0]["$comment"] = "note"
    assert parse_rule_set(sm_pc_data).name == SM_PC
    jsonschema.validate(sm_pc_data, rule_set_json_schema())


# -- JSON Schema ----------------------------------------------------------------------------------
def test_shipped_schema_is_current():
    assert schema_path().read_text(encoding="utf-8") == schema_text(), "run: dscope rules schema --write"


def test_schema_rejects_unknown_keys(sm_pc_data):
    sm_pc_data["limits"]["core"]["blob"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sm_pc_data, rule_set_json_schema())


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_list(capsys):
    assert main(["rules", "list"]) == 0
    out = capsys.readouterr().out
    assert SM_PC in out and "ed3" not in out.split("(")[0]
    assert main(["rules", "list", "--all"]) == 0
    assert "iec61300-3-35-ed3" in capsys.readouterr().out


def test_cli_show(capsys):
    assert main(["rules", "show", SM_PC]) == 0
    out = capsys.readouterr().out
    assert "cladding 25-115 um" in out and "[2,5] max 5" in out
    assert main(["rules", "show", SM_PC, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == SM_PC
    assert main(["rules", "show", "no-such-rules"]) == 2
    assert "rule_set_unknown" in capsys.readouterr().err


def test_cli_check(tmp_path, capsys, sm_pc_data):
    assert main(["rules", "check", *map(str, SHIPPED_FILES)]) == 0
    assert capsys.readouterr().out.count("OK ") == len(SHIPPED_FILES)
    bad = tmp_path / SM_PC
    bad = bad.with_suffix(".json")
    sm_pc_data["limits"]["core"]["blob"] = []
    bad.write_text(json.dumps(sm_pc_data))
    assert main(["rules", "check", str(bad)]) == 1
    assert "limits.core.blob: unknown key" in capsys.readouterr().err
    assert main(["rules", "check", str(tmp_path / "missing.json")]) == 1


def test_cli_schema_check(capsys):
    assert main(["rules", "schema", "--check"]) == 0
    assert main(["rules", "schema"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["$id"]


def test_edges_finer_than_the_size_precision_are_rejected(sm_pc_data):
    sm_pc_data["limits"]["cladding"]["scratch"][0]["max"] = 3.005
    sm_pc_data["limits"]["cladding"]["scratch"][1]["min"] = 3.005
    msg = _invalid(sm_pc_data)
    assert "limits.cladding.scratch[0].max" in msg and "size_decimals" in msg
    sm_pc_data["size_decimals"] = 3
    assert parse_rule_set(sm_pc_data).size_decimals == 3


def test_docstring_examples_run():
    import doctest

    import dscope.inspection.grading as grading_mod
    import dscope.inspection.rules as rules_mod

    for mod in (rules_mod, grading_mod):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0, mod.__name__


def test_cli_list_marks_unreadable_files(tmp_path, capsys, sm_pc_data):
    (tmp_path / "broken.json").write_text("{ not json")
    sm_pc_data["name"] = "good"
    (tmp_path / "good.json").write_text(json.dumps(sm_pc_data))
    assert main(["rules", "list", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(l.startswith("broken") and "[unreadable]" in l for l in lines)
    assert any(l.startswith("good") and "[" not in l for l in lines)
    with pytest.raises(ConfigError) as ei:
        load_rule_set("broken", tmp_path)
    assert ei.value.code == "rule_set_invalid" and "broken.json" in ei.value.message
