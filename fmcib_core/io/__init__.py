"""Input and output: lesion tables, CT volumes, weights files and feature tables."""

from __future__ import annotations

from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.images import ImageReadError, read_image
from fmcib_core.io.tables import (
    COORD_COLUMNS,
    LABEL_SPECS,
    REQUIRED_COLUMNS,
    LabelSpec,
    TableError,
    read_table,
    resolve_image_paths,
)
from fmcib_core.io.validate import ValidationReport, validate_table

__all__ = [
    "COORD_COLUMNS",
    "LABEL_SPECS",
    "REQUIRED_COLUMNS",
    "ImageReadError",
    "LabelSpec",
    "TableError",
    "ValidationReport",
    "atomic_path",
    "read_image",
    "read_table",
    "resolve_image_paths",
    "validate_table",
]
