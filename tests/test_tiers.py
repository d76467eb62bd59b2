"""Two-scale detection (dscope.inspection.tiers): the glass finely, everything coarsely, one object each.

Seeded synthetic end faces at the bench camera's 2048x1536 size (where the fast profile's single coarse
pass is at ~1/7 scale), zones and geometry from the ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from dscope.config import load_config
from dscope.inspection.detect import Candidate, Detection, detect
from dscope.inspection.tiers import FineTierParams, characterize_tiers, detect_tiered, merge_tiers
from dscope.inspection.types import FiberGeometry, Scale, ZoneDef
from dscope.inspection.zones import build_zone_masks, fiber_roi
from dscope.synth import DefectSpec, SynthSpec, render
from dscope.synth.spec import zones_for

CFG = load_config()
FAST = CFG.profile("fast_scan")


def _geometry(t) -> FiberGeometry:
    return FiberGeometry(center_px=tuple(t.center_px), cladding_radius_px=t.cladding_radius_px,
                         cladding_ellipse=t.ellipse, core_radius_px=t.core_radius_px,
                         core_visible=t.core_visible, glass_polarity=t.glass_polarity)


def _scene(defects, seed):
    img, t = render(SynthSpec(width=2048, height=1536, seed=seed, um_per_px=0.16, noise_sigma=2.0,
                              defects=list(defects)))
    geo = _geometry(t)
    ppu = 1.0 / t.um_per_px
    defs = [ZoneDef(n, i, o) for n, i, o in zones_for(t.fiber_type, t.core_um, t.cladding_um)]
    roi = fiber_roi(img.shape, geo, max(z.outer_um for z in defs) / 2 * ppu, 8)
    zones = build_zone_masks(img.shape, geo, defs, ppu, roi, lazy=True)
    return img, t, geo, zones, ppu


def _hits(defects, t, tid) -> list:
    """Defects whose contour box contains pixels of truth defect ``tid``."""
    out = []
    for d in defects:
        x, y, w, h = d.bbox_px
        if np.any(t.labels[y:y + h, x:x + w] == tid):
            out.append(d)
    return out


def test_fine_tier_finds_thin_glass_defects_the_coarse_pass_alone_misses():
    specs = [DefectSpec("scratch", zone="cladding", width_um=0.8, size_um=40, contrast=25, orientation_deg=20),
             DefectSpec("crack", zone="core", width_um=0.7, size_um=15, contrast=30),
             DefectSpec("pit", zone="cladding", size_um=2.5, contrast=35)]
    found_single, found_tiered = 0, 0
    for seed in (1, 2, 3):
        img, t, geo, zones, ppu = _scene(specs, seed)
        scale = Scale(t.um_per_px, "um_per_px")
        single = characterize_tiers(img, detect_tiered(img, geo, zones, FAST.detection, None, ppu)[0], geo, scale,
                                    ppu, CFG.classification)
        passes, info = detect_tiered(img, geo, zones, FAST.detection, FAST.fine_tier, ppu)
        assert info["fine_zones"] == ["core", "cladding"] and info["fine_analysis_scale"] > info["coarse_analysis_scale"]
        tiered = characterize_tiers(img, passes, geo, scale, ppu, CFG.classification)
        for d in t.defects:
            found_single += bool(_hits(single, t, d.id))
            found_tiered += bool(_hits(tiered, t, d.id))
    assert found_tiered >= found_single + 3  # the finer scale sees what 1/7 scale blurs away
    assert found_tiered >= 7  # of 9


@pytest.mark.parametrize("seed", [4, 5])
def test_defects_crossing_the_cladding_edge_are_reported_once_and_whole(seed):
    specs = [DefectSpec("chip", size_um=14, contrast=60),
             DefectSpec("contamination", on_edge=True, size_um=16, contrast=45, polarity="dark")]
    img, t, geo, zones, ppu = _scene(specs, seed)
    passes, info = detect_tiered(img, geo, zones, FAST.detection, FAST.fine_tier, ppu)
    defects = characterize_tiers(img, passes, geo, Scale(t.um_per_px, "um_per_px"), ppu, CFG.classification)
    for d in t.defects:
        hits = _hits(defects, t, d.id)
        assert len(hits) == 1, (d.type, [(h.type, h.diameter_um) for h in hits])
        # measured whole: not a piece cut at the fine box's zone border
        assert hits[0].diameter_um >= 0.7 * d.diameter_um
    ids = [d.id for d in defects]
    assert len(ids) == len(set(ids))  # one id sequence over both passes


def _det(roi, labels, cands, scale=1.0) -> Detection:
    return Detection(roi_xywh=roi, confidence_analysis=np.zeros(labels.shape, np.float32), labels=labels,
                     candidates=cands, noise_sigma=1.0, analysis_scale=scale)


def _cand(label, labels, roi) -> Candidate:
    ys, xs = np.nonzero(labels == label)
    x0, y0 = roi[:2]
    return Candidate(label=label, bbox_xywh=(int(xs.min()) + x0, int(ys.min()) + y0, int(np.ptp(xs)) + 1,
                                             int(np.ptp(ys)) + 1), evidence={}, polarity="dark", score=0.9)


def test_merge_rules_on_hand_made_label_maps():
    geo = FiberGeometry(center_px=(100.0, 100.0), cladding_radius_px=50.0)
    coarse_roi, fine_roi = (0, 0, 200, 200), (45, 45, 111, 111)
    lc = np.zeros((200, 200), np.int32)
    lc[95:105, 95:105] = 1      # inside the glass, also found by the fine pass -> dropped
    lc[98:103, 140:165] = 2     # crosses the cladding edge (r = 50) -> kept whole
    lc[20:30, 20:30] = 3        # on the ferrule only -> kept
    lc[60:64, 100:104] = 4      # inside the glass, missed by the fine pass -> kept
    lf = np.zeros((111, 111), np.int32)
    lf[50:60, 50:60] = 1        # the same pit as coarse 1
    lf[53:58, 95:105] = 2       # the inner piece of coarse 2
    lf[20:24, 20:24] = 3        # only the fine pass saw it -> kept
    coarse = _det(coarse_roi, lc, [_cand(k, lc, coarse_roi) for k in (1, 2, 3, 4)])
    fine = _det(fine_roi, lf, [_cand(k, lf, fine_roi) for k in (1, 2, 3)])
    ck, fk, counts = merge_tiers(coarse, fine, geo, fine_outer_px=50.0)
    assert [c.label for c in ck.candidates] == [2, 3, 4]
    assert [c.label for c in fk.candidates] == [1, 3]  # the pit measured by the fine pass, and its own find
    assert counts == {"coarse_dropped": 1, "fine_dropped": 1}


def test_without_fine_tier_or_fine_zones_it_is_one_pass():
    img, t, geo, zones, ppu = _scene([DefectSpec("pit", zone="contact", size_um=20, contrast=40)], 6)
    passes, info = detect_tiered(img, geo, zones, FAST.detection, None, ppu)
    assert len(passes) == 1 and info["fine_zones"] == []
    outer_only = [z for z in zones if z.name in ("adhesive", "contact")]
    passes, info = detect_tiered(img, geo, outer_only, FAST.detection, FAST.fine_tier, ppu)
    assert len(passes) == 1
    single = detect(img, geo, outer_only, FAST.detection, ppu)
    assert len(passes[0][0].candidates) == len(single.candidates)


def test_fine_tier_params_are_validated():
    with pytest.raises(ValueError):
        FineTierParams.model_validate({"zones": [], "max_analysis_side_px": 256, "margin_px": 8})
    with pytest.raises(ValueError):
        FineTierParams.model_validate({"zones": ["core"], "max_analysis_side_px": 256, "margin_px": 8, "extra": 1})
