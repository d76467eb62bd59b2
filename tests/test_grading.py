"""Grading is a pure function of (defects, rule set): tested without images.

The edge and count cases are generated from the shipped rule-set files
themselves, so a new or edited rule set is covered automatically.  The
expected bin of a size is derived from the edge semantics (which neighbour
includes the edge), independently of ``Bin.contains``.
"""

from __future__ import annotations

import math

import pytest

from dscope.errors import DScopeError
from dscope.inspection.grading import defect_zones, failure_reasons, grade, guarded_zones, make_defect
from dscope.inspection.rules import RULE_CLASSES, list_rule_sets, load_rule_set, parse_rule_set

ALL_NAMES = list_rule_sets(include_placeholders=True)
#: One defect type per rule class (the "defect" class is walked with each of its types in turn).
TYPES_OF_CLASS = {"scratch": ("scratch",), "crack": ("crack",), "defect": ("pit", "chip", "contamination")}


def _load(name):
    return load_rule_set(name, allow_placeholder=True)


RULE_SETS = {n: _load(n) for n in ALL_NAMES}


def _edge_cases():
    """(rule set, zone, class, size, expected bin index) around every finite bin edge."""
    cases = []
    for name, rs in RULE_SETS.items():
        step = 10.0 ** -rs.size_decimals
        for zone in rs.zone_names:
            for cls in RULE_CLASSES:
                bins = rs.bins(zone, cls)
                cases.append((name, zone, cls, 0.0, 0, "zero"))
                for i in range(len(bins) - 1):
                    edge = bins[i].hi
                    assert edge == bins[i + 1].lo  # shipped sets have no gaps
                    at = i if bins[i].max_inclusive else i + 1
                    cases += [
                        (name, zone, cls, edge - step, i, "below"),
                        (name, zone, cls, edge, at, "at"),
                        (name, zone, cls, edge + 1e-9, at, "at+float-noise"),
                        (name, zone, cls, edge - 1e-9, at, "at-float-noise"),
                        (name, zone, cls, edge + step, i + 1, "above"),
                    ]
    return cases


EDGE_CASES = _edge_cases()


def test_every_shipped_rule_set_has_edges_to_walk():
    names_with_edges = {c[0] for c in EDGE_CASES if c[5] == "at"}
    assert set(ALL_NAMES) == names_with_edges
    assert {"iec61300-3-35-ed2-sm-pc", "iec61300-3-35-ed2-sm-apc", "iec61300-3-35-ed2-mm"} <= set(ALL_NAMES)


@pytest.mark.parametrize("name,zone,cls,size,expected_bin,where", EDGE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[5]}-{c[3]:.4g}" for c in EDGE_CASES])
def test_bin_edges(name, zone, cls, size, expected_bin, where):
    rs = RULE_SETS[name]
    b = rs.bins(zone, cls)[expected_bin]
    for k, dtype in enumerate(TYPES_OF_CLASS[cls]):
        d = make_defect(f"d{k}", dtype, zone, [zone], size)
        g = grade([d], rs, scale_known=True)
        if b.max_count == 0:
            assert g.status == "FAIL"
            assert len(g.violations) == 1
            v = g.violations[0]
            assert v.zone == zone and v.defect_ids == [d.id]
            assert v.rule == f"{zone}.{cls}{b.label()}"
            assert zone in v.message and dtype in v.message
        else:  # a single defect never breaks a limit of >= 1 or no limit
            assert g.status == "PASS", g.violations
            assert g.violations == []


def _count_cases():
    cases = []
    for name, rs in RULE_SETS.items():
        step = 10.0 ** -rs.size_decimals
        for zone in rs.zone_names:
            for cls in RULE_CLASSES:
                for i, b in enumerate(rs.bins(zone, cls)):
                    size = (b.lo + b.hi) / 2 if math.isfinite(b.hi) else b.lo + 1.0
                    if not b.min_inclusive and size <= b.lo + step:
                        size = b.lo + step
                    cases.append((name, zone, cls, i, round(size, rs.size_decimals)))
    return cases


