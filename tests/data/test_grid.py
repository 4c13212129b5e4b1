"""The 1 mm grid cache: windows sliced from it equal ``sample_patch`` on the original scan."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from fmcib_core.data.grid import GridVolume, is_grid_cache, write_grid_cache
from fmcib_core.data.patches import (
    PatchError,
    patch_grid,
    random_seed_point,
    sample_patch,
    window_bounds,
)
from fmcib_core.data.volume import Volume

FLOAT32_TOLERANCE = 1e-6  # float32 rounding of values in [0, 1.2]
INT16_TOLERANCE = 0.5 / 3072 + 1e-6  # HU rounded to the nearest integer


def border_seeds(volume: Volume, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeds in the middle, at every face (inside and just beyond), at corners, and random."""
    grid = patch_grid(volume)
    first, last = grid.origin, grid.last
    middle = first + grid.n // 2 + 0.3
    seeds = [middle, first + 0.5, last + 0.3, first + 0.01]
    for axis, depth in itertools.product(range(3), (0.2, 3.7, 24.5)):
        for face in (first[axis] + depth, last[axis] - depth):
            seed = middle.copy()
            seed[axis] = face
            seeds.append(seed)
    seeds.extend(first + rng.uniform(0, grid.n - 1, size=(6, 3)))
    return seeds


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("float32", FLOAT32_TOLERANCE), ("int16", INT16_TOLERANCE)]
)
@pytest.mark.parametrize("size", [50, 16])
def test_windows_equal_sample_patch(geometry_image, tmp_path, dtype, tolerance, size):
    volume = Volume.from_sitk(geometry_image)
    cached = GridVolume.load(write_grid_cache(volume, tmp_path / "grid", dtype=dtype))
    assert cached.array.dtype == np.dtype(dtype)
    for seed in border_seeds(volume, np.random.default_rng(size)):
        window = cached.window(seed, size)
        assert window.shape == (1, size, size, size) and window.dtype == np.float32
        assert np.abs(window - sample_patch(volume, seed, size)).max() <= tolerance, f"{seed}"


def test_whole_grid_is_every_grid_point(make_image, geometries):
    volume = Volume.from_sitk(make_image(*geometries["ras_stored"]))
    grid = GridVolume.from_volume(volume, "float32")
    n = patch_grid(volume).n
    assert grid.array.shape == tuple(n[::-1])
    # one window larger than the grid: its unpadded middle is the whole grid
    seed = grid.grid.origin + n // 2 + 0.5
    side = int(n.max()) * 2
    _, _, pad = window_bounds(grid.grid, seed, side)
    window = sample_patch(volume, seed, side)[0]
    middle = tuple(slice(before, side - after) for before, after in pad)
    np.testing.assert_allclose((grid.array + 1024) / 3072, window[middle], atol=FLOAT32_TOLERANCE)


def test_int16_rounds_to_the_nearest_hu(make_image, geometries):
    volume = Volume.from_sitk(make_image(*geometries["anisotropic"]))
    exact = GridVolume.from_volume(volume, "float32").array
    rounded = GridVolume.from_volume(volume, "int16").array
    assert np.abs(rounded - exact.astype(np.float64)).max() <= 0.5 + 1e-4  # float32 exact
    assert np.abs(rounded - exact).mean() > 0.1  # HU between integers were rounded


def test_seed_outside_is_the_same_error(make_image, geometries, tmp_path):
    volume = Volume.from_sitk(make_image(*geometries["ras_stored"]))
    cached = GridVolume.load(write_grid_cache(volume, tmp_path / "g"))
    seed = patch_grid(volume).origin * np.array([-1, -1, 1]) - np.array([5, 5, 0])
    with pytest.raises(PatchError) as from_patch:
        sample_patch(volume, seed)
    with pytest.raises(PatchError) as from_cache:
        cached.window(seed)
    assert str(from_cache.value) == str(from_patch.value)


def test_random_seed_points_match_the_scan(make_image, geometries, tmp_path):
    volume = Volume.from_sitk(make_image(*geometries["large"]))
    cached = GridVolume.load(write_grid_cache(volume, tmp_path / "g"))
    ours = cached.random_seed_point(np.random.default_rng(3), 32, avoid_lps=None)
    np.testing.assert_array_equal(ours, random_seed_point(volume, np.random.default_rng(3), 32))


def test_cache_is_memory_mapped_and_refuses_strangers(make_image, geometries, tmp_path):
    volume = Volume.from_sitk(make_image(*geometries["anisotropic"]))
    path = write_grid_cache(volume, tmp_path / "g")
    assert is_grid_cache(path) and isinstance(GridVolume.load(path).array, np.memmap)
    write_grid_cache(volume, path, dtype="float32")  # an existing grid cache is replaced
    assert GridVolume.load(path).array.dtype == np.float32
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(FileExistsError, match="not a grid cache"):
        write_grid_cache(volume, other)
    with pytest.raises(FileNotFoundError, match="not a grid cache"):
        GridVolume.load(other)
    meta = json.loads((path / "grid.json").read_text())
    (path / "grid.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="rebuild it"):
        GridVolume.load(path)
    with pytest.raises(ValueError, match="dtype must be one of"):
        GridVolume.from_volume(volume, "float16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "other"]  # no temporaries left
