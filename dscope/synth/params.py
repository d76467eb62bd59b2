"""Distribution settings of :func:`dscope.synth.random_spec` (how varied the synthetic data is).

These are not inspection thresholds: they only shape the synthetic test data.
They are a validated :class:`dscope.params.StrictModel` so that every range is
named, documented and checked (``lo <= hi``) in one place; pass a modified copy
as ``random_spec(..., ranges=SynthRanges(...))`` or ``model_copy(update=...)``.
Ranges are ``(low, high)`` pairs drawn uniformly unless the description says
log-uniform; ``p_*`` are probabilities.  Grey levels are on the 8-bit scale.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from dscope.params import StrictModel

Range = tuple[float, float]


def _r(lo: float, hi: float, desc: str):
    return Field(default=(lo, hi), description=desc)


def _p(v: float, desc: str):
    return Field(default=v, ge=0.0, le=1.0, description=desc)


class SynthRanges(StrictModel):
    """Ranges and probabilities used by :func:`dscope.synth.random_spec`."""

    # -- geometry --------------------------------------------------------------------------
    cladding_fraction_standard: Range = _r(0.25, 0.55, "cladding diameter / shorter image side, 125 um fibers")
    cladding_fraction_large_core: Range = _r(0.45, 0.85, "cladding diameter / shorter image side, large-core fibers")
    min_cladding_px: float = Field(100.0, gt=0,
                                   description="smallest cladding diameter drawn (px) when the frame allows")
    center_offset_sigma_fraction: float = Field(0.04, ge=0, le=0.5,
                                                description="sigma of the centre offset / shorter side")
    p_analog_pixels: float = _p(0.2, "non-square analog pixels (ellipse of analog_axis_ratio at 0 or 90 deg)")
    analog_axis_ratio: float = Field(1.09, ge=1.0, le=1.5, description="axis ratio caused by non-square analog pixels")
    p_slight_ellipse: float = _p(0.15, "slightly elliptical end face (angled polish residue)")
    slight_axis_ratio: Range = _r(1.0, 1.04, "axis ratio of a slightly elliptical end face")
    apc_angle_deg: float = Field(8.0, ge=0, lt=45,
                                 description="APC polish angle: sm-apc faces are foreshortened by 1/cos")
    # -- appearance ------------------------------------------------------------------------
    ferrule_level: Range = _r(115.0, 190.0, "mean ferrule grey level")
    p_dark_glass: float = _p(0.65, "glass darker than the ferrule (real images often are)")
    glass_contrast: Range = _r(18.0, 75.0, "|glass - ferrule| grey levels")
    glass_level_margin: float = Field(15.0, ge=0, le=100,
                                      description="keep the glass this far from 0 / 255 (grey levels)")
    glass_variation: Range = _r(0.8, 3.0, "slow intensity variation over the glass (grey levels)")
    p_core_visible: float = _p(0.75, "core visible")
    core_delta: Range = _r(3.0, 12.0, "|core - glass| grey levels (sign random)")
    p_epoxy_ring: float = _p(0.7, "adhesive ring around the cladding")
    epoxy_width_um: Range = _r(1.5, 5.0, "width of the adhesive ring")
    p_epoxy_dark: float = _p(0.8, "adhesive darker than the ferrule")
    epoxy_delta_dark: Range = _r(-45.0, -10.0, "adhesive - ferrule grey levels when darker")
    epoxy_delta_bright: Range = _r(8.0, 25.0, "adhesive - ferrule grey levels when brighter")
    rim_line_depth: Range = _r(8.0, 35.0, "depth of the dark rim line on the cladding boundary (grey levels)")
    rim_line_width_px: Range = _r(0.7, 1.6, "sigma of the rim line (px)")
    ferrule_texture: Range = _r(3.0, 9.0, "ceramic grain rms (grey levels)")
    texture_scale_px: Range = _r(0.8, 2.0, "grain size (px)")
    ferrule_mottle: Range = _r(1.0, 3.5, "slow ferrule mottle rms (grey levels)")
    illum_gradient: Range = _r(0.0, 0.15, "relative illumination change across the frame")
    vignetting: Range = _r(0.0, 0.15, "relative illumination loss in the corners")
    blur_sigma_px: Range = _r(0.5, 1.4, "defocus blur sigma (px)")
    noise_sigma: Range = _r(1.0, 4.0, "Gaussian sensor noise sigma (grey levels)")
    p_shot_noise: float = _p(0.3, "shot noise on top of the Gaussian noise")
    shot_noise: Range = _r(0.02, 0.1, "shot-noise variance per grey level")
    p_jpeg: float = _p(0.15, "JPEG re-compression (8-bit only)")
    jpeg_quality: Range = _r(70, 95, "JPEG quality")
    # -- defects -----------------------------------------------------------------------------
    mixed_max_defects: int = Field(6, ge=0, le=50, description="'mixed': 0..this many defects")
    class_max_defects: int = Field(3, ge=1, le=50, description="per-class scenarios: 1..this many defects")
    chip_max_defects: int = Field(2, ge=1, le=20, description="'chip' scenario: 1..this many chips")
    localization_max_defects: int = Field(2, ge=0, le=20, description="'localization': 0..this many defects")
    scratch_width_px: Range = _r(1.0, 8.0, "scratch width in px (log-uniform)")
    scratch_length_fraction: Range = _r(0.12, 0.9, "scratch length / cladding diameter")
    p_scratch_curved: float = _p(0.4, "scratch drawn as a gentle arc")
    scratch_curvature: Range = _r(0.02, 0.12, "sagitta / length of a curved scratch")
    scratch_contrast: Range = _r(6.0, 45.0, "scratch contrast (grey levels)")
    p_bright_scratch: float = _p(0.3, "bright scratch (dark-field lighting)")
    pit_diameter_um: Range = _r(1.0, 30.0, "pit diameter um (log-uniform)")
    pit_contrast: Range = _r(15.0, 80.0, "pit contrast (grey levels)")
    p_bright_pit: float = _p(0.15, "bright pit")
    chip_size_fraction: Range = _r(0.06, 0.25, "chip bite diameter / cladding diameter")
    chip_contrast: Range = _r(10.0, 40.0, "chip fill below the darkest of glass, adhesive, ferrule (grey levels)")
    p_bright_chip: float = _p(0.1, "bright chip")
    crack_length_fraction: Range = _r(0.1, 0.4, "crack length / cladding diameter")
    crack_width_px: Range = _r(1.0, 2.0, "crack width (px)")
    p_crack_from_edge: float = _p(0.6, "crack starting at the cladding edge")
    crack_max_branches: int = Field(2, ge=0, le=10, description="side branches of a crack: 0..this many")
    crack_contrast: Range = _r(10.0, 45.0, "crack contrast (grey levels)")
    p_bright_crack: float = _p(0.2, "bright crack")
    contamination_size_um: Range = _r(5.0, 60.0, "contamination diameter um (log-uniform)")
    p_contamination_on_edge: float = _p(0.25, "contamination sitting on the cladding edge")
    contamination_contrast: Range = _r(5.0, 30.0, "contamination contrast (grey levels)")
    p_bright_contamination: float = _p(0.4, "bright contamination")
    min_contrast_noise_ratio: float = Field(
        1.5, ge=0, le=10, description="lower end of every contrast range is at least this many noise sigmas "
        "(x1.7 for scratches, x2 for pits and cracks) so most drawn defects are visible")
    min_size_px: float = Field(2.0, gt=0, description="smallest pit diameter in px; chips 3x, contamination 2x this")
    # -- localization conditions ------------------------------------------------------------
    small_fiber_px: Range = _r(100.0, 130.0, "'small_fiber': cladding diameter px")
    large_fiber_fraction: Range = _r(0.8, 0.95, "'large_fiber': cladding diameter / shorter side")
    off_center_fraction: Range = _r(0.6, 1.0, "'off_center': offset / largest offset keeping the fiber in frame")
    partly_outside_depth: Range = _r(-0.6, 0.5, "'partly_outside': centre beyond the frame edge / cladding radius")
    ellipse_axis_ratio: Range = _r(1.1, 1.4, "'ellipse': axis ratio")
    low_contrast: Range = _r(8.0, 14.0, "'low_contrast': |glass - ferrule| grey levels")
    low_contrast_rim_depth: Range = _r(4.0, 10.0, "'low_contrast': rim line depth")
    bright_glass_ferrule_level: Range = _r(90.0, 140.0, "'bright_glass': ferrule level")
    dark_glass_ferrule_level: Range = _r(150.0, 210.0, "'dark_glass': ferrule level")
    dark_glass_contrast: Range = _r(40.0, 110.0, "'dark_glass': |glass - ferrule|")
    heavy_blur_sigma_px: Range = _r(2.5, 5.0, "'heavy_blur': blur sigma px")
    heavy_noise_sigma: Range = _r(6.0, 12.0, "'heavy_noise': noise sigma")
    heavy_shot_noise: Range = _r(0.05, 0.3, "'heavy_noise': shot-noise variance per grey level")
    low_jpeg_quality: Range = _r(25, 60, "'jpeg': quality")
    border_fraction: Range = _r(0.01, 0.08, "'black_borders' / 'analog_pixels': bar width / image width")
    uneven_gradient: Range = _r(0.3, 0.6, "'uneven_illumination': gradient")
    uneven_vignetting: Range = _r(0.2, 0.4, "'uneven_illumination': vignetting")
    edge_particles: Range = _r(2, 5, "'edge_particles': number of particles on the cladding edge")
    edge_particle_size_um: Range = _r(5.0, 25.0, "'edge_particles': particle diameter um (log-uniform)")
    edge_particle_contrast: Range = _r(15.0, 45.0, "'edge_particles': particle contrast")

    @model_validator(mode="after")
    def _ranges_ordered(self):
        for name, value in self:
            if isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
                raise ValueError(f"{name}: low {value[0]} > high {value[1]}")
        return self


#: The default ranges.
DEFAULT_RANGES = SynthRanges()
