"""Masks on an image's grid: grid comparison, nearest-neighbour resampling, polygon filling and
the centroid of a mask in world millimetres (LPS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fmcib_core.io.images import read_image

__all__ = [
    "MaskSeed",
    "fill_polygon",
    "grid_differences",
    "image_grid",
    "index_of_points",
    "mask_seed",
    "resample_nearest",
]

_TOLERANCE = 1e-4  # mm (origin), relative (spacing), absolute (direction cosines)


@dataclass(frozen=True)
class MaskSeed:
    """A mask's centroid.

    Attributes:
        point: the centroid, world mm LPS, (x, y, z).
        voxels: the number of mask voxels.
        volume_mm3: voxels times the voxel volume.
    """

    point: tuple[float, float, float]
    voxels: int
    volume_mm3: float


def image_grid(path: str | Path) -> sitk.Image:
    """An empty uint8 image with the geometry (size, spacing, origin, direction) of an image.

    A file's header alone is read; a DICOM series folder is read with ``read_image``.

    Raises:
        ImageReadError: the image cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        source = read_image(path)
        size, spacing = source.GetSize(), source.GetSpacing()
        origin, direction = source.GetOrigin(), source.GetDirection()
    else:
        read_image_header = sitk.ImageFileReader()
        read_image_header.SetFileName(str(path))
        try:
            read_image_header.ReadImageInformation()
        except RuntimeError:
            read_image(path)  # raises ImageReadError with a one-line message
            raise
        size, spacing = read_image_header.GetSize(), read_image_header.GetSpacing()
        origin, direction = read_image_header.GetOrigin(), read_image_header.GetDirection()
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    grid.SetDirection(direction)
    return grid


def grid_differences(mask: sitk.Image, image: sitk.Image) -> list[str]:
    """How the mask's voxel grid differs from the image's, in words; empty when they agree."""
    found = []
    if mask.GetDimension() != image.GetDimension():
        return [f"dimension {mask.GetDimension()} vs {image.GetDimension()}"]
    if mask.GetSize() != image.GetSize():
        found.append(f"size {list(mask.GetSize())} vs {list(image.GetSize())}")
    spacing_m, spacing_i = np.array(mask.GetSpacing()), np.array(image.GetSpacing())
    if np.any(np.abs(spacing_m - spacing_i) > _TOLERANCE * spacing_i):
        found.append(f"spacing {spacing_m.round(4).tolist()} vs {spacing_i.round(4).tolist()}")
    origin_m, origin_i = np.array(mask.GetOrigin()), np.array(image.GetOrigin())
    if np.any(np.abs(origin_m - origin_i) > _TOLERANCE * 10):
        found.append(f"origin {origin_m.round(3).tolist()} vs {origin_i.round(3).tolist()}")
    dir_m, dir_i = np.array(mask.GetDirection()), np.array(image.GetDirection())
    if np.any(np.abs(dir_m - dir_i) > _TOLERANCE):
        found.append(f"direction {dir_m.round(4).tolist()} vs {dir_i.round(4).tolist()}")
    return found


def resample_nearest(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The mask resampled onto the image's grid by nearest neighbour (0 outside the mask)."""
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def index_of_points(image: sitk.Image, points_lps: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) indices of world points (N, 3) on the image's grid."""
    origin = np.array(image.GetOrigin())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    to_index = np.linalg.inv(direction * np.array(image.GetSpacing())[None, :])
    return (np.asarray(points_lps, dtype=np.float64) - origin) @ to_index.T


def mask_seed(
    image: sitk.Image, mask_zyx: np.ndarray, offset_zyx: tuple[int, int, int] = (0, 0, 0)
) -> MaskSeed | None:
    """The centroid of a boolean mask (axes z, y, x, on ``image``'s grid) in world LPS mm.

    The mean voxel index is mapped through the image's geometry (an affine map, so this is also
    the mean of the voxels' world positions). ``offset_zyx`` is the grid index of the mask's
    first voxel when the mask is a crop of the grid. Returns None for an empty mask.
    """
    voxels = np.argwhere(mask_zyx)
    if len(voxels) == 0:
        return None
    centre_xyz = (voxels.mean(axis=0) + np.asarray(offset_zyx, dtype=np.float64))[::-1]
    point = image.TransformContinuousIndexToPhysicalPoint(centre_xyz.tolist())
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    return MaskSeed(tuple(float(v) for v in point), len(voxels), len(voxels) * voxel_mm3)


def fill_polygon(vertices_xy: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside a closed polygon (even-odd rule).

    Args:
        vertices_xy: (N, 2) continuous pixel indices (column x, row y) of the polygon's vertices;
            the last vertex joins the first.
        shape_yx: the slice's (rows, columns).

    Returns:
        Boolean (rows, columns) array. A pixel centre exactly on a horizontal crossing counts on
        the half-open rule (an edge covers rows y1 <= y < y2).
    """
    inside = np.zeros(shape_yx, dtype=bool)
    v = np.asarray(vertices_xy, dtype=np.float64)
    if len(v) < 3:
        return inside
    x1, y1 = v[:, 0], v[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    rows = np.arange(max(0, int(np.ceil(y1.min()))), min(shape_yx[0], int(np.floor(y1.max())) + 1))
    columns = np.arange(shape_yx[1], dtype=np.float64)
    for row in rows:
        crosses = (y1 <= row) != (y2 <= row)
        if not crosses.any():
            continue
        xa, ya, xb, yb = x1[crosses], y1[crosses], x2[crosses], y2[crosses]
        xs = np.sort(xa + (row - ya) * (xb - xa) / (yb - ya))
        right_of = len(xs) - np.searchsorted(xs, columns, side="right")
        inside[row] = right_of % 2 == 1
    return inside
