"""A split of linear evaluation read from its feature table: lesions, or groups of them."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from fmcib_core.eval.linear.fit import labels_from_table
from fmcib_core.eval.linear.groups import aggregate_by_group
from fmcib_core.io.features import read_features
from fmcib_core.tasks import Task

__all__ = ["FeatureSplit", "read_split"]


class FeatureSplit(NamedTuple):
    """One split: its rows (lesions, or groups), (N, F) features, labels, survival arrays, and
    ``{"lesions", "groups"}`` counts when grouped (else None)."""

    table: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    survival: dict[str, np.ndarray]
    counts: dict[str, int] | None


def read_split(
    path: str | Path, task: Task, *, group_by: str | None = None, aggregate: str = "mean"
) -> FeatureSplit:
    """Read a feature table's features and the task's labels; with ``group_by``, one row per
    group (:func:`~fmcib_core.eval.linear.groups.aggregate_by_group`).

    Raises:
        FeatureTableError: the feature table is unusable.
        LinearEvalError: labels, survival columns or groups are unusable.
    """
    table, X, _ = read_features(path)
    y, survival = labels_from_table(table, task, source=str(path))
    if not group_by:
        return FeatureSplit(table, X, y, survival, None)
    grouped = aggregate_by_group(
        table, X, y, survival, column=group_by, how=aggregate, source=str(path)
    )
    counts = {"lesions": grouped.n_lesions, "groups": len(grouped.y)}
    return FeatureSplit(grouped.table, grouped.X, grouped.y, grouped.extra, counts)