COUNT_CASES = _count_cases()


@pytest.mark.parametrize("name,zone,cls,bin_index,size", COUNT_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-bin{c[3]}" for c in COUNT_CASES])
def test_count_limits_n_and_n_plus_1(name, zone, cls, bin_index, size):
    rs = RULE_SETS[name]
    b = rs.bins(zone, cls)[bin_index]
    dtype = TYPES_OF_CLASS[cls][bin_index % len(TYPES_OF_CLASS[cls])]

    def defects(k):
        return [make_defect(f"d{j}", dtype, zone, [zone], size) for j in range(k)]

    if b.max_count is None:
        g = grade(defects(60), rs, scale_known=True)
        assert g.status == "PASS"
        return
    n = b.max_count
    ok = grade(defects(n), rs, scale_known=True)
    assert ok.status == "PASS", ok.violations
    bad = grade(defects(n + 1), rs, scale_known=True)
    assert bad.status == "FAIL"
    assert all(v.rule == f"{zone}.{cls}{b.label()}" for v in bad.violations)
    if n == 0:
        assert len(bad.violations) == 1 and bad.violations[0].defect_ids == ["d0"]
    else:
        assert len(bad.violations) == 1
        v = bad.violations[0]
        assert sorted(v.defect_ids) == sorted(f"d{j}" for j in range(n + 1))
        assert v.message.startswith(f"{n + 1} ") and v.message.endswith(f"in {zone}, {n} allowed")


def test_messages_match_the_issue_wording():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    g = grade([make_defect("s1", "scratch", "cladding", ["cladding"], 4.2)], rs, scale_known=True)
    assert [v.message for v in g.violations] == ["scratch 4.2 um wide > 3 um limit in cladding"]
    pits = [make_defect(f"p{i}", "pit", "cladding", ["cladding"], 3.0) for i in range(6)]
    g = grade(pits, rs, scale_known=True)
    assert [v.message for v in g.violations] == ["6 defects of 2-5 um in cladding, 5 allowed"]
    assert g.violations[0].rule == "cladding.defect[2,5]"
    assert failure_reasons(g) == "6 defects of 2-5 um in cladding, 5 allowed"


def test_counts_are_per_bin_not_per_class():
    """5 defects of 2-5 um plus any number < 2 um pass; the bins are counted separately."""
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    bins = rs.bins("cladding", "defect")
    capped = [b for b in bins if b.max_count]
    unlimited = [b for b in bins if b.max_count is None]
    assert capped and unlimited
    b, u = capped[0], unlimited[0]
    mid = (b.lo + b.hi) / 2
    small = u.lo + (u.hi - u.lo) / 2
    ds = [make_defect(f"a{i}", "pit", "cladding", ["cladding"], mid) for i in range(b.max_count)]
    ds += [make_defect(f"b{i}", "contamination", "cladding", ["cladding"], small) for i in range(30)]
    assert grade(ds, rs, scale_known=True).status == "PASS"
    ds.append(make_defect("x", "chip", "cladding", ["cladding"], mid))
    assert grade(ds, rs, scale_known=True).status == "FAIL"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_multi_zone_scratch_counts_in_every_touched_zone(name):
    rs = RULE_SETS[name]
    centroid_rs = rs.model_copy(update={"zone_assignment": "centroid"})
    zones = rs.zone_names
    for z1, z2 in zip(zones, zones[1:]):
        for cls in ("scratch", "defect", "crack"):
            dtype = TYPES_OF_CLASS[cls][0]
            sizes = sorted({b.lo for b in rs.bins(z1, cls)} | {b.lo for b in rs.bins(z2, cls)} | {0.5})
            for size in sizes:
                d = make_defect("m", dtype, z2, [z1, z2], size)
                forbidden = {
                    z for z in (z1, z2)
                    if any(b.max_count == 0 and b.contains(round(size, rs.size_decimals)) for b in rs.bins(z, cls))
                }
                g = grade([d], rs, scale_known=True)
                assert {v.zone for v in g.violations} == forbidden
                assert all(v.defect_ids == ["m"] for v in g.violations)
                gc = grade([d], centroid_rs, scale_known=True)
                assert {v.zone for v in gc.violations} == forbidden & {z2}


def test_touched_is_stricter_than_centroid_on_a_core_crossing_scratch():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    assert rs.zone_assignment == "touched"  # the documented default
    d = make_defect("s", "scratch", "cladding", ["core", "cladding"], 1.0)
    assert defect_zones(d, rs) == ["core", "cladding"]
    g = grade([d], rs, scale_known=True)
    assert g.status == "FAIL" and [v.zone for v in g.violations] == ["core"]
    c = rs.model_copy(update={"zone_assignment": "centroid"})
    assert defect_zones(d, c) == ["cladding"]
    assert grade([d], c, scale_known=True).status == "PASS"


def test_count_in_multiple_zones_counts_each_zone():
    """APC core allows 4 scratches <= 3 um: 5 scratches crossing core and cladding break it."""
    rs = RULE_SETS["iec61300-3-35-ed2-sm-apc"]
    capped = [b for b in rs.bins("core", "scratch") if b.max_count]
    assert capped
    b = capped[0]
    size = (b.lo + b.hi) / 2
    ds = [make_defect(f"s{i}", "scratch", "cladding", ["core", "cladding"], size) for i in range(b.max_count + 1)]
    g = grade(ds, rs, scale_known=True)
    assert g.status == "FAIL"
    assert [v.zone for v in g.violations] == ["core"]
    assert len(g.violations[0].defect_ids) == b.max_count + 1


def test_zones_outside_the_rule_set_are_not_graded():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    d = make_defect("o", "pit", "outside", ["outside"], 50.0)
    assert grade([d], rs, scale_known=True).status == "PASS"


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if RULE_SETS[n].units == "um"])
def test_pixel_only_path_is_ungraded(name):
    rs = RULE_SETS[name]
    zone = rs.zone_names[0]
    for defects in ([], [make_defect("c", "crack", zone, [zone], None, size_px=9.0)]):
        g = grade(defects, rs, scale_known=False, guard_band_px=1.0)
        assert g.status == "UNGRADED"
        assert g.violations == []
        assert g.guard_band_px is None  # no decision rule was applied
        assert "scale" in g.reason and rs.name in g.reason


