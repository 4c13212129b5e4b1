"""From a seed point to a patch: the one sampling function shared by training and inference.

The patch is the window of docs/method.md section 2: the volume resampled onto an axis-aligned 1 mm
grid built in RAS terms from the 8 corner voxel centres, oriented LPS, cropped around the truncated
seed index and padded symmetrically. Only the window's points are sampled (trilinear, from the
original voxels, blending with -1024 HU outside the box of voxel centres); the whole grid is never
built. Axis-aligned volumes (any signed permutation of the axes, the usual case) are interpolated
one axis at a time; oblique ones with ``scipy.ndimage.map_coordinates`` on the needed sub-block.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from fmcib_core.data.volume import Volume
from fmcib_core.io.tables import COORD_COLUMNS, read_table, resolve_image_paths

__all__ = [
    "HU_OFFSET",
    "HU_SCALE",
    "GridGeometry",
    "PatchError",
    "extract_patches",
    "images_for_first",
    "iter_patches",
    "normalise_hu",
    "patch_grid",
    "random_seed_point",
    "sample_grid",
    "sample_patch",
    "window_bounds",
]

log = logging.getLogger(__name__)

HU_OFFSET = 1024.0
HU_SCALE = 3072.0
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])


class PatchError(ValueError):
    """A seed point that has no patch: outside the scan's grid, or not a finite number."""


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """``(HU + 1024) / 3072`` in float64, without clipping (-1024 -> 0, 2048 -> 1)."""
    return (np.asarray(hu, dtype=np.float64) + HU_OFFSET) / HU_SCALE


@dataclass(frozen=True, eq=False)
class GridGeometry:
    """The scan's 1 mm resampling grid (docs/method.md 2.2-2.3); every array is in (x, y, z) order.

    Attributes:
        lo: the grid's first point in RAS mm (per-axis minimum over the 8 corner voxel centres).
        n: point counts, ``round(hi - lo + 1)`` with numpy's half-to-even rounding.
        origin: the LPS world position of grid index (0, 0, 0) once oriented LPS; index ``j`` lies
            at ``origin + j`` mm.
    """

    lo: np.ndarray
    n: np.ndarray
    origin: np.ndarray

    @property
    def last(self) -> np.ndarray:
        """LPS world position of the grid's last point, ``origin + n - 1``."""
        return self.origin + self.n - 1


def patch_grid(volume: Volume) -> GridGeometry:
    """Build the RAS 1 mm grid of ``volume`` (direction cosines dropped) and orient it LPS."""
    corners_ras = volume.corners_lps() * _RAS_FLIP
    lo, hi = corners_ras.min(axis=0), corners_ras.max(axis=0)
    n = np.round(hi - lo + 1).astype(np.int64)
    origin = np.array([-(lo[0] + n[0] - 1), -(lo[1] + n[1] - 1), lo[2]])
    return GridGeometry(lo=lo, n=n, origin=origin)


def _seed_index(seed_lps: np.ndarray, grid: GridGeometry) -> np.ndarray:
    seed = np.asarray(seed_lps, dtype=np.float64).reshape(-1)
    if seed.shape != (3,) or not np.all(np.isfinite(seed)):
        raise PatchError(f"seed {seed.tolist()} must be 3 finite LPS mm values (x, y, z)")
    index = np.trunc(seed - grid.origin).astype(np.int64)
    if np.all((index >= 0) & (index < grid.n)):
        return index
    message = (
        f"seed {seed.tolist()} (LPS mm) lies outside the scan's 1 mm grid, which spans "
        f"{grid.origin.tolist()} to {grid.last.tolist()} (LPS mm)"
    )
    flipped = np.trunc(seed * _RAS_FLIP - grid.origin)
    if np.all((flipped >= 0) & (flipped < grid.n)):
        message += "; with x and y negated it would be inside: the seed looks like RAS, give LPS"
    raise PatchError(message)


