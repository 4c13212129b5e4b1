"""data layer of fmcib_core: CT volumes, their cache, and seed-point patches."""

from __future__ import annotations

from fmcib_core.data.patches import (
    GridGeometry,
    PatchError,
    extract_patches,
    iter_patches,
    normalise_hu,
    patch_grid,
    random_seed_point,
    sample_patch,
)
from fmcib_core.data.volume import Volume, is_volume_cache, write_volume_cache

__all__ = [
    "GridGeometry",
    "PatchError",
    "Volume",
    "extract_patches",
    "is_volume_cache",
    "iter_patches",
    "normalise_hu",
    "patch_grid",
    "random_seed_point",
    "sample_patch",
    "write_volume_cache",
]