def _px_rule_set(um_name: str, px_per_um: float):
    """A px rule set made from an um one (zones and edges multiplied by px_per_um)."""
    data = RULE_SETS[um_name].model_dump(mode="json")
    data["name"] = "px-variant"
    data["units"] = "px"
    for z in data["zones"]:
        z["inner_px"], z["outer_px"] = z.pop("inner_um") * px_per_um, z.pop("outer_um") * px_per_um
    for zl in data["limits"].values():
        for bins in zl.values():
            for b in bins or []:
                b["min"] = None if b["min"] is None else b["min"] * px_per_um
                b["max"] = None if b["max"] is None else b["max"] * px_per_um
    return parse_rule_set(data)


def test_px_rule_set_grades_without_a_scale_on_pixel_sizes():
    k = 2.0
    um_rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    px_rs = _px_rule_set("iec61300-3-35-ed2-sm-pc", k)
    assert px_rs.units == "px"
    assert [z.outer_um for z in px_rs.zone_defs()] == [z.outer_um * k for z in um_rs.zone_defs()]
    assert px_rs.zone_px_per_um(3.7) == 1.0 and um_rs.zone_px_per_um(3.7) == 3.7
    for zone in um_rs.zone_names:
        for cls in RULE_CLASSES:
            dtype = TYPES_OF_CLASS[cls][0]
            for b in um_rs.bins(zone, cls):
                size_um = b.lo + 0.5 if b.max is None else (b.lo + b.hi) / 2
                # um size deliberately absent: a px rule set must use the px size
                d = make_defect("p", dtype, zone, [zone], None, size_px=size_um * k)
                g = grade([d], px_rs, scale_known=False)
                ref = grade([make_defect("p", dtype, zone, [zone], size_um)], um_rs, scale_known=True)
                assert g.status == ref.status
                assert [v.zone for v in g.violations] == [v.zone for v in ref.violations]
                assert all(" px" in v.message and " um" not in v.message for v in g.violations)


