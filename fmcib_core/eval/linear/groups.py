"""Patient-level linear evaluation: the features of all lesions of a group, aggregated.

Decision: features are aggregated before the fit (rather than lesion-level predictions after it),
so that every split has one row per group. The search over C, the final fit and the test metrics
then all see patients, each counted once whatever their lesion count, and the bootstrap of the
test metrics resamples groups: lesions of one patient are correlated, and resampling them as if
independent would give CIs that are too narrow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmcib_core.eval.linear.model import LinearEvalError

__all__ = ["AGGREGATES", "Grouped", "aggregate_by_group"]

AGGREGATES = ("mean", "max", "first")
_SHOWN = 5


@dataclass(frozen=True, eq=False)
class Grouped:
    """A split with one row per group.

    Attributes:
        table: the first lesion's row of each group (group order: first appearance), plus
            ``n_lesions``.
        X: (G, F) aggregated features.
        y: (G,) the group's label (NaN when none of its lesions has one).
        extra: the group's ``survival_time``/``event`` (G,) arrays, when given.
        n_lesions: lesions (input rows) aggregated.
    """

    table: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    extra: dict[str, np.ndarray]
    n_lesions: int


def _constant_within(values: np.ndarray, codes: np.ndarray, n_groups: int) -> tuple:
    """Per group, the value its (finite) members share, and the groups whose members disagree."""
    out = np.full(n_groups, np.nan)
    mixed = []
    for group in range(n_groups):
        member = values[codes == group]
        known = np.unique(member[np.isfinite(member)])
        if len(known) > 1:
            mixed.append(group)
        elif len(known) == 1:
            out[group] = known[0]
    return out, mixed


def aggregate_by_group(
    table: pd.DataFrame,
    X: np.ndarray,
    y: np.ndarray,
    extra: Mapping[str, np.ndarray],
    *,
    column: str,
    how: str,
    source: str,
) -> Grouped:
    """Aggregate a split's lesions into groups of ``table[column]`` (a patient id, say).

    Args:
        table: the lesion rows, holding ``column``.
        X: (N, F) features; ``mean`` and ``max`` ignore a lesion's missing (NaN) features.
        y: (N,) labels, which must agree within a group (NaN = unknown).
        extra: (N,) survival arrays, which must agree within a group too.
        column: the group id column.
        how: ``mean``, ``max`` or ``first`` (the group's first lesion in table order).
        source: the split's file, for messages.

    Raises:
        LinearEvalError: an unknown ``how``, a missing column, rows without a group id, or
            groups whose lesions disagree on the label; every problem, one per line.
    """
    if how not in AGGREGATES:
        raise LinearEvalError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
    if column not in table.columns:
        raise LinearEvalError(f"{source}: group column '{column}' is missing; add it or unset it")
    ids = table[column]
    empty = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        rows = (np.flatnonzero(empty) + 1).tolist()
        shown = ", ".join(map(str, rows[:_SHOWN])) + (" ..." if len(rows) > _SHOWN else "")
        raise LinearEvalError(
            f"{source}: {len(rows)} row(s) have no '{column}' (rows {shown}); fill in the group "
            "of every lesion"
        )
    codes, uniques = pd.factorize(ids, sort=False)
    n_groups = len(uniques)
    y_group, mixed = _constant_within(np.asarray(y, dtype=np.float64), codes, n_groups)
    extra_group = {}
    for name, values in extra.items():
        extra_group[name], mixed_extra = _constant_within(
            np.asarray(values, float), codes, n_groups
        )
        mixed += mixed_extra
    if mixed:
        names = sorted({str(uniques[g]) for g in mixed})
        raise LinearEvalError(
            f"{source}: the lesions of {len(names)} '{column}' group(s) disagree on the label or "
            f"survival data ({', '.join(names[:_SHOWN])}{' ...' if len(names) > _SHOWN else ''}); "
            "a patient-level label must be the same for all of a patient's lesions"
        )
    X = np.asarray(X, dtype=np.float64)
    firsts = np.array([np.flatnonzero(codes == g)[0] for g in range(n_groups)], dtype=int)
    if how == "first":
        X_group = X[firsts]
    else:
        reduce = np.mean if how == "mean" else np.max
        X_group = np.full((n_groups, X.shape[1]), np.nan)
        for group in range(n_groups):
            member = X[codes == group]
            finite = np.isfinite(member).all(axis=1)
            if finite.any():  # a group with no complete lesion stays NaN and is dropped later
                X_group[group] = reduce(member[finite], axis=0)
    grouped_table = table.iloc[firsts].reset_index(drop=True)
    grouped_table = grouped_table.assign(n_lesions=np.bincount(codes, minlength=n_groups))
    return Grouped(grouped_table, X_group, y_group, extra_group, len(table))
