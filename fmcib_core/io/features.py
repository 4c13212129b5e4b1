"""Feature tables: a lesion table with one float32 column per backbone feature.

A feature table holds the input table's columns unchanged, followed by ``pred_0`` ...
``pred_{F-1}`` (docs/method.md section 6). The feature columns are found by counting the columns
named with :data:`FEATURE_PREFIX` and comparing them with the names that count implies, never by
pattern matching, so that a gap, a duplicate or a stray ``pred_`` column is an error.

A feature shard (:func:`write_feature_shard`) holds the features of some of a table's rows, each
with its row's position in the whole table, for extraction in several jobs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fmcib_core.io.atomic import atomic_path

__all__ = [
    "FEATURE_PREFIX",
    "FeatureTableError",
    "feature_names",
    "SHARD_ROW",
    "read_feature_shard",
    "read_features",
    "write_feature_shard",
    "write_features",
]

FEATURE_PREFIX = "pred_"
# The first column of a feature shard: each row's position in the whole table.
SHARD_ROW = "row"
_PARQUET_SUFFIXES = (".parquet", ".pq")


class FeatureTableError(ValueError):
    """A feature table that cannot be used; the message names the file and the columns."""


def feature_names(n_features: int) -> list[str]:
    """Return the feature column names ``pred_0`` ... ``pred_{n_features-1}``."""
    return [f"{FEATURE_PREFIX}{i}" for i in range(n_features)]


def write_features(
    path: str | Path, table: pd.DataFrame, features: np.ndarray, *, csv: bool = False
) -> None:
    """Write ``table``'s columns followed by ``pred_0`` ... ``pred_{F-1}`` as float32.

    The file appears only once complete (written through :func:`atomic_path`). The table's index
    is not written; its row order is the order of ``features``.

    Args:
        path: output file, ``.parquet`` (or ``.pq``), or ``.csv`` when ``csv`` is true.
        table: N rows; no column may already start with ``pred_``.
        features: (N, F) real array, F >= 1; NaN is kept (downstream steps drop and count it).
        csv: write CSV instead of parquet (same columns; CSV has no float32, see
            :func:`read_features`).

    Raises:
        ValueError: shapes disagree, the features are not real numbers, the table already has
            ``pred_`` columns, or the suffix does not match the format.
    """
    path = Path(path)
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] < 1:
        raise ValueError(
            f"{path}: features must have shape (N, F) with F >= 1, got {features.shape}"
        )
    if features.shape[0] != len(table):
        raise ValueError(
            f"{path}: {features.shape[0]} feature rows for a table of {len(table)} rows"
        )
    if not (
        np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)
    ):
        raise ValueError(f"{path}: features must be real numbers, got dtype {features.dtype}")
    clashes = [str(c) for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
    if clashes:
        raise ValueError(f"{path}: the table already has feature-like columns {clashes[:5]}")
    suffix = path.suffix.lower()
    if csv != (suffix == ".csv") or (not csv and suffix not in _PARQUET_SUFFIXES):
        raise ValueError(
            f"{path}: suffix '{suffix}' does not match format {'csv' if csv else 'parquet'}"
        )
    names = feature_names(features.shape[1])
    block = pd.DataFrame(features.astype(np.float32, copy=False), columns=names)
    out = pd.concat([table.reset_index(drop=True), block], axis=1)
    with atomic_path(path) as tmp:
        if csv:
            out.to_csv(tmp, index=False)
        else:
            out.to_parquet(tmp, engine="pyarrow", index=False)


def read_features(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Read a feature table and check its schema.

    Feature columns must be exactly ``pred_0`` ... ``pred_{F-1}`` (F >= 1), in order and side by
    side. Their dtype must be floating: float32 as written; float64 is accepted and cast to
    float32 because CSV has no float32 type and the values were float32 when written (a float64
    parquet from elsewhere loses precision beyond float32, which the linear model does not need).
    Integer, boolean or text columns are errors.

    Args:
        path: a ``.parquet``/``.pq`` or ``.csv`` file.

    Returns:
        ``(table, X, names)``: the other columns in their order, the (N, F) float32 features and
        the feature column names.

    Raises:
        FeatureTableError: the file is missing or unreadable, or the feature columns are absent,
            misnamed, out of order, split by other columns or not floating point; the message
            names the file and the columns.
    """
    path = Path(path)
    frame = _read_frame(path)
    names = _feature_columns(path, frame)
    X = frame[names].to_numpy(dtype=np.float32, na_value=np.nan)
    return frame.drop(columns=names), X, names