def test_missing_or_invalid_sizes_are_ungraded_never_pass():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    for bad in (None, float("nan"), float("inf"), -1.0):
        g = grade([make_defect("q", "pit", "cladding", ["cladding"], bad)], rs, scale_known=True)
        assert g.status == "UNGRADED" and "q" in g.reason
    g = grade([make_defect("t", "blob", "cladding", ["cladding"], 1.0)], rs, scale_known=True)
    assert g.status == "UNGRADED" and "blob" in g.reason


def test_analyzed_zones_restricts_grading_and_says_so():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    d = make_defect("s", "scratch", "cladding", ["cladding"], 50.0)
    full = grade([d], rs, scale_known=True)
    assert full.status == "FAIL" and full.reason is None
    only_core = grade([d], rs, scale_known=True, analyzed_zones=["core"])
    assert only_core.status == "PASS"
    assert "cladding" in only_core.reason and "not graded" in only_core.reason
    assert grade([d], rs, scale_known=True, analyzed_zones=["cladding"]).status == "FAIL"
    empty = grade([d], rs, scale_known=True, analyzed_zones=[])
    assert empty.status == "UNGRADED"
    with pytest.raises(DScopeError) as ei:
        grade([d], rs, scale_known=True, analyzed_zones=["ferrule"])
    assert ei.value.code == "bad_argument" and "ferrule" in ei.value.message


def test_omitted_crack_limits_mean_none_allowed():
    data = RULE_SETS["iec61300-3-35-ed2-sm-pc"].model_dump(mode="json")
    data["name"] = "no-crack-bins"
    for zl in data["limits"].values():
        zl.pop("crack")
    rs = parse_rule_set(data)
    scratch_ok_zones = 0
    for zone in rs.zone_names:
        g = grade([make_defect("c", "crack", zone, [zone], 0.5)], rs, scale_known=True)
        assert g.status == "FAIL" and g.violations[0].zone == zone
        # the zone's scratch limits are not borrowed for cracks
        if grade([make_defect("s", "scratch", zone, [zone], 0.5)], rs, scale_known=True).status == "PASS":
            scratch_ok_zones += 1
    assert scratch_ok_zones >= 1


def test_bin_gaps_are_not_limited_when_allowed():
    data = RULE_SETS["iec61300-3-35-ed2-sm-pc"].model_dump(mode="json")
    data["name"] = "gappy"
    data["allow_bin_gaps"] = True
    data["limits"]["cladding"]["defect"] = [
        {"min": 2, "min_inclusive": True, "max": 5, "max_inclusive": True, "max_count": 0}
    ]
    rs = parse_rule_set(data)
    assert grade([make_defect("a", "pit", "cladding", ["cladding"], 1.0)], rs, scale_known=True).status == "PASS"
    assert grade([make_defect("a", "pit", "cladding", ["cladding"], 9.0)], rs, scale_known=True).status == "PASS"
    assert grade([make_defect("a", "pit", "cladding", ["cladding"], 2.0)], rs, scale_known=True).status == "FAIL"


def test_violations_are_ordered_by_zone_then_class():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    ds = [
        make_defect("c1", "chip", "contact", ["contact"], 40.0),
        make_defect("k1", "crack", "cladding", ["cladding"], 1.0),
        make_defect("p1", "pit", "core", ["core"], 1.0),
        make_defect("s1", "scratch", "cladding", ["cladding"], 9.0),
    ]
    g = grade(ds, rs, scale_known=True)
    order = [(rs.zone_names.index(v.zone), RULE_CLASSES.index(v.rule.split(".")[1].split("[")[0].split("(")[0]))
             for v in g.violations]
    assert order == sorted(order) and len(order) == 4


