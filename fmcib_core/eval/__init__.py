"""eval layer of fmcib_core: features of a backbone and their linear evaluation."""

from __future__ import annotations

from fmcib_core.eval.features import (
    PRECISIONS,
    extract_feature_sources,
    extract_features,
    features_of_patches,
    get_features,
    load_backbone,
    prefetch,
)
from fmcib_core.eval.linear import (
    LinearEvalError,
    LinearEvalResult,
    LinearModel,
    as_task,
    fit_linear_eval,
    labels_from_table,
    load_linear_model,
    prediction_table,
    save_linear_model,
)
from fmcib_core.eval.shards import gather_shards, shard_rows

__all__ = [
    "PRECISIONS",
    "LinearEvalError",
    "LinearEvalResult",
    "LinearModel",
    "as_task",
    "extract_feature_sources",
    "extract_features",
    "features_of_patches",
    "fit_linear_eval",
    "gather_shards",
    "get_features",
    "labels_from_table",
    "load_backbone",
    "load_linear_model",
    "prefetch",
    "prediction_table",
    "save_linear_model",
    "shard_rows",
]
