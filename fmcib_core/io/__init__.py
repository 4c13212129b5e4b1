"""Input and output: lesion tables, CT volumes, weights files and feature tables."""

from __future__ import annotations

from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.images import ImageReadError, read_image
from fmcib_core.io.tables import (
    COORD_COLUMNS,
    REQUIRED_COLUMNS,
    TableError,
    read_table,
    resolve_image_paths,
)

__all__ = [
    "COORD_COLUMNS",
    "REQUIRED_COLUMNS",
    "ImageReadError",
    "TableError",
    "atomic_path",
    "read_image",
    "read_table",
    "resolve_image_paths",
]
