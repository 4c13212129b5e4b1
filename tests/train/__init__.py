"""Tests of fmcib_core.train, and small synthetic pretraining data shared with the SSL tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage


def write_lesion_table(
    folder: Path, *, n_images: int = 2, lesions_per_image: int = 4, seed: int = 0
) -> Path:
    """Small smooth random CT volumes (``.nii.gz``) and a pretraining table naming them.

    Volumes are 36 x 32 x 20 voxels (x, y, z) of 1 x 1.25 x 2 mm, with per-image origins; every
    other one is stored RAS-style (flipped direction). Lesion seeds (LPS mm) lie well inside.
    Returns the table's path (``table.csv``, image paths relative to ``folder``).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_images):
        field = ndimage.gaussian_filter(rng.standard_normal((20, 32, 36)), 2.0)
        hu = (-600 + 4000 * field).astype(np.int16)
        image = sitk.GetImageFromArray(hu)
        image.SetSpacing((1.0, 1.25, 2.0))
        image.SetOrigin((-20.0 + 3 * i, 10.5, -30.0 - i))
        if i % 2:
            image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
        name = f"case{i}.nii.gz"
        sitk.WriteImage(image, str(folder / name))
        for _ in range(lesions_per_image):
            index = rng.uniform([8, 8, 5], [28, 24, 15])
            x, y, z = image.TransformContinuousIndexToPhysicalPoint(index.tolist())
            rows.append({"image_path": name, "coordX": x, "coordY": y, "coordZ": z})
    table = pd.DataFrame(rows).assign(lesion_id=lambda t: [f"L{k}" for k in range(len(t))])
    table.to_csv(folder / "table.csv", index=False)
    return folder / "table.csv"
