"""A handcrafted lesion descriptor from the patch alone: the baseline the learned features face.

Computed only from the (1, S, S, S) patch of docs/method.md section 2 (1 mm voxels, the seed at
voxel index S // 2 on every axis), never from the generator's or the table's columns. Eight
numbers per lesion, in this order (``DESCRIPTOR_NAMES``):

- ``hu_mean_5mm``, ``hu_sd_5mm``, ``hu_mean_10mm``, ``hu_sd_10mm``, ``hu_mean_15mm``,
  ``hu_sd_15mm``: mean and standard deviation of the HU in balls of radius 5, 10 and 15 mm around
  the seed.
- ``log_volume_mm3``: log10 of the volume (mm^3, one voxel is 1 mm^3) of the thresholded lesion.
  After a Gaussian smoothing (sigma 1 voxel) against noise, the lesion's HU is the median of the
  2 mm ball around the seed and the background's the median of the shell between 15 mm and
  ``MAX_RADIUS``; the threshold is their midpoint (voxels on the lesion's side of it), or, when
  they differ by less than ``2 * MIN_CONTRAST_HU``, a band of +-``MIN_CONTRAST_HU`` around the
  lesion's HU. The region is cut to the ball of radius ``MAX_RADIUS`` and reduced to the
  6-connected component holding most of the 2 mm ball.
- ``irregularity``: the thresholded lesion's surface (voxel faces, mm^2) over that of the sphere
  of the same volume, ``(36 pi V^2)^(1/3)``: about 1.5 for a voxelised sphere, more for a lobulated
  or spiculated boundary; 1 for a region of fewer than ``MIN_VOXELS`` voxels.

Written as a feature table (``pred_0`` ... ``pred_7``) it goes through the same linear
evaluation as the backbone features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from fmcib_core.data.patches import iter_patches

__all__ = [
    "DESCRIPTOR_NAMES",
    "MAX_RADIUS",
    "MIN_VOXELS",
    "PATCH_SIZE",
    "RADII_MM",
    "MIN_CONTRAST_HU",
    "lesion_descriptor",
    "lesion_descriptors",
    "table_descriptors",
]

PATCH_SIZE = 50  # the descriptor is defined on the paper's 50^3 patch, whatever the backbone's
RADII_MM = (5, 10, 15)
MIN_CONTRAST_HU = 25.0
MAX_RADIUS = 22.0
MIN_VOXELS = 8
DESCRIPTOR_NAMES = (
    *(f"hu_{stat}_{r}mm" for r in RADII_MM for stat in ("mean", "sd")),
    "log_volume_mm3",
    "irregularity",
)


def _distance(size: int) -> np.ndarray:
    """Distance (voxels = mm) of every voxel of an S^3 grid from voxel (S//2, S//2, S//2)."""
    axis = np.arange(size, dtype=np.float32) - size // 2
    return np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)


def _surface_faces(mask: np.ndarray) -> int:
    """Faces between the region and the outside (the grid's border counts as outside)."""
    padded = np.pad(mask, 1)
    return int(sum(np.count_nonzero(np.diff(padded, axis=a)) for a in range(3)))


def lesion_descriptor(patch: np.ndarray) -> np.ndarray:
    """The eight descriptor values (float64, ``DESCRIPTOR_NAMES`` order) of one patch.

    Args:
        patch: (1, S, S, S) or (S, S, S) in normalised units ``(HU + 1024) / 3072``, S >= 32.

    Raises:
        ValueError: not a cube of side >= 32.
    """
    volume = np.asarray(patch, dtype=np.float32)
    volume = volume[0] if volume.ndim == 4 and volume.shape[0] == 1 else volume
    if volume.ndim != 3 or len(set(volume.shape)) != 1 or volume.shape[0] < 2 * RADII_MM[-1] + 2:
        raise ValueError(f"a patch must be a cube of side >= 32, got shape {np.shape(patch)}")
    hu = volume * 3072.0 - 1024.0
    distance = _distance(volume.shape[0])
    values = []
    for radius in RADII_MM:
        ball = hu[distance <= radius]
        values += [float(ball.mean()), float(ball.std())]
    smooth = ndimage.gaussian_filter(hu, 1.0, mode="nearest")
    core = distance <= 2
    reference = float(np.median(smooth[core]))
    background = float(np.median(smooth[(distance > RADII_MM[-1]) & (distance <= MAX_RADIUS)]))
    if abs(reference - background) >= 2 * MIN_CONTRAST_HU:  # the midpoint splits the two
        side = np.sign(reference - background)
        inside = side * (smooth - (reference + background) / 2) > 0
    else:  # no contrast with the surroundings: a band around the seed's HU
        inside = np.abs(smooth - reference) <= MIN_CONTRAST_HU
    mask = inside & (distance <= MAX_RADIUS)
    labels, _ = ndimage.label(mask)
    core_labels = labels[core & mask]
    if core_labels.size:
        region = labels == np.bincount(core_labels).argmax()
    else:
        region = np.zeros_like(mask)
    n_voxels = int(region.sum())
    values.append(float(np.log10(max(n_voxels, 1))))
    if n_voxels < MIN_VOXELS:
        values.append(1.0)
    else:
        values.append(_surface_faces(region) / float((36 * np.pi * n_voxels**2) ** (1 / 3)))
    return np.asarray(values, dtype=np.float64)


def lesion_descriptors(patches) -> np.ndarray:
    """(N, 8) float32 descriptors of an iterable of patches (an (N, 1, S, S, S) array or any
    iterable of single patches), in order."""
    rows = [lesion_descriptor(patch) for patch in patches]
    if not rows:
        return np.empty((0, len(DESCRIPTOR_NAMES)), dtype=np.float32)
    return np.stack(rows).astype(np.float32)


def table_descriptors(
    table: pd.DataFrame, *, base_dir: str | Path | None = None, progress: bool = False
) -> np.ndarray:
    """(N, 8) float32 descriptors of every lesion of ``table`` from its ``PATCH_SIZE``^3 patch,
    in table order; each image is read once.

    Args:
        table: lesion table (``image_path``, ``coordX/Y/Z`` in LPS mm), at least one row.
        base_dir: folder relative image paths are relative to (else they must be absolute).
        progress: show a progress bar (one step per lesion).

    Raises:
        PatchError: a seed outside its image (the message names the row and the image).
        ValueError: an empty table.
    """
    if len(table) == 0:
        raise ValueError("the lesion table has no rows; there is nothing to describe")
    out = np.empty((len(table), len(DESCRIPTOR_NAMES)), dtype=np.float32)
    for row, patch in iter_patches(table, base_dir, PATCH_SIZE, progress=progress):
        out[row] = lesion_descriptor(patch)
    return out
