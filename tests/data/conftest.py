"""Small synthetic CT volumes with chosen geometry, shared by the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
import SimpleITK as sitk


def rotation_z(degrees: float) -> np.ndarray:
    """A direction matrix rotated about z (oblique in-plane acquisition)."""
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def rotation_x(degrees: float) -> np.ndarray:
    """A direction matrix rotated about x (gantry tilt)."""
    t = np.deg2rad(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])


# name -> (shape (x, y, z), spacing (x, y, z), origin (x, y, z), direction 3x3)
GEOMETRIES: dict[str, tuple[Sequence[int], Sequence[float], Sequence[float], np.ndarray]] = {
    "anisotropic": ((40, 48, 24), (0.8, 0.7, 2.1), (0.0, 0.0, 0.0), np.eye(3)),
    "offset_origin": ((40, 48, 24), (0.75, 0.9, 1.55), (-123.4, 56.7, -890.1), np.eye(3)),
    "ras_stored": ((40, 48, 24), (0.85, 0.65, 1.3), (100.3, 120.7, -50.2), np.diag([-1.0, -1, 1])),
    "oblique_z20": ((40, 48, 24), (0.9, 0.8, 1.6), (-20.5, 13.25, 7.0), rotation_z(20.0)),
    "tilted_flipped": (
        (36, 40, 28),
        (0.95, 0.7, 1.2),
        (15.2, -8.1, 33.3),
        np.diag([-1.0, -1, 1]) @ rotation_x(12.0),
    ),
    "large": ((72, 64, 44), (1.1, 1.2, 1.45), (-40.3, -35.7, 100.9), np.eye(3)),
    # axis-aligned but permuted: a coronal acquisition, and index axes cycled through the world.
    "coronal": (
        (40, 24, 48),
        (0.8, 1.7, 0.75),
        (-5.5, 60.2, 20.1),
        np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    ),
    "cyclic": (
        (24, 40, 48),
        (1.4, 0.85, 0.7),
        (3.3, -4.4, 5.5),
        np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    ),
}


@pytest.fixture
def make_image() -> Callable[..., sitk.Image]:
    """Factory: a random int16 HU image with the given geometry (axes x, y, z)."""

    def make(
        shape: Sequence[int],
        spacing: Sequence[float],
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: np.ndarray | None = None,
        seed: int = 0,
        values: np.ndarray | None = None,
    ) -> sitk.Image:
        rng = np.random.default_rng(seed)
        if values is None:
            values = rng.integers(-1024, 2500, size=tuple(shape)[::-1], dtype=np.int16)
        image = sitk.GetImageFromArray(values)
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(tuple(float(o) for o in origin))
        d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
        image.SetDirection(tuple(d.ravel().tolist()))
        return image

    return make


@pytest.fixture
def geometries() -> dict:
    """The named geometries of ``GEOMETRIES``."""
    return GEOMETRIES


@pytest.fixture(params=sorted(GEOMETRIES))
def geometry_image(request: pytest.FixtureRequest, make_image) -> sitk.Image:
    """One image per entry of ``GEOMETRIES``."""
    shape, spacing, origin, direction = GEOMETRIES[request.param]
    return make_image(shape, spacing, origin, direction, seed=len(request.param))