def sample_grid(volume: Volume, axes_lps: list[np.ndarray]) -> np.ndarray:
    """Trilinear values (normalised, float64) at the LPS points ``x * y * z``, axes (z, y, x).

    Args:
        volume: the CT volume (HU).
        axes_lps: three 1D arrays of LPS mm positions (x, y, z), each evenly spaced by +1 mm.

    Returns:
        float64 array of shape (len z, len y, len x); points beyond the box of voxel centres blend
        with 0 (-1024 HU).
    """
    to_index = np.linalg.inv(volume.index_to_world)
    base = to_index @ (np.array([a[0] for a in axes_lps]) - volume.origin)
    steps = [np.arange(len(a), dtype=np.float64) for a in axes_lps]
    nonzero = to_index != 0
    if np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1):
        return _sample_separable(volume, to_index, base, steps)
    return _sample_oblique(volume, to_index, base, steps)


def _sample_separable(
    volume: Volume, to_index: np.ndarray, base: np.ndarray, steps: list[np.ndarray]
) -> np.ndarray:
    """Axis-aligned directions (any signed permutation): trilinear as three 1D interpolations.

    Each window axis moves along exactly one index axis, so the sub-block is interpolated one axis
    at a time (a gather and a blend per axis) instead of 125,000 independent point lookups.
    """
    world_of_index = np.argmax(np.abs(to_index), axis=1)  # index axis k moves along this one
    shape_xyz = volume.shape_xyz
    positions, slices = [], []
    for k in range(3):
        i = world_of_index[k]
        u = base[k] + to_index[k, i] * steps[i]
        start = int(np.clip(np.floor(u.min()), 0, shape_xyz[k]))
        stop = int(np.clip(np.floor(u.max()) + 2, start, shape_xyz[k]))
        positions.append(u - start)
        slices.append(slice(start, stop))
    # One layer of zeros all round: neighbours outside the volume blend with 0 (-1024 HU).
    result = np.pad(normalise_hu(volume.array[slices[2], slices[1], slices[0]]), 1)
    for b in range(3):  # block axis b holds index axis 2 - b
        result = _interpolate_axis(result, positions[2 - b], b)
    # result axis b now runs along world axis world_of_index[2 - b]; output wants z, y, x.
    order = [int(np.flatnonzero(world_of_index[::-1] == w)[0]) for w in (2, 1, 0)]
    return result.transpose(order)


