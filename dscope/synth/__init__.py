"""Synthetic fiber end-face images with exact ground truth.

Used by tests, benchmarks and the demo::

    from dscope.synth import SynthSpec, DefectSpec, render, random_spec, scenario_specs, make_dot_grid
    img, truth = render(spec)        # uint8 (H, W) (uint16 if spec.bit_depth == 16), SynthTruth
    spec = random_spec(np.random.default_rng(0), scenario="mixed", width=640, height=480)

Grey-level quantities of specs and truths are on the 8-bit scale.  Sizes in um
are measured in the fiber's circular frame (``FiberGeometry.to_normalized``).
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
