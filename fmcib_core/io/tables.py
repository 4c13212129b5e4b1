"""Lesion tables: reading CSV or parquet and resolving image paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["COORD_COLUMNS", "REQUIRED_COLUMNS", "TableError", "read_table", "resolve_image_paths"]

COORD_COLUMNS = ("coordX", "coordY", "coordZ")
REQUIRED_COLUMNS = ("image_path", *COORD_COLUMNS)


class TableError(ValueError):
    """A lesion table that cannot be used; the message lists every problem, one per line."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a lesion table from ``.csv`` or ``.parquet`` with its columns unchanged.

    Raises:
        TableError: the file is missing, has another suffix, or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: table does not exist; check the path in the config")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as err:
        raise TableError(f"{path}: table cannot be parsed ({err}); save it as CSV or parquet") from err
    raise TableError(f"{path}: unknown table format '{suffix}'; use .csv or .parquet")


def resolve_image_paths(table: pd.DataFrame, table_path: str | Path) -> pd.Series:
    """Return ``image_path`` as absolute paths, relative ones resolved against the table's folder."""
    base = Path(table_path).resolve().parent
    return table["image_path"].map(lambda p: str(p) if Path(str(p)).is_absolute() else str(base / str(p)))
