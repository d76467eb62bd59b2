"""Synthetic fiber end-face images with exact ground truth.

Used by tests, benchmarks and the demo::

    from dscope.synth import SynthSpec, DefectSpec, render, random_spec, scenario_specs, make_dot_grid
    img, truth = render(spec)        # uint8 (H, W) (uint16 if spec.bit_depth == 16), SynthTruth
    spec = random_spec(np.random.default_rng(0), scenario="mixed", width=640, height=480)

Grey-level quantities of specs and truths are on the 8-bit scale.  Sizes in um
are measured in the fiber's circular frame (``FiberGeometry.to_normalized``).

Ground truth of a defect (:class:`DefectTruth`):

- mask (``truth.labels == id``): pixels whose rendered coverage is at least half
  of the defect's peak coverage (the drawn shape for solid shapes, the
  half-maximum contour for soft contamination and sub-pixel defects);
- ``diameter_um``: smallest enclosing circle of the mask in the circular frame
  (+1 px for the pixel extent); ``width_um``/``length_um``: the drawn line width
  and polyline length for scratches and cracks, the minimum-area rectangle of
  the mask otherwise;
- ``contrast``: mean over the mask of (image without noise) - (same image
  without this defect), after illumination and blur, in grey levels (signed);
- ``cnr = |contrast| / sqrt(noise_sigma**2 + shot_noise * background)``;
  ``detectable = cnr >= 2 and width >= 1 px``;
- ``zone``: zone of the centroid, ``zones_touched``: zones of all mask pixels
  (:func:`zones_for`; ``"outside"`` beyond the contact zone).

Defects never overlap (a gap of a few pixels is kept); a defect that cannot be
placed inside the visible frame is dropped and counted in
``truth.dropped_defects``.
"""

from dscope.synth.dotgrid import make_dot_grid
from dscope.synth.generator import render
from dscope.synth.params import DEFAULT_RANGES, SynthRanges
from dscope.synth.scenarios import LOCALIZATION_CONDITIONS, SCENARIOS, random_spec, scenario_specs
from dscope.synth.spec import (
    FIBER_TYPES,
    ZONES_MM,
    ZONES_SM,
    DefectSpec,
    DefectTruth,
    SynthSpec,
    SynthSpecError,
    SynthTruth,
    zones_for,
)

__all__ = [
    "SynthSpec", "DefectSpec", "SynthTruth", "DefectTruth", "SynthSpecError",
    "render", "random_spec", "scenario_specs", "make_dot_grid", "zones_for",
    "SynthRanges", "DEFAULT_RANGES", "FIBER_TYPES", "ZONES_SM", "ZONES_MM", "SCENARIOS", "LOCALIZATION_CONDITIONS",
]
