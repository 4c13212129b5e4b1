"""Data efficiency: linear evaluation on nested, stratified fractions of the training set.

For each fraction f of ``fractions`` the training rows of every class are cut to
``max(MIN_PER_CLASS, round(f * n_class))`` (never more than the class has), the same rows for
every feature source, each fraction's rows a subset of every larger fraction's: one seeded
permutation per class, of which each fraction keeps a prefix. The validation set (which selects C)
and the test set stay whole, so the test metric moves with the amount of training data alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmcib_core.eval.linear import LinearEvalError, as_task, fit_linear_eval
from fmcib_core.tasks import Task

__all__ = ["MIN_PER_CLASS", "SourceData", "data_efficiency", "nested_stratified_subsets"]

log = logging.getLogger(__name__)

MIN_PER_CLASS = 2


def nested_stratified_subsets(
    y: np.ndarray, fractions: Sequence[float], seed: int, *, min_per_class: int = MIN_PER_CLASS
) -> dict[float, np.ndarray]:
    """Row indices (sorted) kept at each fraction: stratified by class, nested, seeded.

    Rows with a missing (NaN) label are never kept. Every class keeps
    ``min(n_class, max(min_per_class, round(f * n_class)))`` rows; at f = 1 that is every
    labelled row.

    Raises:
        ValueError: no fraction, a fraction outside (0, 1], or no labelled row.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], at least one; got {fractions}")
    y = np.asarray(y, dtype=np.float64)
    labelled = np.flatnonzero(np.isfinite(y))
    if len(labelled) == 0:
        raise ValueError("no labelled training row to subsample")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    orders = {c: rng.permutation(labelled[y[labelled] == c]) for c in np.unique(y[labelled])}
    subsets = {}
    for f in fractions:
        keep = [
            order[: min(len(order), max(min_per_class, round(f * len(order))))]
            for order in orders.values()
        ]
        subsets[f] = np.sort(np.concatenate(keep))
    return subsets


@dataclass(frozen=True)
class SourceData:
    """One feature source's splits: ``(X, y)`` each; test may carry survival arrays third."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple


def data_efficiency(
    sources: Mapping[str, SourceData],
    *,
    task: int | str | Task,
    fractions: Sequence[float],
    n_trials: int,
    seed: int,
    cv_folds: int = 10,
    n_bootstrap: int = 1000,
) -> list[dict[str, Any]]:
    """Linear evaluation of every source at every fraction of the training rows.

    The sources are feature tables of the same lesions in the same order (their train labels
    must agree); the subsets come from those labels. Without a validation set C is chosen by CV
    on the subset, with at most as many folds as its smallest class has rows (and at least 2).

    Returns:
        One dict per (fraction, source), fractions ascending, sources in the given order:
        ``fraction``, ``source``, ``n_train`` (rows used), ``metric`` (the task's first test
        metric) and its ``value``, ``ci_low``, ``ci_high``, and ``best_C``.

    Raises:
        LinearEvalError: sources whose train labels differ, or a fit's problems.
        ValueError: bad fractions.
    """
    task = as_task(task)
    if not sources:
        raise LinearEvalError("no feature source to evaluate")
    labels = [np.asarray(s.train[1], dtype=np.float64) for s in sources.values()]
    if any(len(y) != len(labels[0]) or not np.array_equal(y, labels[0], equal_nan=True)
           for y in labels):  # fmt: skip
        raise LinearEvalError(
            "the sources' training labels differ: they must be features of the same table rows"
        )
    subsets = nested_stratified_subsets(labels[0], sorted(set(fractions)), seed)
    metric = task.test_metrics[0]
    rows = []
    for fraction, keep in subsets.items():
        _, counts = np.unique(labels[0][keep], return_counts=True)
        folds = max(2, min(cv_folds, int(counts.min())))
        for name, data in sources.items():
            X, y = data.train
            result = fit_linear_eval(
                (np.asarray(X)[keep], np.asarray(y)[keep]),
                data.val,
                data.test,
                task=task,
                n_trials=n_trials,
                seed=seed,
                cv_folds=folds,
                n_bootstrap=n_bootstrap,
            )
            value = result.summary()["test_metrics"][metric]
            rows.append(
                {
                    "fraction": fraction,
                    "source": name,
                    "n_train": result.n_rows["train"],
                    "metric": metric,
                    "value": value["value"],
                    "ci_low": value["ci_low"],
                    "ci_high": value["ci_high"],
                    "best_C": result.model.C,
                }
            )
            log.info("fraction %g, %s: %s %.3f (n=%d)", fraction, name, metric,
                     value["value"] or float("nan"), result.n_rows["train"])  # fmt: skip
    return rows
