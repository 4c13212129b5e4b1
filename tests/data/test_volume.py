"""Volumes from SimpleITK images, their geometry convention and their memory-mapped cache."""

from __future__ import annotations

import gc
import json
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

from fmcib_core.data.patches import patch_grid, sample_patch
from fmcib_core.data.volume import Volume, is_volume_cache, write_volume_cache


@pytest.fixture
def oblique_image(make_image, geometries) -> sitk.Image:
    shape, spacing, origin, direction = geometries["oblique_z20"]
    return make_image(shape, spacing, origin, direction, seed=5)


def test_from_sitk_keeps_voxels_and_geometry(oblique_image):
    volume = Volume.from_sitk(oblique_image)
    assert volume.array.shape == oblique_image.GetSize()[::-1]
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(oblique_image))
    assert tuple(volume.origin) == oblique_image.GetOrigin()
    assert tuple(volume.spacing) == oblique_image.GetSpacing()
    assert tuple(volume.direction.ravel()) == oblique_image.GetDirection()


def test_load_views_the_image_read_and_keeps_it_alive(oblique_image, tmp_path):
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(oblique_image, str(path))
    expected = sitk.GetArrayFromImage(oblique_image)
    volume = Volume.load(path)
    gc.collect()  # nothing but the volume refers to the image its array views
    assert not volume.array.flags.writeable and not volume.array.flags.owndata
    np.testing.assert_array_equal(volume.array, expected)
    copy = pickle.loads(pickle.dumps(volume))  # a copy of the voxels, without the image
    np.testing.assert_array_equal(copy.array, expected)
    assert copy._owner is None and tuple(copy.origin) == tuple(volume.origin)
    with pytest.raises(ValueError, match="read-only"):
        volume.array[0, 0, 0] = 0


def test_index_to_world_follows_simpleitk(oblique_image, make_image, geometries):
    tilted = make_image(*geometries["tilted_flipped"])
    for image in (oblique_image, tilted):
        volume = Volume.from_sitk(image)
        for index in np.random.default_rng(0).uniform(-2, 30, size=(5, 3)):
            world = volume.origin + volume.index_to_world @ index
            expected = image.TransformContinuousIndexToPhysicalPoint(index.tolist())
            np.testing.assert_allclose(world, expected, atol=1e-9)
    corner = oblique_image.TransformIndexToPhysicalPoint([s - 1 for s in oblique_image.GetSize()])
    assert any(np.allclose(c, corner) for c in Volume.from_sitk(oblique_image).corners_lps())


@pytest.mark.parametrize(
    ("size", "pixel", "components", "message"),
    [
        ([8, 8], sitk.sitkInt16, 1, "must be 3D; got 2D"),
        ([4, 4, 4, 2], sitk.sitkInt16, 1, "must be 3D; got 4D"),
        ([4, 4, 4], sitk.sitkVectorFloat32, 3, "got 3 components"),
    ],
)
def test_rejects_images_that_are_not_scalar_3d(size, pixel, components, message):
    with pytest.raises(ValueError, match=message):
        Volume.from_sitk(sitk.Image(size, pixel, components))


def test_rejects_degenerate_geometry():
    with pytest.raises(ValueError, match="degenerate"):
        Volume(np.zeros((2, 2, 2)), np.zeros(3), np.array([1.0, 0.0, 1.0]), np.eye(3))
    with pytest.raises(ValueError, match="origin must have 3"):
        Volume(np.zeros((2, 2, 2)), np.zeros(2), np.ones(3), np.eye(3))


def test_cache_round_trip_is_exact_and_memory_mapped(oblique_image, tmp_path):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(oblique_image, str(source))
    original = Volume.load(source)
    cache = write_volume_cache(original, tmp_path / "ct.vol")
    assert is_volume_cache(cache) and not is_volume_cache(source)
    cached = Volume.load(cache)
    assert isinstance(cached.array, np.memmap) and not cached.array.flags.writeable
    assert cached.array.dtype == original.array.dtype
    np.testing.assert_array_equal(cached.array, original.array)
    for name in ("origin", "spacing", "direction"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(original, name))
    grid = patch_grid(original)
    for seed in (grid.origin + grid.n / 2, grid.origin + 1.5, grid.last - 0.2):
        np.testing.assert_array_equal(sample_patch(cached, seed), sample_patch(original, seed))


def test_cache_from_sitk_image_and_overwrite(oblique_image, make_image, tmp_path):
    path = tmp_path / "ct.vol"
    write_volume_cache(make_image((5, 6, 7), (1.0, 1.0, 1.0)), path)
    write_volume_cache(oblique_image, path)
    assert Volume.load(path).array.shape == oblique_image.GetSize()[::-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.vol"]


def test_cache_refuses_to_replace_other_files(oblique_image, tmp_path):
    (tmp_path / "ct.vol").mkdir()
    (tmp_path / "ct.vol" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a volume cache"):
        write_volume_cache(oblique_image, tmp_path / "ct.vol")
    assert (tmp_path / "ct.vol" / "notes.txt").read_text() == "keep me"


def test_cache_with_wrong_version_is_rejected(oblique_image, tmp_path):
    path = write_volume_cache(oblique_image, tmp_path / "ct.vol")
    geometry = json.loads((path / "geometry.json").read_text())
    (path / "geometry.json").write_text(json.dumps({**geometry, "version": 0}))
    with pytest.raises(ValueError, match="rebuild it"):
        Volume.load(path)
