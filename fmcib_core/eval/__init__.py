"""eval layer of fmcib_core: features, test metrics, linear evaluation, report."""

from __future__ import annotations

from fmcib_core.eval.features import PRECISIONS, extract_features, get_features, load_backbone
from fmcib_core.eval.linear import (
    TASK_LABELS,
    LinearEvalError,
    LinearEvalResult,
    LinearModel,
    fit_linear_eval,
    labels_from_table,
    load_linear_model,
    prediction_table,
    save_linear_model,
    task_metrics,
)
from fmcib_core.eval.metrics import (
    BootstrapResult,
    UndefinedMetricError,
    average_precision,
    balanced_accuracy,
    bootstrap_ci,
    harrell_c_index,
    mean_average_precision,
    metrics_json,
    roc_auc,
)

__all__ = [
    "PRECISIONS",
    "TASK_LABELS",
    "BootstrapResult",
    "LinearEvalError",
    "LinearEvalResult",
    "LinearModel",
    "UndefinedMetricError",
    "average_precision",
    "balanced_accuracy",
    "bootstrap_ci",
    "extract_features",
    "fit_linear_eval",
    "get_features",
    "harrell_c_index",
    "labels_from_table",
    "load_backbone",
    "load_linear_model",
    "mean_average_precision",
    "metrics_json",
    "prediction_table",
    "roc_auc",
    "save_linear_model",
    "task_metrics",
]