# -- truth side of the end-to-end benchmark (synthetic images with exact ground truth) ----------
def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_grading.py"
    spec = importlib.util.spec_from_file_location("bench_grading", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_truth_verdict_from_synthetic_ground_truth():
    synth = pytest.importorskip("dscope.synth")
    bench = _bench_module()
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    base = dict(width=480, height=360, fiber_type="sm-pc", um_per_px=125.0 / 200, noise_sigma=1.5, seed=3)
    img, truth = synth.render(synth.SynthSpec(**base))
    assert truth.has_fiber and truth.defects == []
    assert bench.truth_verdict(truth, rs)[0] == "PASS"
    assert bench.zones_agree(truth, rs)

    pit = synth.DefectSpec(type="pit", zone="core", size_um=6.0, contrast=70.0)
    img, truth = synth.render(synth.SynthSpec(**base, defects=[pit]))
    assert len(truth.defects) == 1 and truth.defects[0].detectable
    status, g = bench.truth_verdict(truth, rs)
    assert status == "FAIL"
    assert "core" in {v.zone for v in g.violations}
    assert all(v.defect_ids == [f"t{truth.defects[0].id}"] for v in g.violations)
    # the visibility diagnostic of a failing image is the CNR of the defect that fails it
    assert bench.failing_defects_max_cnr(truth, g) == pytest.approx(truth.defects[0].cnr)
    assert bench.failing_defects_max_cnr(truth, grade([], rs, scale_known=True)) is None
    # undetectable defects are left out of the truth verdict
    faint = synth.DefectSpec(type="pit", zone="core", size_um=6.0, contrast=0.5)
    img, truth = synth.render(synth.SynthSpec(**base, defects=[faint]))
    assert truth.defects and not truth.defects[0].detectable
    assert bench.truth_verdict(truth, rs)[0] == "PASS"
    assert bench.truth_verdict(truth, rs, detectable_only=False)[0] == "FAIL"
    # no fiber: the truth verdict is ERROR, never PASS
    img, truth = synth.render(synth.SynthSpec(width=320, height=240, has_fiber=False, seed=1))
    assert bench.truth_verdict(truth, rs)[0] == "ERROR"


def test_defects_outside_graded_zones_do_not_block_grading():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    unsized_outside = make_defect("u", "pit", "outside", ["outside"], None)
    assert grade([unsized_outside], rs, scale_known=True).status == "PASS"
    unsized_contact = make_defect("u", "pit", "contact", ["contact"], None)
    assert grade([unsized_contact], rs, scale_known=True).status == "UNGRADED"
    assert grade([unsized_contact], rs, scale_known=True, analyzed_zones=["core"]).status == "PASS"


# ---- guarded acceptance (guard_band_px) --------------------------------------------------------

UM_PER_PX = 0.35  # a single-mode scope at ~2.9 px/um


def _guard_edge_cases():
    """(rule set, zone, class, bin index, limit edge) of every finite upper bin edge of every um rule set."""
    cases = []
    for name, rs in RULE_SETS.items():
        if rs.units != "um":
            continue
        for zone in rs.zone_names:
            for cls in RULE_CLASSES:
                bins = rs.bins(zone, cls)
                cases += [(name, zone, cls, i, bins[i].hi) for i in range(len(bins) - 1)]
    return cases


GUARD_CASES = _guard_edge_cases()


@pytest.mark.parametrize("name,zone,cls,i,edge", GUARD_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-edge{c[3]}" for c in GUARD_CASES])
def test_guard_band_moves_every_edge_down_by_one_pixel(name, zone, cls, i, edge):
    """With a 1 px band a size counts in the upper bin from (edge - 1 px) on; without it, only from the edge."""
    rs = RULE_SETS[name]
    bins = rs.bins(zone, cls)
    dtype = TYPES_OF_CLASS[cls][0]
    step = 10.0 ** -rs.size_decimals
    # just inside the guard band: graded as (edge + step) with the band -> the upper bin
    size_in = round(edge - UM_PER_PX + 2 * step, rs.size_decimals)
    # just below the guard band: graded as (edge - step) -> still the lower bin
    size_out = round(edge - UM_PER_PX - step, rs.size_decimals)
    if size_out < 0:
        pytest.skip("edge closer to 0 than one pixel")
    for size, want_guarded in ((size_in, i + 1), (size_out, i)):
        d = make_defect("d", dtype, zone, [zone], size, size_px=size / UM_PER_PX)
        plain = grade([d], rs, scale_known=True)
        guarded = grade([d], rs, scale_known=True, guard_band_px=1.0)
        # one defect: a violation exactly when its bin allows none
        assert (plain.status == "FAIL") == (bins[i].max_count == 0)
        assert (guarded.status == "FAIL") == (bins[want_guarded].max_count == 0)
        assert guarded.guard_band_px == 1.0 and plain.guard_band_px == 0.0
        for v in guarded.violations:
            # the measured size is reported, and the band beside it
            assert f"{dtype} {size:g} um" in v.message and "(+0.35 um guard band)" in v.message


def test_guard_band_uses_each_defects_own_scale():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    coarse = make_defect("c", "pit", "cladding", ["cladding"], 4.9, size_px=4.9 / 0.35)  # 0.35 um/px
    fine = make_defect("f", "pit", "cladding", ["cladding"], 4.9, size_px=4.9 / 0.05)  # 0.05 um/px
    assert grade([coarse], rs, scale_known=True, guard_band_px=1.0).status == "FAIL"
    assert grade([fine], rs, scale_known=True, guard_band_px=1.0).status == "PASS"
    assert grade([fine], rs, scale_known=True, guard_band_px=3.0).status == "FAIL"  # 4.9 + 0.15


def test_guard_band_on_count_limits():
    """Five 1.8 um pits are 'no limit' as measured; with the band they are five of 2-5 um (allowed), six fail."""
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]

    def pits(n):
        return [make_defect(f"p{k}", "pit", "cladding", ["cladding"], 1.8, size_px=1.8 / UM_PER_PX) for k in range(n)]

    assert grade(pits(6), rs, scale_known=True).status == "PASS"
    assert grade(pits(5), rs, scale_known=True, guard_band_px=1.0).status == "PASS"
    g = grade(pits(6), rs, scale_known=True, guard_band_px=1.0)
    assert g.status == "FAIL" and len(g.violations) == 1
    assert g.violations[0].message == ("6 defects of 2-5 um in cladding, 5 allowed "
                                       "(sizes with the 1 px guard band)")
    assert sorted(g.violations[0].defect_ids) == sorted(f"p{k}" for k in range(6))


def test_guard_band_on_a_px_rule_set_is_in_pixels():
    px_rs = _px_rule_set("iec61300-3-35-ed2-sm-pc", 2.0)  # 2 px per um: cladding defect limit 10 px
    d = make_defect("p", "pit", "cladding", ["cladding"], None, size_px=9.5)
    assert grade([d], px_rs, scale_known=False).status == "PASS"
    g = grade([d], px_rs, scale_known=False, guard_band_px=1.0)
    assert g.status == "FAIL" and "(+1 px guard band)" in g.violations[0].message


def test_guard_band_without_a_pixel_size_grades_the_measured_size():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]
    d = make_defect("p", "pit", "cladding", ["cladding"], 4.9, size_px=0.0)  # no per-defect scale
    assert grade([d], rs, scale_known=True, guard_band_px=1.0).status == "PASS"


