"""A CT volume as voxels plus geometry, and its memory-mappable cache.

The cache is a folder holding two files:

- ``voxels.npy``: the voxels as stored (HU, the image's own dtype), axes (z, y, x), written with
  ``np.save`` uncompressed so that ``np.load(mmap_mode="r")`` maps it without reading it;
- ``geometry.json``: ``{"format": "fmcib-volume-cache", "version": 1, "shape_zyx": [...],
  "dtype": "...", "origin": [x, y, z], "spacing": [x, y, z], "direction": [[...], [...], [...]]}``
  with origin, spacing and the 3x3 direction matrix exactly as SimpleITK gives them (LPS, x, y, z
  order). JSON writes floats with ``repr``, so the geometry round-trips bit for bit.

Sampling patches from a cache is then a few page reads per lesion instead of a full decompression.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.images import read_image

__all__ = ["CACHE_GEOMETRY", "CACHE_VOXELS", "Volume", "is_volume_cache", "write_volume_cache"]

CACHE_VOXELS = "voxels.npy"
CACHE_GEOMETRY = "geometry.json"
_CACHE_FORMAT = "fmcib-volume-cache"
_CACHE_VERSION = 1


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar CT volume.

    Attributes:
        array: voxels as stored (HU), shape (Z, Y, X); int16, float, a read-only ``np.memmap``, or
            a read-only view of a SimpleITK image (``from_sitk(view=True)``, ``load``).
        origin: world position (LPS mm) of voxel (0, 0, 0), shape (3,), order (x, y, z).
        spacing: voxel size in mm, shape (3,), order (x, y, z).
        direction: 3x3 direction cosines as SimpleITK gives them (row-major, column j is the world
            direction of index axis j), so ``world = origin + direction @ (spacing * index_xyz)``.
    """

    array: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    # The SimpleITK image whose buffer ``array`` views (``from_sitk(view=True)``), kept alive.
    _owner: sitk.Image | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        # A pickled view is a copy of its voxels: the copy needs no owner.
        return {**self.__dict__, "_owner": None}

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"volume must be 3D (z, y, x); got array of shape {self.array.shape}")
        object.__setattr__(self, "origin", _vector(self.origin, "origin"))
        object.__setattr__(self, "spacing", _vector(self.spacing, "spacing"))
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.size != 9:
            raise ValueError(f"direction must have 9 entries; got {direction.size}")
        object.__setattr__(self, "direction", direction.reshape(3, 3))
        if np.any(self.spacing <= 0) or abs(np.linalg.det(self.direction)) < 1e-6:
            raise ValueError(
                f"degenerate geometry: spacing {self.spacing.tolist()}, "
                f"direction {self.direction.tolist()}"
            )

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Voxel counts in index order (x, y, z)."""
        z, y, x = self.array.shape
        return (x, y, z)

    @property
    def index_to_world(self) -> np.ndarray:
        """The 3x3 matrix ``direction @ diag(spacing)`` mapping an (x, y, z) index step to mm."""
        return self.direction * self.spacing[None, :]

    def corners_lps(self) -> np.ndarray:
        """World positions (LPS mm) of the 8 corner voxel centres, shape (8, 3)."""
        last = np.array(self.shape_xyz, dtype=np.float64) - 1
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
        return self.origin + (corners * last) @ self.index_to_world.T

    @classmethod
    def from_sitk(cls, image: sitk.Image, *, view: bool = False) -> Volume:
        """A SimpleITK image's voxels and geometry.

        Args:
            image: a 3D scalar image.
            view: ``array`` becomes a read-only view of the image's buffer instead of a copy (the
                volume keeps the image): no second buffer to allocate and fill, for an image made
                only to be wrapped, as :meth:`load` does.

        Raises:
            ValueError: the image is not 3D or has several components per voxel.
        """
        if image.GetDimension() != 3:
            raise ValueError(f"image must be 3D; got {image.GetDimension()}D")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"image must have one value per voxel; got {image.GetNumberOfComponentsPerPixel()} "
                "components (a vector/RGB image is not a CT volume)"
            )
        return cls(
            array=sitk.GetArrayViewFromImage(image) if view else sitk.GetArrayFromImage(image),
            origin=np.array(image.GetOrigin()),
            spacing=np.array(image.GetSpacing()),
            direction=np.array(image.GetDirection()),
            _owner=image if view else None,
        )

    @classmethod
    def load(cls, path: str | Path) -> Volume:
        """Open a volume cache (memory-mapped, read-only) or read any image ``read_image`` reads
        (its voxels a read-only view of the image read)."""
        path = Path(path)
        if is_volume_cache(path):
            return _load_cache(path)
        return cls.from_sitk(read_image(path), view=True)


def _vector(value: object, name: str) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float64).reshape(-1)
    if vector.shape != (3,):
        raise ValueError(f"{name} must have 3 entries (x, y, z); got {vector.size}")
    return vector


def is_volume_cache(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``write_volume_cache``."""
    path = Path(path)
    return (path / CACHE_GEOMETRY).is_file() and (path / CACHE_VOXELS).is_file()


