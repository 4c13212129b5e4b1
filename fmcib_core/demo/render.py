"""Rendering of the synthetic CT demo: tissue labels and lesions to an int16 HU volume on disk.

The volume is built slab by slab (bounded memory on full-size cases), blurred for partial volume,
given Gaussian noise and written as NIfTI; RAS-stored cases are flipped so that the anatomy is the
same in world space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fmcib_core.demo.anatomy import _T, _axis_world, _Case, _tissue_hu, _tissue_labels
from fmcib_core.demo.lesions import _Lesion, _paint
from fmcib_core.demo.waves import _waves
from fmcib_core.io.atomic import atomic_path

_SLAB = 32  # slices rendered at once: bounds memory on full-size volumes
_HALO = 3  # extra slices on each side of a slab so that smoothing is seamless
_SMOOTH_SIGMA = (0.4, 0.6, 0.6)  # voxels (z, y, x): partial-volume blur


def _render(case: _Case, lesions: list[_Lesion], rng: np.random.Generator) -> np.ndarray:
    """The int16 HU volume (nz, ny, nx) in LPS order, built slab by slab to bound memory."""
    nz, ny, nx = case.shape
    lut = _tissue_hu(case.contrast)
    x = _axis_world(case, 0, 0, nx)[None, None, :]
    y = _axis_world(case, 1, 0, ny)[None, :, None]
    out = np.empty(case.shape, np.int16)
    for start in range(0, nz, _SLAB):
        stop = min(nz, start + _SLAB)
        lo, hi = max(0, start - _HALO), min(nz, stop + _HALO)
        z = _axis_world(case, 2, lo, hi)[:, None, None]
        labels = _tissue_labels(case, x, y, z)
        hu = lut[labels]
        hu += np.float32(60.0) * _waves(case.lung_tex, x, y, z) * (labels == _T.LUNG)
        for lesion in lesions:
            _paint(case, lesion, hu, lo)
        hu = ndimage.gaussian_filter(hu, _SMOOTH_SIGMA, mode="nearest")[start - lo : stop - lo]
        hu += np.float32(case.noise_sd) * rng.standard_normal(hu.shape, dtype=np.float32)
        out[start:stop] = np.clip(np.rint(hu), -1024, 3071)
    return out


def _write_image(case: _Case, volume: np.ndarray, path: Path) -> None:
    """Write the LPS-ordered volume; RAS-stored cases flip x and y so world anatomy is unchanged."""
    origin, direction = case.origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if case.ras_stored:
        volume = volume[:, ::-1, ::-1]
        nz, ny, nx = case.shape
        origin = (
            origin[0] + (nx - 1) * case.spacing[0],
            origin[1] + (ny - 1) * case.spacing[1],
            origin[2],
        )
        direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(case.spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