def _zone_guard_cases():
    """(rule set, inner zone, outer zone, boundary radius) of every inner zone boundary of every um rule set."""
    cases = []
    for name, rs in RULE_SETS.items():
        if rs.units != "um":
            continue
        zs = rs.zone_defs()
        cases += [(name, a.name, b.name, a.outer_um / 2.0) for a, b in zip(zs, zs[1:])]
    return cases


ZONE_GUARD_CASES = _zone_guard_cases()


@pytest.mark.parametrize("name,inner,outer,r_edge", ZONE_GUARD_CASES,
                         ids=[f"{c[0]}-{c[1]}|{c[2]}" for c in ZONE_GUARD_CASES])
def test_guard_band_reaches_across_every_zone_boundary(name, inner, outer, r_edge):
    """A defect measured in one zone, ending within the band of its neighbour, also counts there (both sides)."""
    rs = RULE_SETS[name]
    band = round(UM_PER_PX, rs.size_decimals)  # 1 px at 0.35 um/px
    step = 10.0 ** -rs.size_decimals
    size = 12.0  # diameter in um (a chip): its radial extent is set independently below
    for home, other, extent_in, extent_out in (
        # outside the boundary, reaching inward to just within / just beyond the band
        (outer, inner, (r_edge + band - step, r_edge + 8), (r_edge + band + step, r_edge + 8)),
        # inside the boundary, reaching outward ([inner, outer) is half-open: the edge belongs outside)
        (inner, outer, (r_edge - 8, r_edge - band), (r_edge - 8, r_edge - band - 2 * step)),
    ):
        for extent, reaches in ((extent_in, True), (extent_out, False)):
            d = make_defect("h", "chip", home, [home], size, size_px=size / UM_PER_PX)
            d.radial_extent_um = extent
            assert (other in guarded_zones(d, rs, band)) == reaches and home in guarded_zones(d, rs, band)
            assert guarded_zones(d, rs, 0.0) == []  # no band: the measured zones only
            plain = grade([d], rs, scale_known=True)
            guarded = grade([d], rs, scale_known=True, guard_band_px=1.0)
            bins = rs.bins(other, "defect")
            i = next(k for k, b in enumerate(bins) if b.contains(size + band))
            fails_there = bins[i].max_count == 0
            in_other = [v for v in guarded.violations if v.zone == other]
            assert bool(in_other) == (reaches and fails_there)
            assert not [v for v in plain.violations if v.zone == other]
            for v in in_other:
                assert v.message.endswith("(reaches the zone within the guard band)")


