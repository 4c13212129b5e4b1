"""Lesion tables: reading CSV or parquet, resolving image paths and checking columns and labels."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fmcib_core.tasks import SURVIVAL_COLUMNS, TASKS, Task

__all__ = [
    "COORD_COLUMNS",
    "LABEL_SPECS",
    "REQUIRED_COLUMNS",
    "LabelSpec",
    "Problem",
    "TableError",
    "check_label_names",
    "class_label",
    "task_label",
    "check_table",
    "find_duplicate_rows",
    "read_table",
    "resolve_image_paths",
]

COORD_COLUMNS = ("coordX", "coordY", "coordZ")
REQUIRED_COLUMNS = ("image_path", *COORD_COLUMNS)


class TableError(ValueError):
    """A lesion table that cannot be used; the message lists every problem, one per line."""


@dataclass(frozen=True)
class LabelSpec:
    """The values a label column may hold.

    Attributes:
        rule: the allowed values in words, used in error messages.
        values: the allowed values when the label is discrete; ``None`` for any number.
        minimum: the smallest allowed value when ``values`` is ``None``.
        companion_of: a label whose rule uses this column too: when that label is requested and
            this column is present, this column is checked as if it had been requested.
    """

    rule: str
    values: tuple[int, ...] | None = None
    minimum: float | None = None
    companion_of: str | None = None

    def allows(self, value: float) -> bool:
        """Whether the (finite) number ``value`` is a valid label."""
        if self.values is not None:
            return value in self.values
        return self.minimum is None or value >= self.minimum


def class_label(n_classes: int, rule: str | None = None) -> LabelSpec:
    """A class label with values ``0 .. n_classes - 1``, described by ``rule``."""
    default = "0 or 1" if n_classes == 2 else f"an integer 0..{n_classes - 1}"
    return LabelSpec(rule or default, values=tuple(range(n_classes)))


def task_label(task: Task) -> LabelSpec:
    """The allowed values of a task's label column: its classes ``0 .. n_classes - 1``."""
    return class_label(task.n_classes, task.label_rule)


def _task_label_specs() -> dict[str, LabelSpec]:
    specs = {}
    for task in TASKS.values():
        specs[task.label_column] = task_label(task)
        if task.survival:
            time, event = SURVIVAL_COLUMNS
            specs[time] = LabelSpec(
                "a number of days >= 0", minimum=0.0, companion_of=task.label_column
            )
            specs[event] = LabelSpec("0 or 1", values=(0, 1), companion_of=task.label_column)
    return specs


LABEL_SPECS: dict[str, LabelSpec] = _task_label_specs()
"""Label columns of the paper's tasks (and Task 3's survival columns) -> their allowed values."""


@dataclass(frozen=True)
class Problem:
    """One problem of a table: where it is and ``what is wrong; what to do``.

    Attributes:
        message: ``{what is wrong}; {what to do}``.
        row: the 1-based data row (the header is not counted); ``None`` for the whole table.
        column: the column concerned; ``None`` for the whole table.
    """

    message: str
    row: int | None = None
    column: str | None = None

    def format(self, file: str | Path) -> str:
        """Return ``{file}: row {row}: column '{column}': {message}``, absent parts left out."""
        parts = [str(file)]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        return ": ".join([*parts, self.message])


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a lesion table from ``.csv`` or ``.parquet`` with its columns unchanged.

    Raises:
        TableError: the file is missing or a folder, has another suffix, cannot be parsed, or
            names a column more than once (one line per such column).
    """
    path = Path(path)
    if path.is_dir():
        raise TableError(
            f"{path}: is a folder, not a table file; give the path of a .csv or .parquet file"
        )
    if not path.is_file():
        raise TableError(f"{path}: table does not exist; check the path in the config")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise TableError(f"{path}: unknown table format '{suffix}'; use .csv or .parquet")
    try:
        if suffix == ".csv":
            table = pd.read_csv(path)
            _check_unique_columns(path, _csv_header(path))
        else:  # pyarrow cannot even read a parquet file with repeated names: check them first
            _check_unique_columns(path, _parquet_names(path))
            table = pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError, csv.Error) as err:
        if isinstance(err, TableError):
            raise
        raise TableError(
            f"{path}: table cannot be parsed ({err}); save it as CSV or parquet"
        ) from err
    return table


def _check_unique_columns(path: Path, names: Sequence[object]) -> None:
    """Raise a :class:`TableError`, one line per column name that ``names`` holds twice or more.

    pandas would silently rename a repeat (``coordX`` -> ``coordX.1``) and read the first one.
    """
    counts = Counter(str(name) for name in names if str(name) != "")
    repeated = [(name, count) for name, count in counts.items() if count > 1]
    if repeated:
        raise TableError(
            "\n".join(
                f"{path}: column '{name}' appears {count} times; give every column a unique name"
                for name, count in repeated
            )
        )


def _csv_header(path: Path) -> list[str]:
    """The column names of a CSV file's header exactly as written (pandas renames repeats)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return next((row for row in csv.reader(handle) if row), [])


