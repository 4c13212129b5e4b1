"""Seed-point patches against an independent whole-volume implementation of docs/method.md 2."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import fmcib_core
from fmcib_core.data import volume as volume_module
from fmcib_core.data.patches import (
    PatchError,
    extract_patches,
    images_for_first,
    iter_patches,
    normalise_hu,
    patch_grid,
    random_seed_point,
    sample_patch,
)
from fmcib_core.data.volume import Volume
from fmcib_core.io.images import ImageReadError

TOLERANCE = 1e-5


# --- the oracle: the published recipe, whole volume, written from docs/method.md section 2 only ---


def trilinear_zero_padded(values: np.ndarray, index_zyx: np.ndarray) -> np.ndarray:
    """Trilinear interpolation at continuous indices (P, 3) of a volume surrounded by zeros."""
    padded = np.pad(values, 1)
    floor = np.floor(index_zyx)
    frac = index_zyx - floor
    base = floor.astype(np.int64) + 1
    out = np.zeros(len(index_zyx))
    for corner in itertools.product((0, 1), repeat=3):
        idx = base + np.array(corner)
        valid = np.all((idx >= 0) & (idx < padded.shape), axis=1)
        weight = np.prod(np.where(np.array(corner) == 1, frac, 1 - frac), axis=1)
        gathered = np.zeros(len(index_zyx))
        gathered[valid] = padded[idx[valid, 0], idx[valid, 1], idx[valid, 2]]
        out += weight * gathered
    return out


def oracle_grid(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample the whole image onto the RAS 1 mm grid, flip x and y: (LPS-ordered grid, n, origin).

    The grid array is indexed [x, y, z] like the world axes.
    """
    last = np.array(image.GetSize()) - 1
    corners = [
        image.TransformIndexToPhysicalPoint([int(c) for c in np.array(corner) * last])
        for corner in itertools.product((0, 1), repeat=3)
    ]
    corners_ras = np.array(corners) * np.array([-1, -1, 1])
    lo, hi = corners_ras.min(axis=0), corners_ras.max(axis=0)
    n = np.round(hi - lo + 1).astype(int)
    ras_axes = [lo[i] + np.arange(n[i]) for i in range(3)]
    points_ras = np.stack(np.meshgrid(*ras_axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points_lps = points_ras * np.array([-1, -1, 1])
    matrix = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    index_xyz = np.linalg.solve(matrix, (points_lps - np.array(image.GetOrigin())).T).T
    hu = sitk.GetArrayFromImage(image).astype(np.float64)
    values = trilinear_zero_padded((hu + 1024) / 3072, index_xyz[:, ::-1]).reshape(*n)
    lps_grid = values[::-1, ::-1, :]
    origin = np.array([-(lo[0] + n[0] - 1), -(lo[1] + n[1] - 1), lo[2]])
    return lps_grid, n, origin


def oracle_patch(oracle: tuple, seed: np.ndarray, size: int) -> np.ndarray:
    """Crop the LPS grid of ``oracle_grid`` around the truncated seed index and pad."""
    grid, n, origin = oracle
    c = np.trunc(np.asarray(seed) - origin).astype(int)
    lo = np.maximum(c - size // 2, 0)
    hi = np.minimum(c - size // 2 + size, n)
    crop = grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].transpose(2, 1, 0)
    pad = [((size - s) // 2, size - s - (size - s) // 2) for s in crop.shape]
    return np.pad(crop, pad)[None]


def seeds_for(oracle: tuple, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeds near every face, on cell boundaries, just below the origin, and random ones."""
    _, n, origin = oracle
    last = origin + n - 1
    middle = origin + (n // 2) + 0.3
    seeds = [middle, origin + 0.5, last + 0.3, origin - 0.4]
    for axis, depth in itertools.product(range(3), (2.3, 9.6)):
        for face in (origin[axis] + depth, last[axis] - depth):
            seed = middle.copy()
            seed[axis] = face
            seeds.append(seed)
    # trunc and round disagree: exactly half a cell (11.5 -> 11 vs 12) and 0.7 past a grid point.
    seeds.append(origin + np.minimum(n - 1, 11) + 0.5)
    seeds.append(origin + n // 3 + 0.7)
    seeds.extend(origin + rng.uniform(0, n - 1, size=(4, 3)))
    return seeds


# --- equivalence with the whole-volume recipe ------------------------------------------------


@pytest.mark.parametrize("size", [50, 32, 16])
def test_matches_whole_volume_recipe(geometry_image, size):
    volume = Volume.from_sitk(geometry_image)
    oracle = oracle_grid(geometry_image)
    np.testing.assert_array_equal(patch_grid(volume).n, oracle[1])
    np.testing.assert_allclose(patch_grid(volume).origin, oracle[2], atol=1e-9)
    for seed in seeds_for(oracle, np.random.default_rng(size)):
        patch = sample_patch(volume, seed, size)
        assert patch.shape == (1, size, size, size) and patch.dtype == np.float32
        expected = oracle_patch(oracle, seed, size)
        assert np.abs(patch - expected).max() <= TOLERANCE, f"seed {seed}"


def test_size_50_window_inside_large_volume(geometries):
    shape, spacing, origin, direction = geometries["large"]
    image = sitk.GetImageFromArray(
        np.random.default_rng(1).normal(0, 300, size=shape[::-1]).astype(np.float32)
    )
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(direction.ravel()))
    oracle = oracle_grid(image)
    seed = oracle[2] + oracle[1] // 2 + 0.25
    patch = sample_patch(Volume.from_sitk(image), seed, 50)
    assert np.all(patch != 0), "a 50 mm window inside the grid needs no padding"
    assert np.abs(patch - oracle_patch(oracle, seed, 50)).max() <= TOLERANCE


def test_interior_matches_simpleitk_resample(make_image):
    """An independent check of the world<->index convention on an oblique volume."""
    direction = np.diag([-1.0, -1, 1]) @ _rot_z(20.0)
    image = make_image((64, 64, 40), (1.0, 0.95, 1.3), (12.5, -30.25, 4.0), direction)
    volume = Volume.from_sitk(image)
    grid = patch_grid(volume)
    seed = volume.corners_lps().mean(axis=0) + 0.37
    patch = sample_patch(volume, seed, 16)
    start = grid.origin + np.trunc(seed - grid.origin) - 8
    reference = sitk.Image(16, 16, 16, sitk.sitkFloat32)
    reference.SetOrigin(tuple(start))
    normalised = (sitk.Cast(image, sitk.sitkFloat64) + 1024.0) / 3072.0
    resampled = sitk.Resample(normalised, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    np.testing.assert_allclose(patch[0], sitk.GetArrayFromImage(resampled), atol=TOLERANCE)


def _rot_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


# --- analytic values --------------------------------------------------------------------------


def test_grid_count_rounds_half_to_even(make_image):
    # extent 23.5 mm -> 24.5 points -> 24 (half to even); 22.5 + 1 -> 23.5 -> 24 as well.
    image = make_image((48, 46, 3), (0.5, 0.5, 1.0))
    grid = patch_grid(Volume.from_sitk(image))
    np.testing.assert_array_equal(grid.n, [24, 24, 3])


def test_identity_grid_reproduces_voxels(make_image):
    image = make_image((20, 20, 20), (1.0, 1.0, 1.0), (-7.0, 3.0, 11.0))
    volume = Volume.from_sitk(image)
    patch = sample_patch(volume, np.array([-7.0, 3.0, 11.0]) + 10.5, 8)
    expected = normalise_hu(volume.array[6:14, 6:14, 6:14])
    np.testing.assert_allclose(patch[0], expected, atol=1e-7)


def test_points_beyond_last_voxel_centre_blend_with_minus_1024(make_image):
    # z: 9 voxels of 1.2 mm -> extent 9.6 mm -> 11 grid points; the last one lies 0.4 mm (1/3
    # voxel) beyond the last voxel centre, so it gets 2/3 of that voxel's value and 1/3 of 0.
    values = np.full((9, 3, 3), 2048, dtype=np.int16)
    image = make_image((3, 3, 9), (1.0, 1.0, 1.2), values=values)
    patch = sample_patch(Volume.from_sitk(image), np.array([1.5, 1.5, 5.5]), 16)[0]
    # crop z [5 - 8, 5 + 8) -> [0, 11): 11 slices, padded 2 before and 3 after.
    column = patch[:, 7, 7]
    np.testing.assert_allclose(column[2:12], 1.0, atol=1e-6)
    np.testing.assert_allclose(column[12], 2 / 3, atol=1e-6)
    np.testing.assert_array_equal(column[:2], 0)
    np.testing.assert_array_equal(column[13:], 0)


@pytest.mark.parametrize(
    ("hu", "expected"),
    [(-1024, 0.0), (2048, 1.0), (-3072, -2 / 3), (5120, 2.0), (0, 1024 / 3072)],
)
def test_normalisation_has_no_clipping(make_image, hu, expected):
    values = np.full((12, 12, 12), hu, dtype=np.int16)
    volume = Volume.from_sitk(make_image((12, 12, 12), (1.0, 1.0, 1.0), values=values))
    patch = sample_patch(volume, np.array([6.5, 6.5, 6.5]), 4)
    np.testing.assert_allclose(patch, expected, rtol=1e-6)
    assert normalise_hu(np.array([hu]))[0] == pytest.approx(expected)


# --- bad seeds --------------------------------------------------------------------------------


def test_seed_outside_grid_names_seed_and_extent(make_image):
    volume = Volume.from_sitk(make_image((20, 20, 10), (1.0, 1.0, 2.0), (100.0, 50.0, -30.0)))
    with pytest.raises(PatchError, match=r"seed \[0\.0, 60\.0, -20\.0\].*outside.*spans"):
        sample_patch(volume, np.array([0.0, 60.0, -20.0]))


def test_seed_given_in_ras_is_recognised(make_image):
    volume = Volume.from_sitk(make_image((20, 20, 10), (1.0, 1.0, 2.0), (100.0, 50.0, -30.0)))
    with pytest.raises(PatchError, match="looks like RAS"):
        sample_patch(volume, np.array([-110.5, -60.5, -20.0]))


@pytest.mark.parametrize("seed", [[np.nan, 1.0, 1.0], [1.0, 2.0], [np.inf, 0.0, 0.0]])
def test_seed_not_three_finite_numbers(make_image, seed):
    volume = Volume.from_sitk(make_image((8, 8, 8), (1.0, 1.0, 1.0)))
    with pytest.raises(PatchError, match="3 finite"):
        sample_patch(volume, np.array(seed))


# --- random seed points (SSL negatives) -------------------------------------------------------


def test_random_seed_point_window_fits_and_is_uniform(make_image):
    volume = Volume.from_sitk(make_image((30, 70, 60), (1.0, 1.0, 1.0)))
    grid = patch_grid(volume)
    rng = np.random.default_rng(0)
    index = np.array(
        [np.trunc(random_seed_point(volume, rng, 50) - grid.origin) for _ in range(800)]
    ).astype(int)
    # x: grid shorter than 50 -> any index; y, z: the whole window on the grid.
    assert set(index[:, 0]) == set(range(30))
    assert set(index[:, 1]) == set(range(25, 70 - 50 + 25 + 1))
    assert set(index[:, 2]) == set(range(25, 60 - 50 + 25 + 1))


def test_random_seed_point_is_deterministic_and_keeps_distance(make_image):
    volume = Volume.from_sitk(make_image((60, 60, 60), (1.0, 1.0, 1.0)))
    first = random_seed_point(volume, np.random.default_rng(7))
    np.testing.assert_array_equal(first, random_seed_point(volume, np.random.default_rng(7)))
    lesion = np.array([30.0, 30.0, 30.0])
    rng = np.random.default_rng(3)
    for _ in range(50):
        point = random_seed_point(volume, rng, 16, avoid_lps=lesion, min_distance_mm=20.0)
        assert np.linalg.norm(point - lesion) >= 20.0
    assert random_seed_point(volume, rng, 16, avoid_lps=lesion, min_distance_mm=500.0) is None


# --- tables -----------------------------------------------------------------------------------


@pytest.fixture
def lesion_table(tmp_path, make_image, geometries):
    """Three images under imgs/, a CSV beside them with relative paths and interleaved rows."""
    (tmp_path / "imgs").mkdir()
    names = ["a", "b", "c"]
    for i, name in enumerate(names):
        shape, spacing, origin, direction = geometries[sorted(geometries)[i]]
        sitk.WriteImage(
            make_image(shape, spacing, origin, direction, seed=i),
            str(tmp_path / f"imgs/{name}.mha"),
        )
    rows = []
    for k, name in enumerate(["a", "b", "a", "c", "b", "a"]):
        volume = Volume.load(tmp_path / f"imgs/{name}.mha")
        grid = patch_grid(volume)
        # +0.3 keeps seeds off cell boundaries, where a CSV round trip could flip the trunc.
        seed = grid.origin + np.floor((k + 1) / 8 * (grid.n - 1)) + 0.3
        coords = {"coordX": seed[0], "coordY": seed[1], "coordZ": seed[2]}
        rows.append({"image_path": f"imgs/{name}.mha", "lesion": k, **coords})
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "lesions.csv", index=False)
    return tmp_path / "lesions.csv", table


def _expected(table, base):
    return np.stack(
        [
            sample_patch(Volume.load(base / r.image_path), [r.coordX, r.coordY, r.coordZ], 16)
            for r in table.itertuples()
        ]
    )


def test_extract_patches_table_order_and_one_read_per_image(lesion_table, monkeypatch):
    path, table = lesion_table
    reads = []
    real = volume_module.read_image
    monkeypatch.setattr(volume_module, "read_image", lambda p: reads.append(p) or real(p))
    patches = fmcib_core.extract_patches(path, 16, progress=True)
    assert sorted(map(str, reads)) == [str(path.parent / f"imgs/{n}.mha") for n in "abc"]
    assert patches.shape == (6, 1, 16, 16, 16) and patches.dtype == np.float32
    np.testing.assert_array_equal(patches, _expected(table, path.parent))


def test_extract_patches_reads_parquet(lesion_table, tmp_path):
    path, table = lesion_table
    table.to_parquet(tmp_path / "lesions.parquet")
    patches = extract_patches(tmp_path / "lesions.parquet", 16)
    np.testing.assert_array_equal(patches, _expected(table, tmp_path))


def test_extract_patches_dataframe_needs_base_dir(lesion_table, tmp_path):
    _, table = lesion_table
    with pytest.raises(ValueError, match="relative.*base_dir"):
        extract_patches(table, 16)
    patches = extract_patches(table, 16, base_dir=tmp_path)
    np.testing.assert_array_equal(patches, _expected(table, tmp_path))


def test_iter_patches_groups_rows_by_image(lesion_table, tmp_path):
    _, table = lesion_table
    rows = [row for row, _ in iter_patches(table, tmp_path, 16)]
    assert rows == [0, 2, 5, 1, 4, 3]


@pytest.mark.parametrize("first_reads", [2, 3, 10])
def test_first_reads_side_by_side_change_nothing(lesion_table, tmp_path, first_reads, monkeypatch):
    _, table = lesion_table
    expected = _expected(table, tmp_path)[[0, 2, 5, 1, 4, 3]]
    threads = []
    real = volume_module.read_image
    monkeypatch.setattr(
        volume_module, "read_image", lambda p: threads.append(threading.current_thread()) or real(p)
    )
    pairs = list(iter_patches(table, tmp_path, 16, first_reads=first_reads))
    assert [row for row, _ in pairs] == [0, 2, 5, 1, 4, 3]
    np.testing.assert_array_equal(np.stack([p for _, p in pairs]), expected)
    assert len(threads) == 3  # each image still read once
    side_by_side = min(first_reads, 3)
    assert all(t is not threading.main_thread() for t in threads[:side_by_side])
    assert all(t is threading.main_thread() for t in threads[side_by_side:])


def test_an_unreadable_image_fails_in_its_turn_with_first_reads(lesion_table, tmp_path):
    _, table = lesion_table
    (tmp_path / "imgs/b.mha").write_bytes(b"not an image")
    patches = iter_patches(table, tmp_path, 16, first_reads=3)
    assert [next(patches)[0] for _ in range(3)] == [0, 2, 5]  # image a's rows come first
    with pytest.raises(ImageReadError, match=r"b\.mha: image cannot be read"):
        next(patches)


def test_first_reads_below_one_is_refused(lesion_table, tmp_path):
    with pytest.raises(ValueError, match="first_reads must be at least 1; got 0"):
        next(iter_patches(lesion_table[1], tmp_path, 16, first_reads=0))


@pytest.mark.parametrize(("n_rows", "images"), [(1, 1), (3, 1), (4, 2), (5, 2), (6, 3), (99, 3)])
def test_images_for_first_counts_the_images_iter_patches_reads(
    lesion_table, tmp_path, n_rows, images
):
    # images in order of first appearance: a (3 rows), b (2), c (1)
    assert images_for_first(lesion_table[1], n_rows, tmp_path) == images


def test_seed_outside_names_row_and_image(lesion_table, tmp_path):
    _, table = lesion_table
    table.loc[4, "coordX"] = 1e4
    with pytest.raises(PatchError, match=r"row 4 \(.*b\.mha\): seed .* outside"):
        extract_patches(table, 16, base_dir=tmp_path)


def test_table_without_coordinates_is_rejected():
    with pytest.raises(ValueError, match="coordZ"):
        extract_patches(pd.DataFrame({"image_path": ["/x.mha"], "coordX": [0], "coordY": [0]}))