def test_zone_guard_band_needs_touched_assignment_and_a_radial_extent():
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]  # cladding zone: radius < 57.5 um; defects > 5 um none allowed
    chip = make_defect("h", "chip", "adhesive", ["adhesive"], 17.6, size_px=17.6 / UM_PER_PX)
    assert grade([chip], rs, scale_known=True, guard_band_px=1.0).status == "PASS"  # no extent: measured zones
    chip.radial_extent_um = (57.7, 66.0)  # 0.2 um outside the cladding zone, within 1 px (0.35 um)
    g = grade([chip], rs, scale_known=True, guard_band_px=1.0)
    assert g.status == "FAIL" and [v.zone for v in g.violations] == ["cladding"]
    assert g.violations[0].message == ("chip 17.6 um diameter (+0.35 um guard band) > 5 um limit in cladding "
                                       "(reaches the zone within the guard band)")
    assert grade([chip], rs, scale_known=True).status == "PASS"
    centroid = rs.model_copy(update={"zone_assignment": "centroid"})
    assert grade([chip], centroid, scale_known=True, guard_band_px=1.0).status == "PASS"
    # a px rule set reads the extent in px
    px_rs = _px_rule_set("iec61300-3-35-ed2-sm-pc", 2.0)  # cladding zone radius < 115 px
    d = make_defect("h", "chip", "adhesive", ["adhesive"], None, size_px=30.0)
    d.radial_extent_px = (115.8, 130.0)
    assert grade([d], px_rs, scale_known=False, guard_band_px=1.0).status == "FAIL"
    d.radial_extent_px = (116.2, 130.0)
    assert grade([d], px_rs, scale_known=False, guard_band_px=1.0).status == "PASS"


