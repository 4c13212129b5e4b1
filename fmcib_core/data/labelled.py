"""Labelled patches for supervised training (docs/method.md section 5): a patch cache and a dataset.

The patches of a table split are sampled once with :func:`~fmcib_core.data.patches.iter_patches`
into an uncompressed ``.npy`` file in the run's work folder; the dataset memory-maps it, so an
epoch never re-reads or re-resamples a volume and memory stays flat however large the table. The
cache's name carries a digest of what the patches depend on (image paths and their modification
times, seed points, patch size), so a resumed run reuses it and a changed table gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from fmcib_core.data.patches import iter_patches
from fmcib_core.data.seeding import worker_init_fn
from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.tables import COORD_COLUMNS, LABEL_SPECS, LabelSpec

__all__ = ["LabelError", "LabelledPatches", "cache_patches", "labelled_loader", "read_labels"]

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], Any]


class LabelError(ValueError):
    """A split whose labels cannot be trained on; the message lists every problem, one per line."""


def read_labels(
    table: pd.DataFrame,
    column: str,
    *,
    source: str,
    min_classes: int = 2,
    spec: LabelSpec | None = None,
) -> np.ndarray:
    """Return the label column as int64 after checking it against its allowed values.

    Args:
        table: the split's lesion table.
        column: the task's label column (a class label of ``LABEL_SPECS`` unless ``spec``).
        source: the table's name in messages (its path).
        min_classes: the fewest distinct labels the split must hold.
        spec: the allowed values of a custom task's label (``fmcib_core.io.task_label``).

    Raises:
        LabelError: the column is missing, a cell is empty or out of range, or the split holds
            fewer than ``min_classes`` classes.
        ValueError: ``column`` is not a class label (e.g. ``survival_time``).
    """
    spec = spec or LABEL_SPECS.get(column)
    if spec is None or spec.values is None:
        raise ValueError(f"'{column}' is not a class label of LABEL_SPECS")
    if column not in table.columns:
        raise LabelError(f"{source}: label column '{column}' is missing")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    bad[~bad] = ~np.isin(values[~bad], spec.values)
    problems = []
    if bad.any():
        rows = (np.flatnonzero(bad) + 1)[:5].tolist()
        problems.append(
            f"{source}: column '{column}' has {int(bad.sum())} empty or invalid value(s) "
            f"(rows {rows}{' ...' if bad.sum() > 5 else ''}); it must be {spec.rule}"
        )
    classes = np.unique(values[~bad]).astype(np.int64).tolist()
    if len(classes) < min_classes:
        problems.append(
            f"{source}: column '{column}' holds {len(classes)} class(es) {classes}; "
            f"need at least {min_classes}"
        )
    if problems:
        raise LabelError("\n".join(problems))
    return values.astype(np.int64)


def _digest(table: pd.DataFrame, size: int) -> str:
    paths = table["image_path"].astype(str).tolist()
    mtimes = {p: os.stat(p).st_mtime_ns for p in dict.fromkeys(paths) if os.path.exists(p)}
    coords = table[list(COORD_COLUMNS)].to_numpy(dtype=np.float64).tolist()
    payload = json.dumps({"paths": paths, "mtimes": mtimes, "coords": coords, "size": size})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_patches(
    table: pd.DataFrame,
    cache_dir: str | Path,
    size: int,
    *,
    name: str = "patches",
    progress: bool = False,
) -> Path:
    """Sample every row's patch once into ``cache_dir/{name}-{digest}.npy``, or reuse that file.

    The file holds a float32 array (N, 1, size, size, size), rows in table order, written through a
    memory map (one patch in memory at a time) under a temporary name and renamed when complete.

    Args:
        table: a lesion table with absolute ``image_path`` values (see ``resolve_image_paths``)
            and ``coordX/Y/Z`` (LPS mm).
        cache_dir: the run's work folder for caches (created if needed).
        size: the patch side in voxels (1 mm).
        name: the file's prefix, e.g. the split.
        progress: show a tqdm bar while sampling.

    Returns:
        The cache file's path.

    Raises:
        PatchError: a seed point outside its image (nothing is written).
    """
    path = Path(cache_dir) / f"{name}-{_digest(table, size)}.npy"
    shape = (len(table), 1, size, size, size)
    if path.is_file() and np.load(path, mmap_mode="r").shape == shape:
        log.info("%s: reusing %d cached patches", path, len(table))
        return path
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for row, patch in iter_patches(table, None, size, progress=progress):
            out[row] = patch
        out.flush()
        del out
    log.info("%s: cached %d patches of %d^3 voxels", path, len(table), size)
    return path


class LabelledPatches(Dataset):
    """(patch, label) pairs of one split, read from a patch cache written by :func:`cache_patches`.

    Items are ``(x, y)``: ``x`` a float32 tensor (1, S, S, S), axes (z, y, x), after ``transform``;
    ``y`` a 0-d tensor, int64 for class labels or float32 when ``float_labels`` (BCE targets).
    The cache is opened lazily in each process and the open map is never pickled, so the dataset
    can be sent to DataLoader workers started with ``spawn``.

    Args:
        patches: the ``.npy`` cache file.
        labels: (N,) labels, in the cache's row order.
        transform: applied to each (1, S, S, S) float32 array (training augmentation), or None.
        float_labels: return labels as float32 instead of int64.
        seed: seeds the transform's random state (see :meth:`reseed`).
    """

    def __init__(
        self,
        patches: str | Path,
        labels: np.ndarray,
        transform: Transform | None = None,
        *,
        float_labels: bool = False,
        seed: int = 0,
    ) -> None:
        self.patches = Path(patches)
        self.labels = np.asarray(labels)
        n_patches = np.load(self.patches, mmap_mode="r").shape[0]
        if self.labels.shape != (n_patches,):
            raise ValueError(f"{self.patches}: {n_patches} patches for labels {self.labels.shape}")
        self.transform = transform
        self.float_labels = float_labels
        self._array: np.ndarray | None = None
        self.reseed(seed)

    def fingerprint(self) -> str:
        """Names the data: the cache file (itself named by a digest of its inputs) and the labels.

        A training run records it, so that changed patches or labels start a new run instead of
        resuming the old one.
        """
        labels = hashlib.sha256(np.ascontiguousarray(self.labels).tobytes()).hexdigest()[:16]
        return f"{self.patches.name}:{labels}"

    def reseed(self, seed: int) -> None:
        """Seed the transform's random state (per DataLoader worker; a no-op without one)."""
        if self.transform is not None and hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed % 2**32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._array is None:
            self._array = np.load(self.patches, mmap_mode="r")
        patch = np.array(self._array[index], dtype=np.float32)
        x = torch.from_numpy(patch) if self.transform is None else self.transform(patch)
        x = torch.as_tensor(x, dtype=torch.float32)
        dtype = torch.float32 if self.float_labels else torch.int64
        return x, torch.tensor(self.labels[index], dtype=dtype)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


def labelled_loader(
    dataset: LabelledPatches, batch_size: int, *, train: bool, num_workers: int = 0
) -> DataLoader:
    """A DataLoader over a labelled split: shuffled for training, in table order otherwise.

    Training drops a last batch of a single patch only: batch norm cannot normalise one value per
    channel when the patch is small enough to reach 1 voxel in the last stage. Validation and test
    keep every row. Workers are reseeded with :func:`~fmcib_core.data.seeding.worker_init_fn`.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"need batch_size >= 1, num_workers >= 0; got {batch_size}, {num_workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) % batch_size == 1,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        persistent_workers=train and num_workers > 0,
    )
