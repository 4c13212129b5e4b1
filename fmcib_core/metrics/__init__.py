"""metrics layer of fmcib_core: test metrics, bootstrap CIs and per-task evaluation."""

from __future__ import annotations

from fmcib_core.metrics.evaluate import (
    BOOTSTRAP_ALPHA,
    BOOTSTRAP_SAMPLES,
    selection_score,
    task_metrics,
)
from fmcib_core.metrics.scores import (
    BootstrapResult,
    UndefinedMetricError,
    average_precision,
    balanced_accuracy,
    bootstrap_ci,
    finite,
    harrell_c_index,
    mean_average_precision,
    metrics_json,
    roc_auc,
)

__all__ = [
    "BOOTSTRAP_ALPHA",
    "BOOTSTRAP_SAMPLES",
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
    "selection_score",
    "task_metrics",
]
