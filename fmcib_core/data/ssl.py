"""Pretraining data: a table's volumes cached once, and the (p1, p2, n1, n2) dataset over them.

docs/method.md section 4. An item is the lesion patch and a negative patch (a uniformly random
window of the same scan's 1 mm grid), each augmented twice independently, here per item or later
on the whole batch (:class:`fmcib_core.transforms.BatchedSSLViews`, ``augment_on: device``).

The volume cache of a table is a folder::

    table.csv          the input table plus ``cache_path`` (relative to the folder)
    volumes/<n>/       one 1 mm grid cache per distinct image (``write_grid_cache``)

so that pretraining memory-maps each scan, already resampled, and every window (lesion or
negative) is a slice: the same values as :func:`fmcib_core.data.patches.sample_patch` on the
original file (within 0.5 HU for the default int16 storage).
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.transforms import Randomizable
from tqdm.auto import tqdm

from fmcib_core.data.grid import GridVolume, write_grid_cache
from fmcib_core.data.seeding import worker_init_fn
from fmcib_core.data.volume import Volume
from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.images import read_image
from fmcib_core.io.tables import COORD_COLUMNS, read_table

__all__ = [
    "CACHE_PATH_COLUMN",
    "CACHE_TABLE",
    "SSLDataset",
    "cache_table_volumes",
    "read_cached_table",
    "ssl_dataloader",
]

log = logging.getLogger(__name__)

CACHE_TABLE = "table.csv"
CACHE_PATH_COLUMN = "cache_path"
_VOLUMES = "volumes"

ViewTransform = Callable[[np.ndarray], Any]


def cache_table_volumes(
    table: pd.DataFrame,
    image_paths: pd.Series,
    out_dir: str | Path,
    *,
    dtype: str = "int16",
    progress: bool = False,
) -> Path:
    """Cache every distinct image of ``table`` once on its 1 mm grid; write the table too.

    The whole folder is written under a temporary name and renamed; an existing cache folder at
    ``out_dir`` (one holding ``table.csv``) is replaced, any other existing path is refused.

    Args:
        table: the lesion table; written back unchanged plus ``cache_path``.
        image_paths: each row's readable image path (absolute, or relative to the working
            directory), e.g. from ``resolve_image_paths``.
        out_dir: the cache folder.
        dtype: the grid caches' storage, one of :data:`fmcib_core.data.grid.GRID_DTYPES`.
        progress: show a tqdm bar (one step per image).

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / CACHE_TABLE).is_file():
        raise FileExistsError(f"{out_dir}: exists and is not a volume cache; refusing to replace")
    paths = pd.Series(image_paths, index=table.index).astype(str)
    distinct = list(dict.fromkeys(paths))
    relative = {p: f"{_VOLUMES}/{n}" for n, p in enumerate(distinct)}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for path in tqdm(distinct, disable=not progress, unit="image"):
            write_grid_cache(Volume.from_sitk(read_image(path)), tmp / relative[path], dtype)
            log.debug("cached %s as %s", path, relative[path])
        table.assign(**{CACHE_PATH_COLUMN: paths.map(relative)}).to_csv(
            tmp / CACHE_TABLE, index=False
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)  # os.replace cannot overwrite a non-empty folder
    log.info("cached %d image(s) of %d lesion(s) in %s", len(distinct), len(table), out_dir)
    return out_dir