def test_zone_guard_band_counts_in_count_limits_and_says_so():
    """Five 3 um pits in the cladding are allowed; a sixth reaching it from the core within the band is not."""
    rs = RULE_SETS["iec61300-3-35-ed2-sm-pc"]  # cladding: 5 of 2-5 um; core: none; core zone radius < 12.5 um

    def pit(k, zone, extent):
        d = make_defect(f"p{k}", "pit", zone, [zone], 3.0, size_px=3.0 / UM_PER_PX)
        d.radial_extent_um = extent
        return d

    five = [pit(k, "cladding", (30.0, 33.0)) for k in range(5)]
    sixth = pit(5, "adhesive", (57.6, 60.6))  # adhesive zone from 57.5 um: reaches the cladding within 0.35 um
    assert grade(five + [sixth], rs, scale_known=True).status == "PASS"  # adhesive: no limit
    g = grade(five + [sixth], rs, scale_known=True, guard_band_px=1.0)
    assert g.status == "FAIL" and len(g.violations) == 1 and g.violations[0].zone == "cladding"
    assert g.violations[0].message.endswith("(1 of them reach the zone within the guard band)")
    assert sorted(g.violations[0].defect_ids) == [f"p{k}" for k in range(6)]


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf])
def test_guard_band_must_be_a_finite_non_negative_number(bad):
    with pytest.raises(DScopeError) as ei:
        grade([], RULE_SETS["iec61300-3-35-ed2-sm-pc"], scale_known=True, guard_band_px=bad)
    assert ei.value.code == "bad_argument"


def _bench_row(seed_set, truth, pipeline, *, truth_all=None, fiber_type="sm-pc", cnr=None, classes=()):
    return {"seed_set": seed_set, "fiber_type": fiber_type, "truth": truth, "pipeline": pipeline,
            "truth_all_defects": truth_all or truth, "zones_agree": True, "truth_fail_max_cnr": cnr,
            "truth_rule_classes": list(classes)}


def test_bench_summary_pools_seeds_by_image_not_by_seed_share():
    bench = _bench_module()
    seed_a = [_bench_row(7, "FAIL", "PASS", cnr=2.5, classes=["defect"]), _bench_row(7, "FAIL", "FAIL"),
              _bench_row(7, "PASS", "PASS"), _bench_row(7, "PASS", "FAIL", truth_all="FAIL")]
    seed_b = [_bench_row(11, "FAIL", "FAIL") for _ in range(3)] + [_bench_row(11, "ERROR", "ERROR")]
    a, b = bench.summarize(seed_a), bench.summarize(seed_b)
    pooled = bench.summarize(seed_a + seed_b)
    assert (a["false_passes"], a["truth_fail_images"], a["false_pass_share_of_truth_fail"]) == (1, 2, 0.5)
    assert b["false_pass_share_of_truth_fail"] == 0.0
    # pooled over images: 1 of 5 truth-FAIL images (0.2), not the mean of the seeds' shares (0.25)
    assert (pooled["false_passes"], pooled["truth_fail_images"]) == (1, 5)
    assert pooled["false_pass_share_of_truth_fail"] == pytest.approx(0.2)
    assert pooled["agreement"] == pytest.approx(6 / 8)
    # the false FAIL is real in the full truth (an undetectable defect): the optional agreement accepts it
    assert pooled["agreement_undetectable_optional"] == pytest.approx(7 / 8)
    assert pooled["false_fail"] == 1 and pooled["false_fail_also_fail_with_undetectable"] == 1
    assert pooled["confusion_truth_rows_pipeline_cols"]["FAIL"]["PASS"] == 1
    assert pooled["false_pass_failing_max_cnr"] == [2.5]
    assert pooled["false_pass_truth_rule_classes"] == {"defect": 1}
    # truth-only rows (no pipeline verdict) give the truth side only
    truth_only = bench.summarize([{k: v for k, v in r.items() if k != "pipeline"} for r in seed_a])
    assert "agreement" not in truth_only and truth_only["truth_counts"] == {"FAIL": 2, "PASS": 2}


def test_bench_seed_list_is_validated():
    bench = _bench_module()
    assert bench._parse_args(["--seeds", "7, 11,23"]).seed_list == [7, 11, 23]
    assert bench._parse_args(["--seed", "5"]).seed_list == [5]
    for bad in (["--seeds", "7,x"], ["--seeds", ","], ["--jobs", "0"]):
        with pytest.raises(SystemExit):
            bench._parse_args(bad)
