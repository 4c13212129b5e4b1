"""Tiny synthetic CT volumes and DICOM series for the io tests."""

from __future__ import annotations

import locale
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SIZE = (20, 20, 10)  # (x, y, z) voxels
SPACING = (0.8, 0.8, 2.5)
ORIGIN = (-50.0, 30.0, 100.0)


def _make_volume(
    size: tuple[int, int, int] = SIZE,
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> sitk.Image:
    """An int16 volume with anisotropic spacing, a non-zero origin and distinct voxel values."""
    values = np.arange(np.prod(size), dtype=np.int16).reshape(size[::-1]) - 1000
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction)
    return image


def _centre(image: sitk.Image) -> tuple[float, float, float]:
    """The world (LPS) position of the volume's centre."""
    return image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])


def _write_dicom_series(folder: Path, image: sitk.Image, series_uid: str) -> None:
    """Write ``image`` as one DICOM file per slice with the tags a series reader needs."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    orientation = "\\".join(f"{v:g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{v:g}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{image.GetSpacing()[1]:g}\\{image.GetSpacing()[0]:g}",
            "0020|0013": str(k + 1),
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}-{k:03d}.dcm"))
        saved = locale.setlocale(locale.LC_ALL)
        writer.Execute(piece)
        locale.setlocale(locale.LC_ALL, saved)  # GDCM sets the process locale to "C"


@pytest.fixture
def volume_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write ``image`` (default: ``make_volume()``) to ``tmp_path / name``."""

    def write(name: str = "ct.nii.gz", image: sitk.Image | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(_make_volume() if image is None else image, str(path))
        return path

    return write


@pytest.fixture
def make_volume() -> Callable[..., sitk.Image]:
    """Factory of in-memory synthetic volumes: ``make_volume(size=..., direction=...)``."""
    return _make_volume


@pytest.fixture
def centre() -> Callable[[sitk.Image], tuple[float, float, float]]:
    """The world (LPS) position of a volume's centre."""
    return _centre


@pytest.fixture
def write_dicom_series() -> Callable[[Path, sitk.Image, str], None]:
    """``write_dicom_series(folder, image, series_uid)``: one DICOM file per slice."""
    return _write_dicom_series
