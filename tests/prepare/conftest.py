"""Shared fixtures of the converter tests: a CT series with one ball lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.prepare import fixtures

SHAPE_ZYX = (20, 36, 40)
SPACING = (0.9, 0.8, 2.0)
ORIGIN = (-40.0, 20.0, -60.0)
CENTRE = (-40.0 + 0.9 * 17.3, 20.0 + 0.8 * 15.6, -60.0 + 2.0 * 9.4)
RADIUS = 6.0


@pytest.fixture
def ct(tmp_path: Path) -> fixtures.CtSeries:
    """A DICOM CT series in ``tmp_path/ct`` with a 6 mm ball lesion at ``CENTRE``."""
    hu = fixtures.lesion_volume(SHAPE_ZYX, SPACING, ORIGIN, CENTRE, RADIUS)
    return fixtures.write_ct_series(tmp_path / "ct", hu, SPACING, ORIGIN)


@pytest.fixture
def lesion_mask() -> np.ndarray:
    """The lesion's voxels on the CT grid, (z, y, x)."""
    return fixtures.ball(SHAPE_ZYX, SPACING, ORIGIN, CENTRE, RADIUS)
