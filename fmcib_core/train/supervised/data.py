"""A task's labelled splits for fine-tuning: tables, labels, survival data and their loaders."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from fmcib_core.data.labelled import LabelledPatches, cache_patches, labelled_loader, read_labels
from fmcib_core.io.labels import survival_arrays
from fmcib_core.io.tables import read_table, resolve_image_paths, task_label
from fmcib_core.tasks import Task
from fmcib_core.transforms.augment import supervised_train_transform

__all__ = ["Split", "read_splits", "split_loaders"]


class Split(NamedTuple):
    """One split of a task: its table, labels (N,) int64 and survival arrays (test only)."""

    path: str
    table: pd.DataFrame
    labels: np.ndarray
    survival: dict[str, np.ndarray]


def read_splits(paths: Mapping[str, str | Path], task: Task) -> dict[str, Split]:
    """Read every split's table and labels; all splits' problems are reported together.

    Args:
        paths: ``{split: table path}`` for the splits given (``train``, ``val``, ``test``).
        task: whose label column is read; a survival task's test split also gets its
            ``survival_time``/``event`` arrays.

    Raises:
        ValueError: one line per problem of any split.
    """
    splits, problems = {}, []
    for name, path in paths.items():
        try:
            table = read_table(path)
            labels = read_labels(table, task.label_column, source=str(path), spec=task_label(task))
            survival = survival_arrays(table, task, source=str(path)) if name == "test" else {}
            splits[name] = Split(str(path), table, labels, survival)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("\n".join(problems))
    return splits


def split_loaders(
    splits: Mapping[str, Split],
    task: Task,
    *,
    work_dir: str | Path,
    patch_size: int,
    batch_size: int,
    num_workers: int,
    seed: int,
) -> dict[str, DataLoader]:
    """Each split's patches, sampled once into ``work_dir/patches``, as a DataLoader.

    The train split is shuffled and augmented (docs/method.md section 5); the others are not.
    """
    out = {}
    for name, split in splits.items():
        table = split.table.assign(image_path=resolve_image_paths(split.table, split.path))
        cache = cache_patches(table, Path(work_dir) / "patches", patch_size, name=name)
        train = name == "train"
        augment = supervised_train_transform() if train else None
        data = LabelledPatches(
            cache, split.labels, augment, float_labels=not task.multiclass, seed=seed
        )
        out[name] = labelled_loader(data, batch_size, train=train, num_workers=num_workers)
    return out