def write_feature_shard(path: str | Path, rows: np.ndarray, features: np.ndarray) -> None:
    """Write one shard of a table's features: ``row`` (int64), then ``pred_0`` ... as float32.

    ``row`` is each feature row's position in the whole table, which gathering puts it back at
    (:func:`fmcib_core.eval.shards.gather_shards`). A shard without rows has no feature columns.
    Parquet only; written through :func:`atomic_path`.

    Args:
        path: a ``.parquet`` (or ``.pq``) file.
        rows: (n,) positions in the whole table.
        features: (n, F) real array; F >= 1 unless n is 0.

    Raises:
        ValueError: shapes disagree, the features are not real numbers, or not a parquet name.
    """
    path = Path(path)
    rows, features = np.asarray(rows), np.asarray(features)
    if rows.ndim != 1 or features.ndim != 2 or len(rows) != len(features):
        raise ValueError(
            f"{path}: {rows.shape} row positions for features of shape {features.shape}; "
            "expected (n,) and (n, F)"
        )
    if len(rows) and features.shape[1] < 1:
        raise ValueError(f"{path}: a shard with rows needs F >= 1 features, got {features.shape}")
    if not (np.issubdtype(rows.dtype, np.integer) or len(rows) == 0):
        raise ValueError(f"{path}: row positions must be integers, got dtype {rows.dtype}")
    if not (np.issubdtype(features.dtype, np.number) and not np.iscomplexobj(features)):
        raise ValueError(f"{path}: features must be real numbers, got dtype {features.dtype}")
    if path.suffix.lower() not in _PARQUET_SUFFIXES:
        raise ValueError(f"{path}: a feature shard is parquet; use a .parquet name")
    frame = pd.DataFrame(features.astype(np.float32), columns=feature_names(features.shape[1]))
    frame.insert(0, SHARD_ROW, rows.astype(np.int64))
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, engine="pyarrow", index=False)


def read_feature_shard(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a shard that :func:`write_feature_shard` wrote.

    Returns:
        ``(rows, features)``: (n,) int64 positions in the whole table and (n, F) float32
        features (F is 0 for a shard without rows).

    Raises:
        FeatureTableError: the file is missing or unreadable, has no integer ``row`` column
            first, or other columns than the feature columns after it (checked as
            :func:`read_features` checks them).
    """
    path = Path(path)
    frame = _read_frame(path)
    if not len(frame.columns) or str(frame.columns[0]) != SHARD_ROW:
        raise FeatureTableError(f"{path}: a feature shard starts with a '{SHARD_ROW}' column")
    if not pd.api.types.is_integer_dtype(frame[SHARD_ROW].dtype):
        raise FeatureTableError(
            f"{path}: '{SHARD_ROW}' must hold integers, got {frame[SHARD_ROW].dtype}"
        )
    rows = frame[SHARD_ROW].to_numpy(dtype=np.int64)
    if len(frame.columns) == 1 and not len(frame):
        return rows, np.empty((0, 0), dtype=np.float32)
    names = _feature_columns(path, frame)
    if len(names) != len(frame.columns) - 1:
        others = [str(c) for c in frame.columns[1:] if str(c) not in names]
        raise FeatureTableError(f"{path}: a feature shard has other columns {others[:5]}")
    return rows, frame[names].to_numpy(dtype=np.float32, na_value=np.nan)


def _feature_columns(path: Path, frame: pd.DataFrame) -> list[str]:
    """``frame``'s feature column names, checked as :func:`read_features` describes."""
    columns = [str(c) for c in frame.columns]
    positions = [i for i, c in enumerate(columns) if c.startswith(FEATURE_PREFIX)]
    if not positions:
        raise FeatureTableError(f"{path}: no feature columns ('{FEATURE_PREFIX}0', ...)")
    names = feature_names(len(positions))
    found = [columns[i] for i in positions]
    if found != names:
        wrong = [f for f, n in zip(found, names, strict=True) if f != n]
        raise FeatureTableError(
            f"{path}: feature columns must be {names[0]} ... {names[-1]} in order; "
            f"found {wrong[:5]} where those were expected"
        )
    if positions[-1] - positions[0] != len(positions) - 1:
        raise FeatureTableError(
            f"{path}: feature columns {names[0]} ... {names[-1]} are not contiguous"
        )
    bad = [(n, frame[n].dtype) for n in names if not pd.api.types.is_float_dtype(frame[n].dtype)]
    if bad:
        listed = ", ".join(f"'{n}' ({d})" for n, d in bad[:5])
        raise FeatureTableError(
            f"{path}: feature columns must be float32 (float64 accepted); "
            f"{len(bad)} are not: {listed}"
        )
    return names


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FeatureTableError(f"{path}: feature table does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", *_PARQUET_SUFFIXES):
        raise FeatureTableError(
            f"{path}: unknown feature table format '{suffix}'; use .parquet or .csv"
        )
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path, engine="pyarrow")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as err:
        raise FeatureTableError(f"{path}: feature table cannot be parsed ({err})") from err
