"""The handcrafted lesion descriptor: HU statistics in balls, thresholded volume, irregularity."""

from __future__ import annotations

import numpy as np
import pytest

from fmcib_core.data.patches import normalise_hu
from fmcib_core.eval.handcrafted import (
    DESCRIPTOR_NAMES,
    PATCH_SIZE,
    lesion_descriptor,
    lesion_descriptors,
)

S = PATCH_SIZE
AXIS = np.arange(S) - S // 2
DIST = np.sqrt(AXIS[:, None, None] ** 2 + AXIS[None, :, None] ** 2 + AXIS[None, None, :] ** 2)
D = dict(enumerate(DESCRIPTOR_NAMES))


def patch(hu: np.ndarray) -> np.ndarray:
    return normalise_hu(hu.astype(np.float32))[None]


def sphere(radius: float, inside: float = 60.0, outside: float = -800.0) -> np.ndarray:
    return np.where(DIST <= radius, inside, outside)


def values(hu: np.ndarray) -> dict[str, float]:
    return dict(zip(DESCRIPTOR_NAMES, lesion_descriptor(patch(hu)), strict=True))


def test_names_and_shape() -> None:
    assert DESCRIPTOR_NAMES == (
        "hu_mean_5mm", "hu_sd_5mm", "hu_mean_10mm", "hu_sd_10mm", "hu_mean_15mm", "hu_sd_15mm",
        "log_volume_mm3", "irregularity",
    )  # fmt: skip
    out = lesion_descriptors(np.stack([patch(sphere(6)), patch(sphere(9))]))
    assert out.shape == (2, 8) and out.dtype == np.float32


def test_ball_statistics_of_a_uniform_sphere() -> None:
    v = values(sphere(8.0))
    assert v["hu_mean_5mm"] == pytest.approx(60.0, abs=0.01) and v["hu_sd_5mm"] < 0.01
    inside = (DIST <= 8).sum() / (DIST <= 10).sum()  # the 10 mm ball reaches outside
    assert v["hu_mean_10mm"] == pytest.approx(60 * inside - 800 * (1 - inside), rel=1e-4)
    assert v["hu_sd_10mm"] > 100 and v["hu_mean_15mm"] < v["hu_mean_10mm"]


def test_volume_follows_the_lesion_and_ignores_a_second_one() -> None:
    small, large = values(sphere(5.0)), values(sphere(10.0))
    # the smoothing against noise shaves a little off a convex region
    assert 10 ** small["log_volume_mm3"] == pytest.approx((DIST <= 5).sum(), rel=0.15)
    assert 10 ** large["log_volume_mm3"] == pytest.approx((DIST <= 10).sum(), rel=0.1)
    two = sphere(5.0)
    two[
        (AXIS[:, None, None] - 14) ** 2 + AXIS[None, :, None] ** 2 + AXIS[None, None, :] ** 2 < 16
    ] = 60
    assert values(two)["log_volume_mm3"] == pytest.approx(small["log_volume_mm3"], abs=0.01)


def test_a_lesion_without_contrast_uses_a_band_around_its_hu() -> None:
    flat = sphere(20.0, inside=40.0, outside=45.0)  # isodense with its surroundings
    assert 10 ** values(flat)["log_volume_mm3"] > 4 / 3 * np.pi * 20**3  # the whole 22 mm ball


def test_irregularity_is_higher_for_a_spiculated_boundary() -> None:
    smooth = values(sphere(8.0))["irregularity"]
    assert 1.0 < smooth < 1.8
    spiky = sphere(8.0)
    z, y, x = np.meshgrid(AXIS, AXIS, AXIS, indexing="ij")
    for a, b, c in ((z, y, x), (y, x, z), (x, z, y)):  # rods 3 mm thick through the lesion
        spiky[(b**2 + c**2 <= 2.25) & (np.abs(a) <= 16)] = 60.0
    assert values(spiky)["irregularity"] > smooth + 0.1


def test_a_dark_lesion_in_bright_tissue_is_found_too() -> None:
    v = values(sphere(7.0, inside=-20.0, outside=60.0))
    assert 10 ** v["log_volume_mm3"] == pytest.approx((DIST <= 7).sum(), rel=0.15)


def test_only_cubes_of_at_least_32_are_described() -> None:
    with pytest.raises(ValueError, match="cube of side >= 32"):
        lesion_descriptor(np.zeros((1, 24, 24, 24), np.float32))
    with pytest.raises(ValueError, match="cube of side >= 32"):
        lesion_descriptor(np.zeros((50, 50, 40), np.float32))
