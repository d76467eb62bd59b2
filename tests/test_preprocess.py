"""Grey conversion and the exposure check."""

from __future__ import annotations

import numpy as np
import pytest

from dscope.inspection.preprocess import illumination_check, to_gray8


@pytest.fixture()
def pre(config):
    return config.preprocess


def test_colour_16bit_and_bool_become_8bit_gray(pre):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    g = to_gray8(bgr, pre)
    assert g.shape == (40, 50) and g.dtype == np.uint8
    # luma: the green channel weighs most
    only_green = np.zeros((4, 4, 3), np.uint8)
    only_green[..., 1] = 200
    only_blue = np.zeros((4, 4, 3), np.uint8)
    only_blue[..., 0] = 200
    assert to_gray8(only_green, pre).mean() > to_gray8(only_blue, pre).mean()
    img16 = (rng.integers(1000, 3000, (30, 30))).astype(np.uint16)
    g16 = to_gray8(img16, pre)
    assert g16.dtype == np.uint8 and g16.min() <= 1 and g16.max() >= 254  # stretched to the 8-bit range
    assert to_gray8(np.eye(5, dtype=bool), pre).max() == 255
    with pytest.raises(ValueError):
        to_gray8(np.zeros((2, 2, 2, 2), np.uint8), pre)


def test_usable_image_has_no_warning(pre):
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(120, 30, (300, 400)), 0, 255).astype(np.uint8)
    stats, warnings = illumination_check(img, pre)
    assert warnings == []
    assert abs(stats["mean"] - 120) < 2


@pytest.mark.parametrize(
    "level, spread, expect",
    [(5, 2, "dark"), (250, 3, "bright"), (128, 1, "low contrast")],
)
def test_poor_illumination_is_named(pre, level, spread, expect):
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(level, spread, (300, 400)), 0, 255).astype(np.uint8)
    _, warnings = illumination_check(img, pre)
    assert any(expect in w for w in warnings), warnings


def test_saturation_warning(pre):
    img = np.full((200, 200), 120, np.uint8)
    img[:, :40] = 255  # 20 % clipped
    _, warnings = illumination_check(img, pre)
    assert any("saturated" in w for w in warnings)


def test_subsampled_histogram_agrees_with_the_full_one(pre):
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(100, 40, (768, 1024)), 0, 255).astype(np.uint8)
    full, _ = illumination_check(img, pre.model_copy(update={"histogram_stride_px": 1}))
    sub, _ = illumination_check(img, pre)
    assert pre.histogram_stride_px > 1
    assert abs(full["mean"] - sub["mean"]) < 1.0
    assert abs(full["p1"] - sub["p1"]) <= 2 and abs(full["p99"] - sub["p99"]) <= 2