def write_volume_cache(image: sitk.Image | Volume, path: str | Path) -> Path:
    """Write a volume as a memory-mappable cache folder (format in the module docstring).

    The folder is written under a temporary name and renamed into place; an existing cache at
    ``path`` is replaced.

    Args:
        image: a SimpleITK image or a ``Volume``.
        path: the cache folder to create.

    Returns:
        ``path``.
    """
    volume = image if isinstance(image, Volume) else Volume.from_sitk(image)
    path = Path(path)
    geometry = {
        "format": _CACHE_FORMAT,
        "version": _CACHE_VERSION,
        "shape_zyx": list(volume.array.shape),
        "dtype": np.dtype(volume.array.dtype).str,
        "origin": volume.origin.tolist(),
        "spacing": volume.spacing.tolist(),
        "direction": volume.direction.tolist(),
    }
    if path.exists() and not is_volume_cache(path):
        raise FileExistsError(f"{path}: exists and is not a volume cache; refusing to replace it")
    with atomic_path(path) as tmp:
        tmp.mkdir()
        np.save(tmp / CACHE_VOXELS, np.ascontiguousarray(volume.array), allow_pickle=False)
        (tmp / CACHE_GEOMETRY).write_text(json.dumps(geometry, indent=1) + "\n")
        if path.exists():
            # os.replace cannot overwrite a non-empty folder: drop the old cache just before.
            shutil.rmtree(path)
    return path


def read_cache_folder(
    path: Path, voxels: str, geometry: str, kind: str, version: int
) -> tuple[np.ndarray, dict]:
    """The memory-mapped voxels and the JSON of a cache folder, both checked.

    Args:
        path: the folder.
        voxels, geometry: its ``.npy`` and ``.json`` file names.
        kind: the expected ``format`` (e.g. ``fmcib-volume-cache``).
        version: the expected ``version``.

    Raises:
        ValueError: another format or version, or voxels whose shape or dtype differ from the
            JSON's ``shape_zyx`` and ``dtype`` (the message says to rebuild the cache).
    """
    meta = json.loads((path / geometry).read_text())
    if meta.get("format") != kind or meta.get("version") != version:
        raise ValueError(
            f"{path}: not a version-{version} {kind} (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}); rebuild it"
        )
    array = np.load(path / voxels, mmap_mode="r", allow_pickle=False)
    if list(array.shape) != meta["shape_zyx"] or array.dtype.str != meta["dtype"]:
        raise ValueError(
            f"{path}: voxels {array.shape} {array.dtype.str} do not match {geometry} "
            f"{meta['shape_zyx']} {meta['dtype']}; rebuild the cache"
        )
    return array, meta


def _load_cache(path: Path) -> Volume:
    array, geometry = read_cache_folder(
        path, CACHE_VOXELS, CACHE_GEOMETRY, _CACHE_FORMAT, _CACHE_VERSION
    )
    return Volume(
        array=array,
        origin=np.array(geometry["origin"]),
        spacing=np.array(geometry["spacing"]),
        direction=np.array(geometry["direction"]),
    )
