"""Random, reproducible specs for tests, benchmarks and the demo.

:func:`random_spec` draws one :class:`SynthSpec` for a named scenario from a
NumPy ``Generator``; :func:`scenario_specs` yields ``n`` reproducible specs
(spec ``i`` depends only on ``(seed, i, scenario)``).  The ranges and
probabilities of the draws live in :class:`dscope.synth.params.SynthRanges`
(distribution settings of the test data, not inspection thresholds).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator

import numpy as np

from dscope.inspection.types import DEFECT_TYPES, ZONE_NAMES
from dscope.synth.params import DEFAULT_RANGES, SynthRanges
from dscope.synth.spec import FIBER_TYPES, NO_FIBER_KINDS, DefectSpec, SynthSpec, SynthSpecError

#: Scenario names accepted by :func:`random_spec`.
SCENARIOS: tuple[str, ...] = ("mixed", "clean", "localization", "no_fiber", *DEFECT_TYPES, "demo")

#: Fiber types and their draw weights (the standard 125 um fibers dominate).
FIBER_WEIGHTS: dict[str, float] = {
    "sm-pc": 0.34, "sm-apc": 0.14, "mm": 0.2, "mm-62.5": 0.1, "lc-200": 0.12, "lc-1000": 0.10,
}
#: Localization conditions ("hard geometry/appearance") drawn by the "localization" scenario.
LOCALIZATION_CONDITIONS: tuple[str, ...] = (
    "small_fiber", "large_fiber", "off_center", "partly_outside", "ellipse", "analog_pixels",
    "low_contrast", "bright_glass", "dark_glass", "heavy_blur", "heavy_noise", "jpeg", "black_borders",
    "uneven_illumination", "core_invisible", "edge_particles",
)
#: No-fiber frame kinds and draw weights.
NO_FIBER_WEIGHTS = {"blank": 0.4, "black": 0.2, "white": 0.2, "noise": 0.2}

#: The demo / CLI default mix: (scenario, overrides) cycled by index.  All single-mode 9/125 fibers, because
#: ``make run`` inspects the whole folder as one batch of one fiber type (as a bench operator would).
DEMO_PLAN: tuple[tuple[str, dict], ...] = (
    ("clean", {"fiber_type": "sm-pc"}),
    ("mixed", {"fiber_type": "sm-pc", "_min_defects": 3}),
    ("scratch", {"fiber_type": "sm-pc"}),
    ("clean", {"fiber_type": "sm-pc", "glass_polarity": "bright"}),
    ("pit", {"fiber_type": "sm-apc"}),
    ("no_fiber", {"no_fiber_kind": "blank"}),
    ("contamination", {"fiber_type": "sm-pc"}),
    ("chip", {"fiber_type": "sm-pc"}),
    ("mixed", {"fiber_type": "sm-apc", "_min_defects": 2}),
    ("crack", {"fiber_type": "sm-pc"}),
    ("clean", {"fiber_type": "sm-pc", "axis_ratio": DEFAULT_RANGES.analog_axis_ratio, "ellipse_angle_deg": 0.0}),
    ("localization", {"fiber_type": "sm-pc"}),
)


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _choice(rng, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _u(rng, r) -> float:
    return float(rng.uniform(r[0], r[1]))


def _lu(rng, r) -> float:
    return _loguniform(rng, r[0], r[1])


def _base(rng, W: int, H: int, fiber_type: str | None, bit_depth: int, R: SynthRanges) -> dict:
    ft = fiber_type or _choice(rng, FIBER_WEIGHTS)
    info = FIBER_TYPES.get(ft)
    mode = info.mode if info else "sm"
    frac = R.cladding_fraction_large_core if mode == "large_core" else R.cladding_fraction_standard
    short = min(W, H)
    d_px = max(_u(rng, frac) * short, min(R.min_cladding_px, 0.9 * short))
    clad = info.cladding_um if info else 125.0
    u = rng.uniform()
    if ft == "sm-apc":
        q, ang = 1.0 / math.cos(math.radians(R.apc_angle_deg)), float(rng.uniform(0, 180))
    elif u < R.p_analog_pixels:
        q, ang = R.analog_axis_ratio, float(rng.choice([0.0, 90.0]))
    elif u < R.p_analog_pixels + R.p_slight_ellipse:
        q, ang = _u(rng, R.slight_axis_ratio), float(rng.uniform(0, 180))
    else:
        q, ang = 1.0, 0.0
    F = _u(rng, R.ferrule_level)
    pol = "dark" if rng.uniform() < R.p_dark_glass else "bright"
    room = (F - R.glass_level_margin) if pol == "dark" else (255.0 - R.glass_level_margin - F)
    gc = float(max(min(_u(rng, R.glass_contrast), room), 0.0))
    sig = R.center_offset_sigma_fraction * short
    d = dict(
        width=W, height=H, bit_depth=bit_depth, seed=int(rng.integers(0, 2**31 - 1)), has_fiber=True,
        fiber_type=ft, um_per_px=clad / d_px,
        center_offset_px=(float(rng.normal(0, sig)), float(rng.normal(0, sig))),
        axis_ratio=q, ellipse_angle_deg=ang, core_visible=bool(rng.uniform() < R.p_core_visible),
        glass_polarity=pol, ferrule_level=F, glass_contrast=gc, glass_variation=_u(rng, R.glass_variation),
        core_delta=float(rng.choice([-1, 1])) * _u(rng, R.core_delta),
        epoxy_ring=bool(rng.uniform() < R.p_epoxy_ring), epoxy_width_um=_u(rng, R.epoxy_width_um),
        epoxy_delta=_u(rng, R.epoxy_delta_dark) if rng.uniform() < R.p_epoxy_dark else _u(rng, R.epoxy_delta_bright),
        rim_line_depth=_u(rng, R.rim_line_depth), rim_line_width_px=_u(rng, R.rim_line_width_px),
        ferrule_texture=_u(rng, R.ferrule_texture), texture_scale_px=_u(rng, R.texture_scale_px),
        ferrule_mottle=_u(rng, R.ferrule_mottle),
        illum_gradient=_u(rng, R.illum_gradient), illum_gradient_angle_deg=float(rng.uniform(0, 360)),
        vignetting=_u(rng, R.vignetting), blur_sigma_px=_u(rng, R.blur_sigma_px),
        noise_sigma=_u(rng, R.noise_sigma),
        shot_noise=_u(rng, R.shot_noise) if rng.uniform() < R.p_shot_noise else 0.0,
        jpeg_quality=int(round(_u(rng, R.jpeg_quality))) if (rng.uniform() < R.p_jpeg and bit_depth == 8) else None,
    )
    return d


def _contrast(rng, r, noise: float, factor: float, R: SynthRanges) -> float:
    lo = min(max(r[0], factor * R.min_contrast_noise_ratio * noise), r[1])
    return float(rng.uniform(lo, r[1]))


def _draw_defect(rng, dtype: str, zone: str | None, spec_d: dict, R: SynthRanges) -> DefectSpec:
    """One defect with class-typical size, polarity and contrast."""
    info = FIBER_TYPES.get(spec_d["fiber_type"])
    clad = info.cladding_um if info else 125.0
    upp = spec_d["um_per_px"]
    noise = spec_d["noise_sigma"]

    def pol(p):
        return "bright" if rng.uniform() < p else "dark"

    if dtype == "scratch":
        return DefectSpec(
            "scratch", polarity=pol(R.p_bright_scratch), zone=zone,
            size_um=clad * _u(rng, R.scratch_length_fraction), width_um=_lu(rng, R.scratch_width_px) * upp,
            curvature=_u(rng, R.scratch_curvature) if rng.uniform() < R.p_scratch_curved else 0.0,
            contrast=_contrast(rng, R.scratch_contrast, noise, 1.7, R),
        )
    if dtype == "pit":
        return DefectSpec(
            "pit", polarity=pol(R.p_bright_pit), zone=zone,
            size_um=max(_lu(rng, R.pit_diameter_um), R.min_size_px * upp),
            contrast=_contrast(rng, R.pit_contrast, noise, 2.0, R),
        )
    if dtype == "chip":
        return DefectSpec(
            "chip", polarity=pol(R.p_bright_chip),
            size_um=max(clad * _u(rng, R.chip_size_fraction), 3 * R.min_size_px * upp),
            contrast=_u(rng, R.chip_contrast),
        )
    if dtype == "crack":
        from_edge = rng.uniform() < R.p_crack_from_edge
        return DefectSpec(
            "crack", polarity=pol(R.p_bright_crack), zone=None if from_edge else zone,
            radius_um=clad / 2.0 if from_edge else None,
            size_um=clad * _u(rng, R.crack_length_fraction),
            width_um=_u(rng, R.crack_width_px) * upp, branches=int(rng.integers(0, R.crack_max_branches + 1)),
            contrast=_contrast(rng, R.crack_contrast, noise, 2.0, R),
        )
    on_edge = rng.uniform() < R.p_contamination_on_edge
    return DefectSpec(
        "contamination", polarity=pol(R.p_bright_contamination), zone=None if on_edge else zone,
        on_edge=on_edge, size_um=max(_lu(rng, R.contamination_size_um), 2 * R.min_size_px * upp),
        contrast=_contrast(rng, R.contamination_contrast, noise, 1.0, R),
    )


def _defects(rng, types: list[str], spec_d: dict, R: SynthRanges) -> list[DefectSpec]:
    """Defects of the given classes; zones cycle from a random start so every zone gets coverage."""
    start = int(rng.integers(0, len(ZONE_NAMES)))
    return [_draw_defect(rng, t, ZONE_NAMES[(start + i) % len(ZONE_NAMES)], spec_d, R) for i, t in enumerate(types)]


def _localization(rng, d: dict, W: int, H: int, R: SynthRanges, condition: str | None = None) -> str:
    cond = condition or str(rng.choice(LOCALIZATION_CONDITIONS))
    info = FIBER_TYPES.get(d["fiber_type"])
    clad = info.cladding_um if info else 125.0
    short = min(W, H)
    a_px = clad / d["um_per_px"] / 2
    if cond == "small_fiber":
        d["um_per_px"] = clad / min(_u(rng, R.small_fiber_px), 0.9 * short)
    elif cond == "large_fiber":
        d["um_per_px"] = clad / (_u(rng, R.large_fiber_fraction) * short)
    elif cond == "off_center":
        # well off the centre but entirely inside the frame
        mx, my = max(0.5 * W - a_px - 4, 0.0), max(0.5 * H - a_px - 4, 0.0)
        if mx < 8 and my < 8:  # fiber too big to move: shrink it to half the frame first
            d["um_per_px"] = clad / (0.5 * short)
            a_px = 0.25 * short
            mx, my = 0.5 * W - a_px - 4, 0.5 * H - a_px - 4
        ang = rng.uniform(0, 2 * math.pi)
        f = _u(rng, R.off_center_fraction)
        d["center_offset_px"] = (f * mx * math.cos(ang), f * my * math.sin(ang))
    elif cond == "partly_outside":
        # centre near one side of the frame, part of the cladding outside it
        side = int(rng.integers(0, 4))
        depth = _u(rng, R.partly_outside_depth) * a_px  # centre beyond the frame edge (+ = outside)
        along = rng.uniform(-0.3, 0.3)
        if side < 2:
            d["center_offset_px"] = ((0.5 * W + depth) * (1 if side == 0 else -1), along * H)
        else:
            d["center_offset_px"] = (along * W, (0.5 * H + depth) * (1 if side == 2 else -1))
    elif cond == "ellipse":
        d["axis_ratio"], d["ellipse_angle_deg"] = _u(rng, R.ellipse_axis_ratio), float(rng.uniform(0, 180))
    elif cond == "analog_pixels":
        d["axis_ratio"], d["ellipse_angle_deg"] = R.analog_axis_ratio, 0.0
        bw = max(int(_u(rng, R.border_fraction) * W), 1)
        d["border_left_px"], d["border_right_px"] = bw, max(bw + int(rng.integers(-3, 4)), 0)
    elif cond == "low_contrast":
        d["glass_contrast"] = _u(rng, R.low_contrast)
        d["rim_line_depth"] = _u(rng, R.low_contrast_rim_depth)
    elif cond == "bright_glass":
        d["glass_polarity"], d["ferrule_level"] = "bright", _u(rng, R.bright_glass_ferrule_level)
        d["glass_contrast"] = min(_u(rng, R.glass_contrast), 255.0 - R.glass_level_margin - d["ferrule_level"])
    elif cond == "dark_glass":
        d["glass_polarity"], d["ferrule_level"] = "dark", _u(rng, R.dark_glass_ferrule_level)
        d["glass_contrast"] = min(_u(rng, R.dark_glass_contrast), d["ferrule_level"] - R.glass_level_margin)
    elif cond == "heavy_blur":
        d["blur_sigma_px"] = _u(rng, R.heavy_blur_sigma_px)
    elif cond == "heavy_noise":
        d["noise_sigma"], d["shot_noise"] = _u(rng, R.heavy_noise_sigma), _u(rng, R.heavy_shot_noise)
    elif cond == "jpeg":
        if d["bit_depth"] == 8:
            d["jpeg_quality"] = int(round(_u(rng, R.low_jpeg_quality)))
    elif cond == "black_borders":
        if rng.uniform() < 0.5:
            d["border_top_px"] = max(int(_u(rng, R.border_fraction) * H), 1)
        bw = max(int(_u(rng, R.border_fraction) * W), 1)
        d["border_left_px"], d["border_right_px"] = bw, bw
    elif cond == "uneven_illumination":
        d["illum_gradient"], d["vignetting"] = _u(rng, R.uneven_gradient), _u(rng, R.uneven_vignetting)
    elif cond == "core_invisible":
        d["core_visible"] = False
    return cond


def random_spec(rng: np.random.Generator, scenario: str = "mixed", *, condition: str | None = None,
                ranges: SynthRanges | None = None, **overrides) -> SynthSpec:
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
    ranges : SynthRanges or None
        Distribution settings (default :data:`dscope.synth.params.DEFAULT_RANGES`).
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
        raise SynthSpecError(
            f"unknown localization condition {condition!r}; choose one of {list(LOCALIZATION_CONDITIONS)}")
    if scenario == "demo":
        scen, extra = DEMO_PLAN[int(rng.integers(0, len(DEMO_PLAN)))]
        return random_spec(rng, scen, ranges=ranges, **{**extra, **overrides})
    R = ranges or DEFAULT_RANGES
    min_defects = int(overrides.pop("_min_defects", 0))
    W = int(overrides.get("width", SynthSpec.width))
    H = int(overrides.get("height", SynthSpec.height))
    bit_depth = int(overrides.get("bit_depth", 8))
    d = _base(rng, W, H, overrides.get("fiber_type"), bit_depth, R)
    tags: list[str] = [scenario]
    if scenario == "no_fiber":
        d["has_fiber"] = False
        d["no_fiber_kind"] = _choice(rng, NO_FIBER_WEIGHTS)
        tags.append(d["no_fiber_kind"])
        defects = []
    elif scenario == "clean":
        defects = []
    elif scenario == "mixed":
        n = int(rng.integers(min(min_defects, R.mixed_max_defects), R.mixed_max_defects + 1))
        defects = _defects(rng, [str(rng.choice(DEFECT_TYPES)) for _ in range(n)], d, R)
    elif scenario == "localization":
        tags.append(_localization(rng, d, W, H, R, condition))
        n = int(rng.integers(0, R.localization_max_defects + 1))
        defects = _defects(rng, [str(rng.choice(DEFECT_TYPES)) for _ in range(n)], d, R)
        if tags[-1] == "edge_particles":
            lo, hi = (int(v) for v in R.edge_particles)
            defects += [
                DefectSpec("contamination", polarity=str(rng.choice(["dark", "bright"])), on_edge=True,
                           size_um=_lu(rng, R.edge_particle_size_um), contrast=_u(rng, R.edge_particle_contrast))
                for _ in range(int(rng.integers(lo, hi + 1)))
            ]
    else:  # one defect class
        n = int(rng.integers(1, (R.chip_max_defects if scenario == "chip" else R.class_max_defects) + 1))
        defects = _defects(rng, [scenario] * n, d, R)
    d["defects"] = defects
    d["scenario"] = scenario
    d["tags"] = tuple(tags)
    d.update(overrides)
    if d.get("bit_depth") == 16:
        d["jpeg_quality"] = None
    return SynthSpec(**d)


def scenario_specs(seed: int, n: int, scenario: str = "mixed", *, condition: str | None = None,
                   ranges: SynthRanges | None = None, **overrides) -> Iterator[SynthSpec]:
    """Yield ``n`` reproducible specs; spec ``i`` depends only on ``(seed, i, scenario)``.

    Different scenarios draw independent geometries for the same seed;
    ``condition`` and ``ranges`` are passed to :func:`random_spec`.
    ``scenario="demo"`` cycles through :data:`DEMO_PLAN` (clean and defective
    fibers of several types plus a no-fiber frame), the CLI default.

    Examples
    --------
    >>> [s.scenario for s in scenario_specs(1, 3, "demo", width=320, height=240)]
    ['clean', 'mixed', 'scratch']
    """
    if n < 0:
        raise SynthSpecError(f"n must be >= 0, got {n}")
    salt = zlib.crc32(f"{scenario}/{condition or ''}".encode("utf-8"))
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, salt])
        if scenario == "demo":
            scen, extra = DEMO_PLAN[i % len(DEMO_PLAN)]
            yield random_spec(rng, scen, ranges=ranges, **{**extra, **overrides})
        else:
            yield random_spec(rng, scenario, condition=condition, ranges=ranges, **overrides)


__all__ = ["random_spec", "scenario_specs", "SCENARIOS", "LOCALIZATION_CONDITIONS", "NO_FIBER_KINDS"]