def _interpolate_axis(padded: np.ndarray, u: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` of a block padded with one zero layer at each end.

    ``u`` are continuous indices relative to the unpadded block; indices beyond it land on the
    zero layers.
    """
    last = padded.shape[axis] - 1
    floor = np.floor(u)
    frac = (u - floor).reshape([-1 if a == axis else 1 for a in range(padded.ndim)])
    below = np.clip(floor.astype(np.int64) + 1, 0, last)
    above = np.clip(floor.astype(np.int64) + 2, 0, last)
    return np.take(padded, below, axis) * (1 - frac) + np.take(padded, above, axis) * frac


def _sample_oblique(
    volume: Volume, to_index: np.ndarray, base: np.ndarray, steps: list[np.ndarray]
) -> np.ndarray:
    """Any direction: map every window point to a continuous index and interpolate there."""
    coords = [
        base[i]
        + to_index[i, 0] * steps[0][None, None, :]
        + to_index[i, 1] * steps[1][None, :, None]
        + to_index[i, 2] * steps[2][:, None, None]
        for i in range(3)
    ]
    coords_zyx = np.stack(np.broadcast_arrays(*coords[::-1]))
    shape = np.array(volume.array.shape)
    flat = coords_zyx.reshape(3, -1)
    start = np.clip(np.floor(flat.min(axis=1)).astype(np.int64), 0, shape)
    stop = np.clip(np.floor(flat.max(axis=1)).astype(np.int64) + 2, 0, shape)
    if np.any(stop <= start):
        return np.zeros(coords_zyx.shape[1:])
    block = volume.array[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    # 'grid-constant' pads with cval *before* interpolating, so a point half a voxel beyond the
    # last voxel centre gets half that voxel's value; 'constant' would return 0 there.
    return ndimage.map_coordinates(
        normalise_hu(block),
        coords_zyx - start[:, None, None, None],
        order=1,
        mode="grid-constant",
        cval=0.0,
    )


def window_bounds(
    grid: GridGeometry, seed_lps: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Where the ``size``^3 window of a seed lies on the grid (docs/method.md section 2, steps 4-5).

    Args:
        grid: the scan's 1 mm grid.
        seed_lps: the seed point, world mm LPS, order (x, y, z).
        size: the window's side in grid points.

    Returns:
        ``(start, stop, pad)``: the grid index range ``[start, stop)`` kept per axis (x, y, z),
        clamped to the grid, and the ``np.pad`` widths in array order (z, y, x) that bring the
        clamped block back to ``size`` (before = missing // 2, after = the rest).

    Raises:
        PatchError: the seed is not finite or its truncated index is outside the grid.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of voxels; got {size}")
    index = _seed_index(seed_lps, grid)
    start = np.maximum(index - size // 2, 0)
    stop = np.minimum(index - size // 2 + size, grid.n)
    missing = size - (stop - start)[::-1]
    return start, stop, [(int(d) // 2, int(d) - int(d) // 2) for d in missing]


def sample_patch(volume: Volume, seed_lps: np.ndarray, size: int = 50) -> np.ndarray:
    """The ``size``^3 mm patch around a seed point (docs/method.md section 2).

    Args:
        volume: the CT volume (HU).
        seed_lps: the seed point, world mm LPS, order (x, y, z).
        size: the window's side in grid points (1 mm each).

    Returns:
        float32 array, shape (1, size, size, size), axes (z, y, x), values ``(HU + 1024) / 3072``.

    Raises:
        PatchError: the seed is not finite, or ``trunc(seed - grid origin)`` falls outside the grid
            on some axis (the message gives the grid's LPS extent and spots RAS-for-LPS mix-ups).
    """
    grid = patch_grid(volume)
    start, stop, pad = window_bounds(grid, seed_lps, size)
    axes = [grid.origin[i] + np.arange(start[i], stop[i], dtype=np.float64) for i in range(3)]
    return np.pad(sample_grid(volume, axes), pad).astype(np.float32)[None]


def random_seed_point(
    volume: Volume | GridGeometry,
    rng: np.random.Generator,
    size: int = 50,
    *,
    avoid_lps: np.ndarray | None = None,
    min_distance_mm: float = 0.0,
    max_tries: int = 100,
) -> np.ndarray | None:
    """A uniformly random seed point of the scan's 1 mm grid, for SSL negative patches.

    Per axis, the grid index is drawn uniformly among those whose ``size`` window lies entirely on
    the grid (any index when the grid is shorter than ``size`` on that axis). The point returned is
    the middle of that grid cell (index + 0.5 mm), so that ``sample_patch`` truncates it back to
    the drawn index whatever the floating-point rounding.

    Args:
        volume: the CT volume, or its grid (``patch_grid``) when already known.
        rng: the random generator (the caller owns the seed).
        size: the window's side, as given to ``sample_patch``.
        avoid_lps: a seed point (LPS mm) the result must keep ``min_distance_mm`` away from.
        min_distance_mm: the smallest allowed distance to ``avoid_lps`` (0: no constraint).
        max_tries: draws made before giving up on the distance constraint.

    Returns:
        The seed point (LPS mm, (x, y, z)), or None when ``max_tries`` draws all fell within
        ``min_distance_mm`` of ``avoid_lps`` (e.g. a scan smaller than that distance).
    """
    grid = volume if isinstance(volume, GridGeometry) else patch_grid(volume)
    low = np.where(grid.n >= size, size // 2, 0)
    high = np.where(grid.n >= size, grid.n - size + size // 2, grid.n - 1)
    for _ in range(max_tries):
        point = grid.origin + rng.integers(low, high, endpoint=True) + 0.5
        if avoid_lps is None or min_distance_mm <= 0:
            return point
        if np.linalg.norm(point - np.asarray(avoid_lps, dtype=np.float64)) >= min_distance_mm:
            return point
    return None


def _absolute_paths(table: pd.DataFrame, base_dir: str | Path | None) -> pd.Series:
    if base_dir is not None:
        return table["image_path"].map(lambda p: str(Path(base_dir) / str(p)))
    relative = [p for p in table["image_path"].astype(str) if not Path(p).is_absolute()]
    if relative:
        raise ValueError(
            f"{len(relative)} image_path value(s) are relative (first: {relative[0]!r}); "
            "pass base_dir or give the table's path so they can be resolved"
        )
    return table["image_path"].astype(str)


def iter_patches(
    table: pd.DataFrame,
    base_dir: str | Path | None = None,
    size: int = 50,
    *,
    progress: bool = False,
    first_reads: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row position, patch)`` for every row, reading each image once.

    Rows are grouped by image (images in order of first appearance, rows in table order within an
    image), so only one volume is in memory at a time, ``first_reads`` at the start.

    Args:
        table: a lesion table with ``image_path`` and ``coordX/Y/Z`` (LPS mm).
        base_dir: folder that relative image paths are relative to; without it every path must be
            absolute.
        size: the patch side, as in ``sample_patch``.
        progress: show a tqdm bar (one step per lesion).
        first_reads: the first this many images are read side by side, one thread each (image
            decoding releases the GIL), then one at a time: a consumer that needs several images
            before it can start (a first batch) waits for the slowest of them, not their sum.
            The patches and their order are the same for any value.

    Yields:
        The row's position (0-based, in table order) and its (1, size, size, size) float32 patch.

    Raises:
        PatchError: a seed outside its image's grid; the message names the row and the image.
        ImageReadError: an image that cannot be read, when its turn comes.
    """
    if first_reads < 1:
        raise ValueError(f"first_reads must be at least 1; got {first_reads}")
    groups = _rows_by_image(table, base_dir)
    seeds = table[list(COORD_COLUMNS)].to_numpy(dtype=np.float64)
    first_reads = min(first_reads, len(groups))
    pool = ThreadPoolExecutor(first_reads, "fmcib-read") if first_reads > 1 else nullcontext()
    with pool, tqdm(total=len(table), disable=not progress, unit="lesion") as bar:
        early: list[Future | None] = (
            [pool.submit(Volume.load, path) for path, _ in groups[:first_reads]]
            if first_reads > 1 else []
        )  # fmt: skip
        for i, (path, rows) in enumerate(groups):
            if i < len(early):
                volume, early[i] = early[i].result(), None  # the pool lets go of the volume
            else:
                volume = Volume.load(path)
            for row in rows.to_numpy():
                try:
                    patch = sample_patch(volume, seeds[row], size)
                except PatchError as err:
                    raise PatchError(f"row {row} ({path}): {err}") from err
                bar.update()
                yield int(row), patch
            log.debug("sampled %d patch(es) from %s", len(rows), path)


def _rows_by_image(table: pd.DataFrame, base_dir: str | Path | None) -> list[tuple[str, pd.Series]]:
    """``(absolute image path, its rows' positions)``, images in order of first appearance."""
    missing = [c for c in ("image_path", *COORD_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; lesion tables need image_path + coords")
    paths = _absolute_paths(table, base_dir).to_numpy()
    return list(pd.Series(np.arange(len(table))).groupby(paths, sort=False))


def images_for_first(table: pd.DataFrame, n_rows: int, base_dir: str | Path | None = None) -> int:
    """How many images :func:`iter_patches` (same ``table`` and ``base_dir``) reads before it has
    yielded ``n_rows`` patches."""
    covered = np.cumsum([len(rows) for _, rows in _rows_by_image(table, base_dir)])
    return int(np.searchsorted(covered, min(n_rows, len(table)))) + 1


def extract_patches(
    table_or_path: pd.DataFrame | str | Path,
    size: int = 50,
    *,
    base_dir: str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Patches for every lesion of a table, in table order.

    Args:
        table_or_path: a lesion table, or the path of a CSV/parquet table (relative image paths
            are then resolved against the table's folder).
        size: the patch side, as in ``sample_patch``.
        base_dir: for a DataFrame, the folder relative image paths are relative to.
        progress: show a tqdm bar.

    Returns:
        float32 array of shape (N, 1, size, size, size), axes (z, y, x), normalised units.
    """
    if isinstance(table_or_path, pd.DataFrame):
        table = table_or_path
    else:
        if base_dir is not None:
            raise ValueError("base_dir is for a DataFrame; a table file's own folder is used")
        table = read_table(table_or_path)
        table = table.assign(image_path=resolve_image_paths(table, table_or_path))
    patches = np.empty((len(table), 1, size, size, size), dtype=np.float32)
    for row, patch in iter_patches(table, base_dir, size, progress=progress):
        patches[row] = patch
    return patches
