"""Input and output: lesion tables, CT volumes, weights files and feature tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmcib_core._lazy import lazy_attributes

if TYPE_CHECKING:
    from fmcib_core.io.atomic import OutputError, atomic_path, write_outputs
    from fmcib_core.io.features import (
        FEATURE_PREFIX,
        SHARD_ROW,
        FeatureTableError,
        feature_names,
        read_feature_shard,
        read_features,
        write_feature_shard,
        write_features,
    )
    from fmcib_core.io.images import ImageReadError, read_image
    from fmcib_core.io.predictions import probability_columns, with_probabilities
    from fmcib_core.io.tables import (
        COORD_COLUMNS,
        LABEL_SPECS,
        REQUIRED_COLUMNS,
        LabelSpec,
        TableError,
        class_label,
        read_table,
        resolve_image_paths,
        task_label,
    )
    from fmcib_core.io.validate import ValidationReport, validate_table
    from fmcib_core.io.weights import (
        WeightsError,
        WeightsFile,
        load_into,
        load_weights,
        save_fmcib_weights,
    )

__all__ = [
    "FEATURE_PREFIX",
    "FeatureTableError",
    "SHARD_ROW",
    "feature_names",
    "read_feature_shard",
    "read_features",
    "write_feature_shard",
    "write_features",
    "COORD_COLUMNS",
    "LABEL_SPECS",
    "REQUIRED_COLUMNS",
    "ImageReadError",
    "LabelSpec",
    "OutputError",
    "TableError",
    "ValidationReport",
    "WeightsError",
    "WeightsFile",
    "atomic_path",
    "class_label",
    "load_into",
    "load_weights",
    "probability_columns",
    "read_image",
    "read_table",
    "resolve_image_paths",
    "save_fmcib_weights",
    "task_label",
    "validate_table",
    "with_probabilities",
    "write_outputs",
]

# Each name is imported from its module on first use (fmcib_core._lazy).
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "OutputError": "fmcib_core.io.atomic",
        "atomic_path": "fmcib_core.io.atomic",
        "write_outputs": "fmcib_core.io.atomic",
        "FEATURE_PREFIX": "fmcib_core.io.features",
        "SHARD_ROW": "fmcib_core.io.features",
        "FeatureTableError": "fmcib_core.io.features",
        "feature_names": "fmcib_core.io.features",
        "read_feature_shard": "fmcib_core.io.features",
        "read_features": "fmcib_core.io.features",
        "write_feature_shard": "fmcib_core.io.features",
        "write_features": "fmcib_core.io.features",
        "ImageReadError": "fmcib_core.io.images",
        "read_image": "fmcib_core.io.images",
        "probability_columns": "fmcib_core.io.predictions",
        "with_probabilities": "fmcib_core.io.predictions",
        "COORD_COLUMNS": "fmcib_core.io.tables",
        "LABEL_SPECS": "fmcib_core.io.tables",
        "REQUIRED_COLUMNS": "fmcib_core.io.tables",
        "LabelSpec": "fmcib_core.io.tables",
        "TableError": "fmcib_core.io.tables",
        "class_label": "fmcib_core.io.tables",
        "read_table": "fmcib_core.io.tables",
        "resolve_image_paths": "fmcib_core.io.tables",
        "task_label": "fmcib_core.io.tables",
        "ValidationReport": "fmcib_core.io.validate",
        "validate_table": "fmcib_core.io.validate",
        "WeightsError": "fmcib_core.io.weights",
        "WeightsFile": "fmcib_core.io.weights",
        "load_into": "fmcib_core.io.weights",
        "load_weights": "fmcib_core.io.weights",
        "save_fmcib_weights": "fmcib_core.io.weights",
    },
)
