"""Reading CT volumes from files and DICOM series folders."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from fmcib_core.io import ImageReadError, read_image


def test_reads_a_file_unchanged(volume_file, make_volume):
    path = volume_file("ct.nrrd")
    image = read_image(path)
    expected = make_volume()
    assert image.GetSize() == expected.GetSize()
    assert np.allclose(image.GetSpacing(), expected.GetSpacing())
    assert np.allclose(image.GetOrigin(), expected.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected))


def test_reads_a_dicom_series_folder(tmp_path, make_volume, write_dicom_series):
    expected = make_volume(size=(8, 6, 4))
    write_dicom_series(tmp_path / "series", expected, "1.2.826.0.1.3680043.2.1125.1")
    image = read_image(tmp_path / "series")
    assert image.GetSize() == (8, 6, 4)
    assert np.allclose(image.GetSpacing(), expected.GetSpacing())
    assert np.allclose(image.GetOrigin(), expected.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(expected))


def test_folder_with_two_series_is_an_error(tmp_path, make_volume, write_dicom_series):
    image = make_volume(size=(4, 4, 3))
    write_dicom_series(tmp_path / "mixed", image, "1.2.826.0.1.3680043.2.1125.1")
    write_dicom_series(tmp_path / "mixed", image, "1.2.826.0.1.3680043.2.1125.2")
    with pytest.raises(ImageReadError, match=r"holds 2 DICOM series .*; move each series"):
        read_image(tmp_path / "mixed")


def test_folder_without_series_is_an_error(tmp_path):
    with pytest.raises(ImageReadError, match="folder holds no DICOM series; point image_path"):
        read_image(tmp_path)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ImageReadError, match="image does not exist; check image_path"):
        read_image(tmp_path / "missing.nii.gz")


def test_random_bytes_are_an_error(tmp_path):
    path = tmp_path / "noise.nrrd"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ImageReadError, match=r"image cannot be read \(.*\); re-export the file"):
        read_image(path)


def test_reading_dicom_keeps_the_process_locale(tmp_path, make_volume, write_dicom_series):
    import locale

    write_dicom_series(tmp_path / "series", make_volume(), "1.2.826.0.1.3680043.2.1125.1")
    before = (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False))
    read_image(tmp_path / "series")
    assert (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False)) == before
