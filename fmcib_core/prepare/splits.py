"""Seeded patient-level splits whose lesion counts follow the fractions within each class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["split_patients"]


def split_patients(
    patients: pd.Series,
    names: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    strata: pd.Series | None = None,
) -> pd.Series:
    """Assign each row a split so that all rows of a patient share one split.

    Each split's target is ``fraction`` of the rows of every stratum (class); a missing stratum
    value is a class of its own. Patients are taken in a seeded random order, those with more
    rows first, and each goes to the split whose targets are least met: the relative deficit of
    the split's row count in each of the patient's classes plus that of its total row count
    (ties to the earlier split). With one row per patient
    this is a stratified split; with several, the per-class row counts still come out close to
    the fractions (a split by patients alone can leave one class short in a split).

    Args:
        patients: the patient identifier of each row.
        names: split names, e.g. ``("train", "val", "test")``.
        fractions: the share of each split; they must sum to 1.
        seed: the random seed.
        strata: a per-row class to balance (None: balance the row counts only).

    Returns:
        The split name of each row, indexed like ``patients``.
    """
    if len(names) != len(fractions) or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions {list(fractions)} must be >= 0, one per split, sum to 1")
    patients = patients.astype(str)
    classes = (
        pd.Series(0, index=patients.index)
        if strata is None
        else strata.astype(str).where(strata.notna(), "missing")
    )
    counts = pd.crosstab(patients, classes)  # patients (sorted) x classes
    target = np.outer(np.asarray(fractions, dtype=np.float64), counts.sum(0).to_numpy())
    current = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(counts))
    sizes = counts.to_numpy().sum(1)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    assignment = {}
    for p in order:
        rows = counts.to_numpy()[p]
        deficit = ((target - current) / np.maximum(target, 1e-9) * rows).sum(1)
        total_target, total = target.sum(1), current.sum(1)
        deficit += (total_target - total) / np.maximum(total_target, 1e-9) * rows.sum()
        deficit[np.asarray(fractions) == 0] = -np.inf
        s = int(np.argmax(deficit))
        current[s] += rows
        assignment[counts.index[p]] = names[s]
    return patients.map(assignment)