def read_cached_table(cache_dir: str | Path) -> pd.DataFrame:
    """The table of a volume cache, checked: coordinates present and every cached volume there.

    Raises:
        FileNotFoundError: no ``table.csv`` or a missing volume cache (rebuild the cache).
        ValueError: the table lacks ``cache_path`` or the coordinate columns.
    """
    cache_dir = Path(cache_dir)
    if not (cache_dir / CACHE_TABLE).is_file():
        raise FileNotFoundError(
            f"{cache_dir}: no {CACHE_TABLE}; build the cache with workflow_scripts/cache_volumes.py"
        )
    table = read_table(cache_dir / CACHE_TABLE)
    missing = [c for c in (CACHE_PATH_COLUMN, *COORD_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"{cache_dir / CACHE_TABLE}: lacks column(s) {missing}")
    absent = [p for p in table[CACHE_PATH_COLUMN].unique() if not (cache_dir / p).is_dir()]
    if absent:
        raise FileNotFoundError(
            f"{cache_dir}: {len(absent)} cached volume(s) missing (first: {absent[0]}); "
            "rebuild the cache"
        )
    return table


class SSLDataset(torch.utils.data.Dataset):
    """Items ``(p1, p2, n1, n2)`` for pretraining: two views of a lesion and of a negative.

    Every view is a float32 tensor (1, S, S, S), axes (z, y, x), normalised units. The negative
    is the window at ``random_seed_point`` of the same scan's grid; with
    ``negative_min_distance_mm`` it keeps that far from the lesion's seed. The four views are
    drawn from ``view_transform`` one after the other, so they are independent. Without a
    ``view_transform`` an item is the two unaugmented windows ``(lesion, negative)``, for
    augmenting whole batches on the training device.

    Volumes are opened lazily (memory-mapped caches) in the process that reads items and kept
    in a small per-process LRU; they are never pickled, so DataLoader workers (``fork`` or
    ``spawn``) open their own. Randomness follows :mod:`fmcib_core.data.seeding`: ``seed``
    seeds the dataset in the main process, :func:`~fmcib_core.data.seeding.worker_init_fn`
    reseeds each worker's copy.

    Args:
        table: lesion table with ``cache_path`` (grid caches) and ``coordX/Y/Z`` (LPS mm).
        base_dir: folder that ``cache_path`` is relative to (the cache folder).
        patch_size: S, the patch side in 1 mm grid points.
        view_transform: (1, S, S, S) array -> augmented view; ``Randomizable`` transforms (MONAI)
            are reseeded by :meth:`reseed`. None: items are ``(lesion, negative)`` unaugmented.
        seed: initial seed (see :meth:`reseed`).
        negative_min_distance_mm: keep negatives at least this far (mm) from the lesion seed.
        max_open: volumes kept open per process.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        base_dir: str | Path,
        patch_size: int,
        view_transform: ViewTransform | None,
        *,
        seed: int,
        negative_min_distance_mm: float | None = None,
        max_open: int = 16,
    ) -> None:
        if patch_size < 1 or max_open < 1:
            raise ValueError(f"need patch_size >= 1 and max_open >= 1: {patch_size}, {max_open}")
        if negative_min_distance_mm is not None and negative_min_distance_mm < 0:
            raise ValueError(f"negative_min_distance_mm must be >= 0: {negative_min_distance_mm}")
        base_dir = Path(base_dir)
        self.paths = [str(base_dir / p) for p in table[CACHE_PATH_COLUMN].astype(str)]
        self.seeds = table[list(COORD_COLUMNS)].to_numpy(dtype=np.float64)
        self.patch_size = int(patch_size)
        self.view_transform = view_transform
        self.negative_min_distance_mm = negative_min_distance_mm or 0.0
        self.max_open = max_open
        self._volumes: OrderedDict[str, GridVolume] = OrderedDict()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Reset the negatives' generator and the transform's random state from ``seed``."""
        negative_seed, transform_seed = np.random.SeedSequence(int(seed)).spawn(2)
        self._rng = np.random.default_rng(negative_seed)
        if isinstance(self.view_transform, Randomizable):
            self.view_transform.set_random_state(seed=int(transform_seed.generate_state(1)[0]))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        """``(p1, p2, n1, n2)`` (or ``(lesion, negative)``), each (1, S, S, S) float32."""
        volume = self._volume(self.paths[index])
        seed = self.seeds[index]
        negative_seed = volume.random_seed_point(
            self._rng,
            self.patch_size,
            avoid_lps=seed,
            min_distance_mm=self.negative_min_distance_mm,
        )
        if negative_seed is None:
            raise ValueError(
                f"item {index} ({self.paths[index]}): no negative window found at least "
                f"{self.negative_min_distance_mm} mm from the lesion; lower "
                "negative_min_distance_mm"
            )
        lesion = volume.window(seed, self.patch_size)
        negative = volume.window(negative_seed, self.patch_size)
        if self.view_transform is None:
            return torch.from_numpy(lesion), torch.from_numpy(negative)
        return (self._view(lesion), self._view(lesion), self._view(negative), self._view(negative))

    def _view(self, patch: np.ndarray) -> torch.Tensor:
        view = torch.as_tensor(self.view_transform(patch), dtype=torch.float32)
        return view.as_subclass(torch.Tensor)  # a plain tensor even from a MetaTensor

    def _volume(self, path: str) -> GridVolume:
        volume = self._volumes.pop(path, None)
        if volume is None:
            volume = GridVolume.load(path)
            while len(self._volumes) >= self.max_open:
                self._volumes.popitem(last=False)
        self._volumes[path] = volume
        return volume

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_volumes"] = OrderedDict()  # a memmap would pickle as its whole array
        return state


def ssl_dataloader(
    dataset: SSLDataset, batch_size: int, num_workers: int, *, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """The pretraining loader: shuffled, last short batch dropped, workers seeded apart.

    Batches are ``[p1, p2, n1, n2]`` (or ``[lesion, negative]``), each (B, 1, S, S, S). Workers
    persist across epochs.
    Under DDP, Lightning swaps in a distributed sampler that keeps shuffling and drop_last.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=worker_init_fn,
        pin_memory=pin_memory,
    )
