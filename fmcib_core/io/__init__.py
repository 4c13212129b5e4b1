"""Input and output: lesion tables, CT volumes, weights files and feature tables."""

from __future__ import annotations

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
