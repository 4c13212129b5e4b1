"""Test metrics of docs/method.md sections 5 and 6, and a seeded bootstrap for their CIs.

Every metric raises :class:`UndefinedMetricError` when its labels hold a single class (or, for the
C-index, no comparable pair), so that :func:`bootstrap_ci` can skip and count such resamples.
ROC-AUC and average precision are computed here with numpy (they run 1000 times per bootstrap);
tests check them against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from lifelines.utils import concordance_index
from scipy.stats import rankdata

__all__ = [
    "BootstrapResult",
    "UndefinedMetricError",
    "average_precision",
    "balanced_accuracy",
    "bootstrap_ci",
    "finite",
    "harrell_c_index",
    "mean_average_precision",
    "metrics_json",
    "roc_auc",
]


class UndefinedMetricError(ValueError):
    """The metric has no value for these labels (a single class, or no comparable pair)."""


class BootstrapResult(NamedTuple):
    """A metric on the full data with its percentile bootstrap interval.

    ``ci_low``/``ci_high`` are NaN when no resample had a defined metric.
    """

    value: float
    ci_low: float
    ci_high: float
    n_skipped: int


def finite(value: float) -> float | None:
    """``value`` as a float for JSON, or None when it is NaN or infinite."""
    return float(value) if np.isfinite(value) else None


def metrics_json(
    metrics: dict[str, BootstrapResult], rows: dict[str, int]
) -> dict[str, dict[str, float | int | None]]:
    """Test metrics as JSON-ready dicts: value, CI bounds (NaN becomes None), rows, skips."""
    return {
        name: {
            "value": finite(r.value),
            "ci_low": finite(r.ci_low),
            "ci_high": finite(r.ci_high),
            "n_rows": rows[name],
            "n_resamples_skipped": r.n_skipped,
        }
        for name, r in metrics.items()
    }


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of binary labels ``y`` (0/1) against ``score`` (higher = 1).

    Mann-Whitney form: the probability that a random positive scores above a random negative,
    ties counting one half.
    """
    pos = _binary(y)
    score = _scores(score, len(pos))
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision of binary labels ``y`` (0/1) against ``score`` (higher = 1).

    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, highest first (the step
    rule of scikit-learn's ``average_precision_score``, no interpolation); tied scores form one
    threshold.
    """
    pos = _binary(y)
    score = _scores(score, len(pos))
    order = np.argsort(-score, kind="stable")
    hits = pos[order]
    tp = np.cumsum(hits)
    last_of_tie = np.r_[np.flatnonzero(np.diff(score[order])), len(score) - 1]
    tp = tp[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def mean_average_precision(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray | None = None
) -> float:
    """Macro mean of one-vs-rest average precision over the classes present in ``y``.

    A class absent from ``y`` has no positives, so its AP is undefined; it is left out of the
    mean rather than counted as 0 (scikit-learn's macro average would warn and count it as 0).

    Args:
        y: (N,) class labels.
        proba: (N, K) class scores, column k for ``classes[k]``.
        classes: (K,) labels of the columns; default ``0 .. K-1``.

    Raises:
        UndefinedMetricError: ``y`` holds fewer than two classes.
        ValueError: shapes disagree, or ``y`` holds a label with no column.
    """
    y = np.asarray(y)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != len(y):
        raise ValueError(f"proba must have shape ({len(y)}, K), got {proba.shape}")
    classes = np.arange(proba.shape[1]) if classes is None else np.asarray(classes)
    if classes.shape != (proba.shape[1],):
        raise ValueError(f"{proba.shape[1]} probability columns for classes {classes.tolist()}")
    present = np.unique(y)
    if len(present) < 2:
        raise UndefinedMetricError("mAP needs at least two classes in y")
    missing = np.setdiff1d(present, classes)
    if len(missing):
        raise ValueError(f"labels {missing.tolist()} have no probability column")
    column = {c: k for k, c in enumerate(classes.tolist())}
    return float(
        np.mean([average_precision(y == c, proba[:, column[c]]) for c in present.tolist()])
    )


def balanced_accuracy(y: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over the classes present in ``y`` of the fraction of that class predicted right.

    Raises:
        UndefinedMetricError: ``y`` holds fewer than two classes (the mean would be a single
            recall, not a balanced accuracy).
    """
    y = np.asarray(y)
    y_pred = np.asarray(y_pred)
    if y.shape != y_pred.shape or y.ndim != 1:
        raise ValueError(f"y and y_pred must be (N,) alike, got {y.shape} and {y_pred.shape}")
    present = np.unique(y)
    if len(present) < 2:
        raise UndefinedMetricError("balanced accuracy needs at least two classes in y")
    return float(np.mean([np.mean(y_pred[y == c] == c) for c in present]))


def harrell_c_index(time: np.ndarray, event: np.ndarray, risk_score: np.ndarray) -> float:
    """Harrell's concordance index of ``risk_score`` (higher = earlier event) with survival.

    A pair is comparable when the shorter time ends in an event; it is concordant when that
    subject has the higher risk; tied risks count one half. lifelines ranks predicted survival
    times (higher = longer), so the risk is negated before it is passed on.

    Args:
        time: (N,) follow-up times.
        event: (N,) 1 if the event was observed at ``time``, 0 if censored.
        risk_score: (N,) predicted risk.

    Raises:
        UndefinedMetricError: no comparable pair (for instance no event at all).
    """
    time = np.asarray(time, dtype=np.float64)
    event = _binary(event, need_both=False)
    risk_score = _scores(risk_score, len(time))
    if time.shape != event.shape:
        raise ValueError(f"time and event must be (N,) alike, got {time.shape} and {event.shape}")
    try:
        return float(concordance_index(time, -risk_score, event))
    except ZeroDivisionError as err:
        raise UndefinedMetricError("C-index has no comparable pair") from err


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Evaluate ``metric_fn(*arrays)`` and its percentile bootstrap ``1 - alpha`` interval.

    Each of the ``n`` resamples draws N row indices with replacement from
    ``np.random.default_rng(seed)`` and applies them to every array alike. Resamples where the
    metric raises :class:`UndefinedMetricError` are skipped and counted.

    Args:
        metric_fn: a metric taking the arrays in order.
        arrays: arrays with the same first dimension N >= 1.
        n: number of resamples.
        seed: seed of the resampling generator.
        alpha: the interval covers the ``alpha/2`` to ``1 - alpha/2`` quantiles.

    Raises:
        UndefinedMetricError: the metric is undefined on the full data.
        ValueError: bad ``n``, ``alpha`` or array lengths.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    lengths = {len(a) for a in arrays}
    if not arrays or len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"bootstrap needs non-empty arrays of one length, got {sorted(lengths)}")
    if n < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap needs n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    value = float(metric_fn(*arrays))
    (n_rows,) = lengths
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        rows = rng.integers(0, n_rows, size=n_rows)
        try:
            samples.append(metric_fn(*(a[rows] for a in arrays)))
        except UndefinedMetricError:
            continue
    if not samples:
        return BootstrapResult(value, float("nan"), float("nan"), n)
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(value, float(low), float(high), n - len(samples))


def _binary(y: np.ndarray, *, need_both: bool = True) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty (N,) array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    pos = y.astype(bool)
    if need_both and (pos.all() or not pos.any()):
        raise UndefinedMetricError("metric needs both classes (0 and 1) in y")
    return pos


def _scores(score: np.ndarray, n_rows: int) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    if score.shape != (n_rows,):
        raise ValueError(f"scores must have shape ({n_rows},), got {score.shape}")
    return score
