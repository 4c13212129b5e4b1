"""Seeded patient-level splits, stratified by a label."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["split_patients"]


def _counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` items by ``fractions`` (summing to 1), largest remainders rounded up."""
    raw = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def split_patients(
    patients: pd.Series,
    names: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    strata: pd.Series | None = None,
) -> pd.Series:
    """Assign each row a split so that all rows of a patient share one split.

    Patients are sorted, grouped by stratum (a patient's stratum is the largest value of
    ``strata`` among its rows, e.g. "has a malignant nodule"), shuffled with ``seed`` within each
    stratum and cut by ``fractions`` (largest remainders get the leftover patients).

    Args:
        patients: the patient identifier of each row.
        names: split names, e.g. ``("train", "val", "test")``.
        fractions: the share of patients of each split; they must sum to 1.
        seed: the random seed.
        strata: a per-row value to stratify on (rows with a missing value form their own stratum).

    Returns:
        The split name of each row, indexed like ``patients``.
    """
    if len(names) != len(fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions {list(fractions)} must be one per split and sum to 1")
    patients = patients.astype(str)
    if strata is None:
        per_patient = pd.Series(0, index=sorted(patients.unique()))
    else:
        values = pd.to_numeric(strata, errors="coerce").fillna(-1)
        per_patient = values.groupby(patients).max().sort_index()
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, group in per_patient.groupby(per_patient, sort=True):
        order = rng.permutation(group.index.to_numpy())
        start = 0
        for name, count in zip(names, _counts(len(order), fractions), strict=True):
            assignment.update(dict.fromkeys(order[start : start + count], name))
            start += count
    return patients.map(assignment)
