"""Reading CT volumes: image files SimpleITK understands and DICOM series folders."""

from __future__ import annotations

import contextlib
import locale
import logging
from collections.abc import Iterator
from pathlib import Path

import SimpleITK as sitk

__all__ = ["ImageReadError", "read_image"]

log = logging.getLogger(__name__)


class ImageReadError(ValueError):
    """An image path that does not hold one readable volume."""


@contextlib.contextmanager
def _process_locale_kept() -> Iterator[None]:
    """Restore the process locale after a call that changes it.

    GDCM (SimpleITK's DICOM reader) sets the C locale of the whole process; left so, every later
    text file the process opens with the default encoding would be read as ASCII.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _read_dicom_series(folder: Path) -> sitk.Image:
    with _process_locale_kept():
        return _read_series(folder)


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ImageReadError(
            f"{folder}: folder holds no DICOM series; point image_path at a volume file "
            "or at a folder with exactly one DICOM series"
        )
    if len(series_ids) > 1:
        raise ImageReadError(
            f"{folder}: folder holds {len(series_ids)} DICOM series ({', '.join(series_ids[:3])}"
            f"{', ...' if len(series_ids) > 3 else ''}); move each series into its own folder"
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    return reader.Execute()


def read_image(path: str | Path) -> sitk.Image:
    """Read a CT volume from a file or a folder holding exactly one DICOM series.

    Args:
        path: an image file (``.nii.gz``, ``.nrrd``, ``.mha``, ...) or a DICOM series folder.

    Returns:
        The image as SimpleITK reads it (pixel values unchanged, geometry in LPS).

    Raises:
        ImageReadError: the path is missing, unreadable, or a folder with zero or several series.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: image does not exist; check image_path")
    try:
        if path.is_dir():
            return _read_dicom_series(path)
        return sitk.ReadImage(str(path))
    except ImageReadError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ImageReadError(f"{path}: image cannot be read ({first}); re-export the file") from err
