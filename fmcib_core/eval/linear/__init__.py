"""Linear evaluation of frozen features: the model (``model``), the search over C (``search``)
and the fit on train with test metrics (``fit``); docs/method.md section 6."""

from __future__ import annotations

from fmcib_core.eval.linear.fit import (
    LinearEvalResult,
    as_task,
    fit_linear_eval,
    labels_from_table,
    prediction_table,
)
from fmcib_core.eval.linear.model import (
    LinearEvalError,
    LinearModel,
    load_linear_model,
    save_linear_model,
)
from fmcib_core.eval.linear.search import C_RANGE, MAX_ITER, SEARCH_METRICS

__all__ = [
    "C_RANGE",
    "MAX_ITER",
    "SEARCH_METRICS",
    "LinearEvalError",
    "LinearEvalResult",
    "LinearModel",
    "as_task",
    "fit_linear_eval",
    "labels_from_table",
    "load_linear_model",
    "prediction_table",
    "save_linear_model",
]