def _parquet_names(path: Path) -> list[str]:
    """The column names of a parquet file's schema (pandas renames repeats)."""
    import pyarrow.parquet as pq  # imported by pandas' reader anyway; not at import time

    return pq.read_schema(path).names


def resolve_image_paths(table: pd.DataFrame, table_path: str | Path) -> pd.Series:
    """Return ``image_path`` as absolute paths; relative ones are taken from the table's folder."""
    base = Path(table_path).resolve().parent
    return table["image_path"].map(
        lambda p: str(p) if Path(str(p)).is_absolute() else str(base / str(p))
    )


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _numbers(table: pd.DataFrame, column: str, rule: str) -> tuple[pd.Series, list[Problem]]:
    """Return the column as floats (NaN where unusable) and one problem per unusable cell."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    problems = []
    for pos in (~values.map(math.isfinite)).to_numpy().nonzero()[0]:
        cell = raw.iloc[pos]
        what = "is empty" if _is_empty(cell) else f"value '{cell}' is not a finite number"
        problems.append(Problem(f"{what}; {rule}", row=int(pos) + 1, column=column))
    return values, problems


def _check_coordinates(table: pd.DataFrame) -> list[Problem]:
    rule = "write the seed point in world millimetres (LPS)"
    return [p for col in COORD_COLUMNS if col in table for p in _numbers(table, col, rule)[1]]


def _check_image_paths(table: pd.DataFrame) -> list[Problem]:
    return [
        Problem("is empty; give the image file or DICOM folder", row=pos + 1, column="image_path")
        for pos, cell in enumerate(table["image_path"])
        if _is_empty(cell) or not str(cell).strip()
    ]


def _check_label(table: pd.DataFrame, column: str, spec: LabelSpec) -> list[Problem]:
    rule = f"{column} must be {spec.rule}"
    values, problems = _numbers(table, column, f"{rule} (fill it in or remove the row)")
    for pos, value in enumerate(values):
        if math.isfinite(value) and not spec.allows(value):
            problems.append(Problem(f"value {value:g} is out of range; {rule}", pos + 1, column))
    return sorted(problems, key=lambda p: p.row or 0)


def _label_columns(table: pd.DataFrame, labels: Mapping[str, LabelSpec]) -> dict[str, LabelSpec]:
    """The requested labels plus the present companions of requested labels."""
    companions = {
        name: spec
        for name, spec in LABEL_SPECS.items()
        if spec.companion_of in labels and name in table and name not in labels
    }
    return {**labels, **companions}


def check_label_names(labels: Iterable[str]) -> dict[str, LabelSpec]:
    """Each requested label's allowed values, in request order.

    A label is a column of ``LABEL_SPECS`` (the paper's tasks), or ``COLUMN=K`` for a class label
    of the user's own with values ``0 .. K-1`` (a custom task; K >= 2).

    Raises:
        ValueError: a label has no known range, or a bad ``K``.
    """
    specs, unknown = {}, []
    for name in labels:
        column, sep, count = name.partition("=")
        if sep and count.isdigit() and int(count) >= 2 and column:
            specs[column] = class_label(int(count))
        elif name in LABEL_SPECS:
            specs[name] = LABEL_SPECS[name]
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"unknown label(s) {unknown}; use one of {sorted(LABEL_SPECS)} or COLUMN=K "
            "(a class label with values 0..K-1, K >= 2)"
        )
    return specs


def check_table(table: pd.DataFrame, labels: Sequence[str] = ()) -> list[Problem]:
    """Find every problem of a table's columns and cells that needs no image to see.

    Checks: the table has rows; ``image_path`` and ``coordX/Y/Z`` are present; coordinates are
    finite numbers; image paths are not empty; each requested label (and, when ``survival`` is
    requested, ``survival_time`` and ``event`` if present) is present, never empty and in the
    range of ``LABEL_SPECS``.

    Args:
        table: the lesion table as read.
        labels: the label columns the caller's rule uses.

    Returns:
        The problems in table order: whole-table ones first, then column by column.

    Raises:
        ValueError: a requested label is not in ``LABEL_SPECS``.
    """
    labels = _label_columns(table, check_label_names(labels))
    problems = []
    if table.empty:
        problems.append(Problem("table has no rows; add at least one lesion"))
    for column in REQUIRED_COLUMNS:
        if column not in table:
            problems.append(Problem("required column is missing; add it", column=column))
    for column in labels:
        if column not in table:
            problems.append(
                Problem(
                    f"label column is missing; add it or do not request '{column}'", column=column
                )
            )
    if "image_path" in table:
        problems += _check_image_paths(table)
    problems += _check_coordinates(table)
    for column, spec in labels.items():
        if column in table:
            problems += _check_label(table, column, spec)
    return problems


def find_duplicate_rows(table: pd.DataFrame) -> list[Problem]:
    """Return one problem per row that repeats an earlier row in every column."""
    first_seen: dict[tuple, int] = {}
    problems = []
    for pos, row in enumerate(table.astype(str).itertuples(index=False, name=None)):
        if row in first_seen:
            message = f"duplicates row {first_seen[row]}; remove one of them unless intended"
            problems.append(Problem(message, row=pos + 1))
        else:
            first_seen[row] = pos + 1
    return problems
