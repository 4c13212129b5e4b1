"""Checks every converter's output must pass: seeds in the lesion, a patch that shows it, a
valid table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.path import Path as PolygonPath

from fmcib_core.data.patches import HU_OFFSET, HU_SCALE, extract_patches
from fmcib_core.io import read_image, validate_table


def world_centroid(mask_zyx: np.ndarray, origin, spacing, direction=None) -> np.ndarray:
    """Mean world position of a mask's voxels, from the geometry alone (no SimpleITK)."""
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    kji = np.argwhere(mask_zyx).astype(np.float64)
    ijk = kji[:, ::-1] * np.asarray(spacing, float)
    return np.asarray(origin, float) + (ijk @ np.asarray(direction, float).T).mean(axis=0)


def assert_seeds_in_lesions(
    table_path: Path, lesion_hu: float, background_hu: float, labels=(), size: int = 24
) -> pd.DataFrame:
    """Every seed lies in a lesion voxel; its patch's centre is lesion, its corners background;
    the table passes ``validate_table``."""
    report = validate_table(table_path, labels)
    table = pd.read_csv(table_path)
    assert report.n_rows == len(table) > 0
    base = table_path.parent
    for row in table.itertuples():
        image = read_image(base / row.image_path)
        index = image.TransformPhysicalPointToIndex((row.coordX, row.coordY, row.coordZ))
        assert image[index] == lesion_hu, (row, index)
    patches = extract_patches(table_path, size=size) * HU_SCALE - HU_OFFSET
    c = size // 2
    centre = patches[:, 0, c - 1 : c + 1, c - 1 : c + 1, c - 1 : c + 1].mean(axis=(1, 2, 3))
    corner = patches[:, 0, :3, :3, :3].mean(axis=(1, 2, 3))
    contrast = lesion_hu - background_hu
    assert np.all(centre > background_hu + 0.75 * contrast), centre
    assert np.all(centre - corner > 0.7 * contrast), (centre, corner)
    return table


def write_label_map(path: Path, labels_zyx: np.ndarray, like: sitk.Image) -> Path:
    image = sitk.GetImageFromArray(labels_zyx.astype(np.uint8))
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))
    return path


def rasterised_independently(contours, ct) -> np.ndarray:
    """matplotlib's point-in-polygon on the voxel centres (the converter fills by scanlines)."""
    mask = np.zeros(ct.shape_zyx, dtype=bool)
    j, i = np.mgrid[0 : ct.shape_zyx[1], 0 : ct.shape_zyx[2]]
    centres = np.column_stack([i.ravel(), j.ravel()]).astype(float)
    for points in contours:
        index = (points - np.asarray(ct.origin)) / np.asarray(ct.spacing)
        k = int(round(index[0, 2]))
        inside = PolygonPath(index[:, :2]).contains_points(centres).reshape(mask.shape[1:])
        mask[k] ^= inside
    return mask
