"""Random, reproducible specs for tests, benchmarks and the demo.

:func:`random_spec` draws one :class:`SynthSpec` for a named scenario from a
NumPy ``Generator``; :func:`scenario_specs` yields ``n`` reproducible specs
(spec ``i`` depends only on ``(seed, i, scenario)``).  The ranges below are the
generator's *distribution* settings (how varied the synthetic data is), not
inspection thresholds.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator

import numpy as np

from dscope.inspection.types import DEFECT_TYPES, ZONE_NAMES
from dscope.synth.spec import FIBER_TYPES, NO_FIBER_KINDS, DefectSpec, SynthSpec, SynthSpecError

#: Scenario names accepted by :func:`random_spec`.
SCENARIOS: tuple[str, ...] = ("mixed", "clean", "localization", "no_fiber", *DEFECT_TYPES, "demo")

#: Fiber types and their draw weights (the standard 125 um fibers dominate).
FIBER_WEIGHTS: dict[str, float] = {
    "sm-pc": 0.34, "sm-apc": 0.14, "mm": 0.2, "mm-62.5": 0.1, "lc-200": 0.12, "lc-1000": 0.10,
}
#: Cladding diameter as a fraction of the shorter image side, per fiber mode.
CLADDING_FRACTION = {"sm": (0.25, 0.55), "mm": (0.25, 0.55), "large_core": (0.45, 0.85)}
#: Smallest cladding diameter drawn (px), when the frame allows it.
MIN_CLADDING_PX = 100.0
#: Localization conditions ("hard geometry/appearance") drawn by the "localization" scenario.
LOCALIZATION_CONDITIONS: tuple[str, ...] = (
    "small_fiber", "large_fiber", "off_center", "partly_outside", "ellipse", "analog_pixels",
    "low_contrast", "bright_glass", "dark_glass", "heavy_blur", "heavy_noise", "jpeg", "black_borders",
    "uneven_illumination", "core_invisible", "edge_particles",
)
#: No-fiber frame kinds and draw weights.
NO_FIBER_WEIGHTS = {"blank": 0.4, "black": 0.2, "white": 0.2, "noise": 0.2}
#: Analog-capture pixel aspect (fiber appears as an ellipse of this axis ratio).
ANALOG_AXIS_RATIO = 1.09
#: APC polish angle; the end face is foreshortened by 1/cos(angle).
APC_ANGLE_DEG = 8.0

#: The demo / CLI default mix: (scenario, overrides) cycled by index.
DEMO_PLAN: tuple[tuple[str, dict], ...] = (
    ("clean", {"fiber_type": "sm-pc"}),
    ("mixed", {"fiber_type": "sm-pc", "_min_defects": 3}),
    ("scratch", {"fiber_type": "mm"}),
    ("clean", {"fiber_type": "mm-62.5", "glass_polarity": "bright"}),
    ("pit", {"fiber_type": "sm-apc"}),
    ("no_fiber", {"no_fiber_kind": "blank"}),
    ("contamination", {"fiber_type": "sm-pc"}),
    ("chip", {"fiber_type": "sm-pc"}),
    ("mixed", {"fiber_type": "lc-200", "_min_defects": 2}),
    ("crack", {"fiber_type": "mm"}),
    ("clean", {"fiber_type": "sm-pc", "axis_ratio": ANALOG_AXIS_RATIO, "ellipse_angle_deg": 0.0}),
    ("localization", {"fiber_type": "sm-pc"}),
)

_PRE_KEYS = ("width", "height", "fiber_type", "bit_depth")


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _choice(rng, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _base(rng, W: int, H: int, fiber_type: str | None, bit_depth: int) -> dict:
    ft = fiber_type or _choice(rng, FIBER_WEIGHTS)
    info = FIBER_TYPES.get(ft)
    mode = info.mode if info else "sm"
    lo, hi = CLADDING_FRACTION[mode]
    short = min(W, H)
    d_px = max(rng.uniform(lo, hi) * short, min(MIN_CLADDING_PX, 0.9 * short))
    clad = info.cladding_um if info else 125.0
    u = rng.uniform()
    if ft == "sm-apc":
        q, ang = 1.0 / math.cos(math.radians(APC_ANGLE_DEG)), float(rng.uniform(0, 180))
    elif u < 0.2:
        q, ang = ANALOG_AXIS_RATIO, float(rng.choice([0.0, 90.0]))
    elif u < 0.35:
        q, ang = float(rng.uniform(1.0, 1.04)), float(rng.uniform(0, 180))
    else:
        q, ang = 1.0, 0.0
    F = float(rng.uniform(115, 190))
    pol = "dark" if rng.uniform() < 0.65 else "bright"
    room = (F - 15) if pol == "dark" else (245 - F)
    gc = float(min(rng.uniform(18, 75), room))
    d = dict(
        width=W, height=H, bit_depth=bit_depth, seed=int(rng.integers(0, 2**31 - 1)), has_fiber=True,
        fiber_type=ft, um_per_px=clad / d_px,
        center_offset_px=(float(rng.normal(0, 0.04 * short)), float(rng.normal(0, 0.04 * short))),
        axis_ratio=q, ellipse_angle_deg=ang, core_visible=bool(rng.uniform() < 0.75),
        glass_polarity=pol, ferrule_level=F, glass_contrast=gc, glass_variation=float(rng.uniform(0.8, 3.0)),
        core_delta=float(rng.choice([-1, 1]) * rng.uniform(3, 12)),
        epoxy_ring=bool(rng.uniform() < 0.7), epoxy_width_um=float(rng.uniform(1.5, 5.0)),
        epoxy_delta=float(rng.uniform(-45, -10) if rng.uniform() < 0.8 else rng.uniform(8, 25)),
        rim_line_depth=float(rng.uniform(8, 35)), rim_line_width_px=float(rng.uniform(0.7, 1.6)),
        ferrule_texture=float(rng.uniform(3, 9)), texture_scale_px=float(rng.uniform(0.8, 2.0)),
        ferrule_mottle=float(rng.uniform(1.5, 6)),
        illum_gradient=float(rng.uniform(0, 0.15)), illum_gradient_angle_deg=float(rng.uniform(0, 360)),
        vignetting=float(rng.uniform(0, 0.15)), blur_sigma_px=float(rng.uniform(0.5, 1.4)),
        noise_sigma=float(rng.uniform(1.0, 4.0)),
        shot_noise=float(rng.uniform(0.02, 0.1)) if rng.uniform() < 0.3 else 0.0,
        jpeg_quality=int(rng.integers(70, 96)) if (rng.uniform() < 0.15 and bit_depth == 8) else None,
    )
    return d


def _draw_defect(rng, dtype: str, zone: str | None, spec_d: dict) -> DefectSpec:
    """One defect with class-typical size, polarity and contrast."""
    info = FIBER_TYPES.get(spec_d["fiber_type"])
    clad = info.cladding_um if info else 125.0
    upp = spec_d["um_per_px"]
    noise = spec_d["noise_sigma"]
    if dtype == "scratch":
        w_px = _loguniform(rng, 1.0, 8.0)
        return DefectSpec(
            "scratch", polarity="bright" if rng.uniform() < 0.3 else "dark", zone=zone,
            size_um=float(clad * rng.uniform(0.12, 0.9)), width_um=w_px * upp,
            curvature=float(rng.uniform(0.02, 0.12)) if rng.uniform() < 0.4 else 0.0,
            contrast=float(rng.uniform(max(6.0, 2.5 * noise), 45.0)),
        )
    if dtype == "pit":
        return DefectSpec(
            "pit", polarity="bright" if rng.uniform() < 0.15 else "dark", zone=zone,
            size_um=max(_loguniform(rng, 1.0, 30.0), 2.0 * upp),
            contrast=float(rng.uniform(max(15.0, 3 * noise), 80.0)),
        )
    if dtype == "chip":
        return DefectSpec(
            "chip", polarity="bright" if rng.uniform() < 0.1 else "dark",
            size_um=float(max(clad * rng.uniform(0.06, 0.25), 6 * upp)),
            contrast=float(rng.uniform(10, 40)),
        )
    if dtype == "crack":
        from_edge = rng.uniform() < 0.6
        return DefectSpec(
            "crack", polarity="bright" if rng.uniform() < 0.2 else "dark",
            zone=None if from_edge else zone,
            radius_um=clad / 2.0 if from_edge else None,
            size_um=float(clad * rng.uniform(0.1, 0.4)),
            width_um=float(rng.uniform(1.0, 2.0)) * upp, branches=int(rng.integers(0, 3)),
            contrast=float(rng.uniform(max(10.0, 3 * noise), 45.0)),
        )
    on_edge = rng.uniform() < 0.25
    return DefectSpec(
        "contamination", polarity="bright" if rng.uniform() < 0.4 else "dark", zone=None if on_edge else zone,
        on_edge=on_edge, size_um=max(_loguniform(rng, 5.0, 60.0), 4 * upp),
        contrast=float(rng.uniform(max(5.0, 1.5 * noise), 30.0)),
    )


def _defects(rng, types: list[str], spec_d: dict) -> list[DefectSpec]:
    start = int(rng.integers(0, len(ZONE_NAMES)))
    return [_draw_defect(rng, t, ZONE_NAMES[(start + i) % len(ZONE_NAMES)], spec_d) for i, t in enumerate(types)]


def _localization(rng, d: dict, W: int, H: int, condition: str | None = None) -> str:
    cond = condition or str(rng.choice(LOCALIZATION_CONDITIONS))
    info = FIBER_TYPES.get(d["fiber_type"])
    clad = info.cladding_um if info else 125.0
    short = min(W, H)
    a_px = clad / d["um_per_px"] / 2
    if cond == "small_fiber":
        d["um_per_px"] = clad / min(rng.uniform(100, 130), 0.9 * short)
    elif cond == "large_fiber":
        d["um_per_px"] = clad / (rng.uniform(0.8, 0.95) * short)
    elif cond == "off_center":
        # well off the centre but entirely inside the frame
        mx, my = max(0.5 * W - a_px - 4, 0.0), max(0.5 * H - a_px - 4, 0.0)
        if mx < 8 and my < 8:
            d["um_per_px"] = clad / (0.5 * short)
            a_px = 0.25 * short
            mx, my = 0.5 * W - a_px - 4, 0.5 * H - a_px - 4
        ang = rng.uniform(0, 2 * math.pi)
        f = rng.uniform(0.6, 1.0)
        d["center_offset_px"] = (f * mx * math.cos(ang), f * my * math.sin(ang))
    elif cond == "partly_outside":
        # centre near one side of the frame: 30-90 % of the cladding stays visible
        side = int(rng.integers(0, 4))
        depth = rng.uniform(-0.6, 0.5) * a_px  # centre position relative to the frame edge (+ = outside)
        along = rng.uniform(-0.3, 0.3)
        if side < 2:
            ox = (0.5 * W + depth) * (1 if side == 0 else -1)
            d["center_offset_px"] = (ox, along * H)
        else:
            oy = (0.5 * H + depth) * (1 if side == 2 else -1)
            d["center_offset_px"] = (along * W, oy)
    elif cond == "ellipse":
        d["axis_ratio"], d["ellipse_angle_deg"] = float(rng.uniform(1.1, 1.4)), float(rng.uniform(0, 180))
    elif cond == "analog_pixels":
        d["axis_ratio"], d["ellipse_angle_deg"] = ANALOG_AXIS_RATIO, 0.0
        bw = int(rng.integers(8, max(W // 12, 9)))
        d["border_left_px"], d["border_right_px"] = bw, int(bw + rng.integers(-4, 5))
    elif cond == "low_contrast":
        d["glass_contrast"] = float(rng.uniform(8, 14))
        d["rim_line_depth"] = float(rng.uniform(4, 10))
    elif cond == "bright_glass":
        d["glass_polarity"], d["ferrule_level"] = "bright", float(rng.uniform(90, 140))
        d["glass_contrast"] = float(rng.uniform(20, 70))
    elif cond == "dark_glass":
        d["glass_polarity"], d["ferrule_level"] = "dark", float(rng.uniform(150, 210))
        d["glass_contrast"] = float(rng.uniform(40, 110))
    elif cond == "heavy_blur":
        d["blur_sigma_px"] = float(rng.uniform(2.5, 5.0))
    elif cond == "heavy_noise":
        d["noise_sigma"], d["shot_noise"] = float(rng.uniform(6, 12)), float(rng.uniform(0.05, 0.3))
    elif cond == "jpeg":
        if d["bit_depth"] == 8:
            d["jpeg_quality"] = int(rng.integers(25, 60))
    elif cond == "black_borders":
        if rng.uniform() < 0.5:
            d["border_top_px"] = int(rng.integers(6, max(H // 15, 7)))
        bw = int(rng.integers(6, max(W // 12, 7)))
        d["border_left_px"], d["border_right_px"] = bw, bw
    elif cond == "uneven_illumination":
        d["illum_gradient"], d["vignetting"] = float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.2, 0.4))
    elif cond == "core_invisible":
        d["core_visible"] = False
    return cond


def random_spec(rng: np.random.Generator, scenario: str = "mixed", *, condition: str | None = None,
                **overrides) -> SynthSpec:
    """Draw a reproducible random :class:`SynthSpec` for a scenario.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (the spec's render seed is drawn from it too).
    scenario : str
        ``"mixed"`` (0-6 defects of all classes), ``"clean"`` (no defects),
        ``"localization"`` (one hard geometry/appearance condition, 0-2 defects),
        ``"no_fiber"``, one per defect class (``"scratch"``, ``"pit"``,
        ``"chip"``, ``"crack"``, ``"contamination"``: 1-3 defects of that class)
        or ``"demo"`` (a random entry of the demo mix).
    condition : str or None
        Only for ``"localization"``: force one of :data:`LOCALIZATION_CONDITIONS`
        (default: drawn at random).  The condition is the spec's second tag.
    **overrides
        Any :class:`SynthSpec` field, applied last (``width``, ``height``,
        ``fiber_type`` and ``bit_depth`` are also honoured while drawing).

    Examples
    --------
    >>> import numpy as np
    >>> s = random_spec(np.random.default_rng(0), "pit", width=320, height=240)
    >>> s.scenario, all(d.type == "pit" for d in s.defects)
    ('pit', True)
    """
    if scenario not in SCENARIOS:
        raise SynthSpecError(f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SynthSpec)} - {"_min_defects"}
    if unknown:
        raise SynthSpecError(f"unknown SynthSpec field(s) in overrides: {sorted(unknown)}")
    if condition is not None and condition not in LOCALIZATION_CONDITIONS:
        raise SynthSpecError(f"unknown localization condition {condition!r}; choose one of {list(LOCALIZATION_CONDITIONS)}")
    if scenario == "demo":
        scen, extra = DEMO_PLAN[int(rng.integers(0, len(DEMO_PLAN)))]
        return random_spec(rng, scen, **{**extra, **overrides})
    min_defects = int(overrides.pop("_min_defects", 0))
    W = int(overrides.get("width", SynthSpec.width))
    H = int(overrides.get("height", SynthSpec.height))
    bit_depth = int(overrides.get("bit_depth", 8))
    d = _base(rng, W, H, overrides.get("fiber_type"), bit_depth)
    tags: list[str] = [scenario]
    if scenario == "no_fiber":
        d["has_fiber"] = False
        d["no_fiber_kind"] = _choice(rng, NO_FIBER_WEIGHTS)
        tags.append(d["no_fiber_kind"])
        defects = []
    elif scenario == "clean":
        defects = []
    elif scenario == "mixed":
        n = int(rng.integers(min_defects, 7))
        defects = _defects(rng, [str(rng.choice(DEFECT_TYPES)) for _ in range(n)], d)
    elif scenario == "localization":
        tags.append(_localization(rng, d, W, H, condition))
        n = int(rng.integers(0, 3))
        defects = _defects(rng, [str(rng.choice(DEFECT_TYPES)) for _ in range(n)], d)
        if tags[-1] == "edge_particles":
            defects += [
                DefectSpec("contamination", polarity=str(rng.choice(["dark", "bright"])), on_edge=True,
                           size_um=_loguniform(rng, 5, 25), contrast=float(rng.uniform(15, 45)))
                for _ in range(int(rng.integers(2, 6)))
            ]
    else:  # one defect class
        n = int(rng.integers(1, 3 if scenario == "chip" else 4))
        defects = _defects(rng, [scenario] * n, d)
    d["defects"] = defects
    d["scenario"] = scenario
    d["tags"] = tuple(tags)
    d.update(overrides)
    if d.get("bit_depth") == 16:
        d["jpeg_quality"] = None
    return SynthSpec(**d)


def scenario_specs(seed: int, n: int, scenario: str = "mixed", **overrides) -> Iterator[SynthSpec]:
    """Yield ``n`` reproducible specs; spec ``i`` depends only on ``(seed, i, scenario)``.

    Different scenarios draw independent geometries for the same seed.
    ``scenario="demo"`` cycles through :data:`DEMO_PLAN` (clean and defective
    fibers of several types plus a no-fiber frame), the CLI default.

    Examples
    --------
    >>> [s.scenario for s in scenario_specs(1, 3, "demo", width=320, height=240)]
    ['clean', 'mixed', 'scratch']
    """
    if n < 0:
        raise SynthSpecError(f"n must be >= 0, got {n}")
    salt = zlib.crc32(scenario.encode("utf-8"))
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, salt])
        if scenario == "demo":
            scen, extra = DEMO_PLAN[i % len(DEMO_PLAN)]
            yield random_spec(rng, scen, **{**extra, **overrides})
        else:
            yield random_spec(rng, scenario, **overrides)


__all__ = ["random_spec", "scenario_specs", "SCENARIOS", "LOCALIZATION_CONDITIONS", "NO_FIBER_KINDS"]
