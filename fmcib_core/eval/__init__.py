"""eval layer of fmcib_core: features of a backbone and their linear evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmcib_core._lazy import lazy_attributes

if TYPE_CHECKING:
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

# Each name is imported from its module on first use (fmcib_core._lazy).
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "PRECISIONS": "fmcib_core.eval.features",
        "extract_feature_sources": "fmcib_core.eval.features",
        "extract_features": "fmcib_core.eval.features",
        "features_of_patches": "fmcib_core.eval.features",
        "get_features": "fmcib_core.eval.features",
        "load_backbone": "fmcib_core.eval.features",
        "prefetch": "fmcib_core.eval.features",
        "LinearEvalError": "fmcib_core.eval.linear",
        "LinearEvalResult": "fmcib_core.eval.linear",
        "LinearModel": "fmcib_core.eval.linear",
        "as_task": "fmcib_core.eval.linear",
        "fit_linear_eval": "fmcib_core.eval.linear",
        "labels_from_table": "fmcib_core.eval.linear",
        "load_linear_model": "fmcib_core.eval.linear",
        "prediction_table": "fmcib_core.eval.linear",
        "save_linear_model": "fmcib_core.eval.linear",
        "gather_shards": "fmcib_core.eval.shards",
        "shard_rows": "fmcib_core.eval.shards",
    },
)
