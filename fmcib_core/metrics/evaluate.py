"""A task's test metrics with bootstrap CIs, and the validation score that keeps a checkpoint.

Which metrics a task reports is task data (:attr:`fmcib_core.tasks.Task.test_metrics`); this
module knows how each metric is computed from labels and class probabilities
(docs/method.md sections 5 and 6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fmcib_core.metrics.scores import (
    BootstrapResult,
    UndefinedMetricError,
    average_precision,
    balanced_accuracy,
    bootstrap_ci,
    harrell_c_index,
    mean_average_precision,
    roc_auc,
)
from fmcib_core.tasks import Task, paper_task

__all__ = ["BOOTSTRAP_ALPHA", "BOOTSTRAP_SAMPLES", "selection_score", "task_metrics"]

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_ALPHA = 0.05

CI = Callable[..., BootstrapResult]
# metric name -> (labels, (N, K) probabilities, (K,) classes, ci) -> its bootstrap result.
_LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, CI], BootstrapResult]] = {
    "mean_average_precision": lambda y, proba, classes, ci: ci(
        lambda a, b: mean_average_precision(a, b, classes), y, proba
    ),
    "balanced_accuracy": lambda y, proba, classes, ci: ci(
        balanced_accuracy, y, classes[np.argmax(proba, axis=1)]
    ),
    "roc_auc": lambda y, proba, classes, ci: ci(roc_auc, y, proba[:, 1]),
    "average_precision": lambda y, proba, classes, ci: ci(average_precision, y, proba[:, 1]),
}


def task_metrics(
    task: Task | int,
    y: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    extra: dict[str, np.ndarray],
    seed: int,
    n_bootstrap: int = BOOTSTRAP_SAMPLES,
) -> tuple[dict[str, BootstrapResult], dict[str, int]]:
    """The task's test metrics with seeded bootstrap 95% CIs, and the rows each one used.

    Args:
        task: a :class:`Task` or a paper task's number; it names the metrics (multiclass: mAP
            and balanced accuracy; binary: ROC-AUC and average precision; binary with survival:
            ROC-AUC, plus Harrell's C-index when ``extra`` holds ``survival_time`` and
            ``event``).
        y: (N,) labels.
        proba: (N, K) probabilities, columns in ``classes`` order.
        classes: (K,) class labels.
        extra: ``survival_time`` and ``event`` (N,) arrays, NaN where unknown; or empty.
        seed: seed of every bootstrap.
        n_bootstrap: resamples per metric.

    Raises:
        UndefinedMetricError: a metric has no value on the full test data (the message says
            which rows were used).
    """

    def ci(fn: Callable[..., float], *arrays: np.ndarray) -> BootstrapResult:
        return bootstrap_ci(fn, *arrays, n=n_bootstrap, seed=seed, alpha=BOOTSTRAP_ALPHA)

    metrics, rows = {}, {}
    for name in paper_task(task).test_metrics:
        if name in _LABEL_METRICS:
            metrics[name], rows[name] = _LABEL_METRICS[name](y, proba, classes, ci), len(y)
        elif extra:  # the C-index: only where survival times exist
            time, event = extra["survival_time"], extra["event"]
            known = np.isfinite(time) & np.isfinite(event)
            # label 1 means alive at the horizon, so the risk is the probability of class 0.
            try:
                metrics[name] = ci(harrell_c_index, time[known], event[known], proba[known, 0])
            except UndefinedMetricError as err:
                raise UndefinedMetricError(
                    f"test: {err} among {int(known.sum())} rows with survival data"
                ) from err
            rows[name] = int(known.sum())
    return metrics, rows


def selection_score(y: np.ndarray, proba: np.ndarray, multiclass: bool) -> float:
    """The validation metric that picks the checkpoint; NaN when it is undefined.

    Multiclass: macro one-vs-rest average precision over the classes present in ``y`` (mAP),
    ``proba`` (N, K) with column k for class k. Binary: ROC-AUC of ``proba`` (N,) or (N, 1).
    """
    y = np.asarray(y).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    try:
        if multiclass:
            return mean_average_precision(y, proba)
        return roc_auc(y, proba.reshape(-1))
    except UndefinedMetricError:
        return float("nan")
