"""The report's inputs: result files with their predictions, the SSL log and the preview patches.

Everything the report shows is read here and checked once, so that the figures and the page
only ever see well-formed data; every error names the file it comes from. A result's task is one
of the paper's (1, 2, 3; docs/method.md section 7) or a custom task named by a string, whose
label column the result file must then name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmcib_core.data.patches import extract_patches
from fmcib_core.io.predictions import BINARY_COLUMN, CLASS_PREFIX, probability_columns
from fmcib_core.io.tables import LABEL_SPECS, read_table, resolve_image_paths
from fmcib_core.tasks import TASKS, TaskError, custom_task

__all__ = [
    "DASH",
    "SOURCE_NAMES",
    "SSL_COLUMNS",
    "Evaluation",
    "ReportError",
    "DataEfficiency",
    "load_data_efficiency",
    "load_evaluation",
    "load_ssl_log",
    "preview_patches",
    "task_name",
    "task_order",
]

log = logging.getLogger(__name__)

DASH = "\u2014"
SOURCE_NAMES = {
    ("linear", "foundation"): "Linear, foundation-model features",
    ("linear", "published"): "Linear, published-model features",
    ("linear", "random-init"): "Linear, random-init features (control)",
    ("linear", "handcrafted"): "Linear, handcrafted descriptor (baseline)",
    ("finetune", "random"): "Fine-tuned, random init",
    ("finetune", "supervised"): "Fine-tuned, supervised init",
    ("finetune", "foundation"): "Fine-tuned, foundation init",
}
SSL_COLUMNS = ("step", "loss", "lr")


class ReportError(ValueError):
    """An input the report cannot read; the message names the file."""


def _is_paper_task(task: object) -> bool:
    return isinstance(task, int) and not isinstance(task, bool) and task in TASKS


def task_name(task: int | str) -> str:
    """How the report names a task: ``"Task 2"`` for a paper task, else the custom task's name."""
    return f"Task {task}" if _is_paper_task(task) else str(task)


def task_order(task: int | str) -> tuple[int, int, str]:
    """Sort key of tasks: the paper's tasks by number, then custom tasks by name."""
    return (0, int(task), "") if _is_paper_task(task) else (1, 0, str(task))


@dataclass(frozen=True)
class Evaluation:
    """One result file (linear evaluation or fine-tuning) and its test predictions.

    Attributes:
        path: the JSON file.
        kind: ``"linear"`` or ``"finetune"``.
        source: the feature source (linear) or the initialisation (fine-tuning).
        task: 1, 2 or 3 for the paper's tasks, else the custom task's name.
        label: the label column.
        summary: the JSON's contents.
        predictions: the test predictions (label column + ``prob`` or ``prob_<class>``), or None
            when no predictions file lies beside the JSON.
    """

    path: Path
    kind: str
    source: str
    task: int | str
    label: str
    summary: dict[str, Any]
    predictions: pd.DataFrame | None

    @property
    def name(self) -> str:
        """The row name in the table and the curve name in the legends."""
        name = SOURCE_NAMES.get((self.kind, self.source), f"{self.kind}, {self.source}")
        groups = self.groups
        if groups:
            name += f", patient level ({groups['aggregate']} over {groups['column']})"
        return name

    @property
    def groups(self) -> dict[str, Any] | None:
        """A patient-level evaluation's ``groups`` entry (column, aggregate, counts), else None."""
        groups = self.summary.get("groups")
        return groups if isinstance(groups, dict) and "column" in groups else None

    @property
    def order(self) -> tuple[tuple[int, int, str], int, int, str]:
        """Sort key: task, lesion level before patient level, then the paper's row order
        (linear before fine-tuned)."""
        names = list(SOURCE_NAMES)
        key = (self.kind, self.source)
        rank = names.index(key) if key in names else len(names)
        return task_order(self.task), int(self.groups is not None), rank, self.source

    @property
    def multiclass(self) -> bool | None:
        """Whether the predictions hold one probability per class (``prob_<class>``).

        Without predictions: the paper task's kind, or None (unknown) for a custom task.
        """
        if self.predictions is not None:
            return -1 not in probability_columns(self.predictions)
        return TASKS[self.task].multiclass if _is_paper_task(self.task) else None


def load_evaluation(path: str | Path, kind: str) -> Evaluation:
    """Read a result JSON and the predictions beside it.

    Linear evaluations keep their predictions in ``<stem>_predictions.parquet``, fine-tuning runs
    in ``predictions.parquet`` in the same folder. Only ``task`` is required in the JSON for the
    paper's tasks (the label column defaults to the task's); a custom task (``task`` is its name)
    also needs ``label``.

    Raises:
        ReportError: the JSON is unreadable or malformed, or the predictions file is unreadable
            or lacks the label or probability columns.
    """
    path = Path(path)
    if kind not in ("linear", "finetune"):
        raise ValueError(f"kind must be 'linear' or 'finetune', got {kind!r}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read the {kind} results as JSON ({err})") from err
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    task, label = _task_and_label(path, summary)
    if not isinstance(summary.get("test_metrics", {}), dict):
        raise ReportError(f"{path}: 'test_metrics' must be an object of metric name -> result")
    if kind == "linear":
        default = "random-init" if path.stem.endswith("random-init") else "foundation"
        source = str(summary.get("feature_source") or default)
        predictions_path = path.with_name(f"{path.stem}_predictions.parquet")
    else:
        source = str(summary.get("init") or path.parent.name.removeprefix("finetune_"))
        predictions_path = path.with_name("predictions.parquet")
    predictions = _read_predictions(predictions_path, label)
    return Evaluation(path, kind, source, task, label, summary, predictions)


def _task_and_label(path: Path, summary: dict[str, Any]) -> tuple[int | str, str]:
    """The JSON's task (a paper task's number or a custom task's name) and its label column."""
    task = summary.get("task")
    if not (_is_paper_task(task) or isinstance(task, str)):
        raise ReportError(
            f"{path}: 'task' must be one of {sorted(TASKS)}, got {task!r} (or a custom task's name)"
        )
    label = summary.get("label")
    if _is_paper_task(task):
        return task, str(label or TASKS[task].label_column)
    if not isinstance(label, str) or not label:
        raise ReportError(
            f"{path}: the custom task {task!r} needs 'label' (its label column), got {label!r}"
        )
    try:
        custom_task(task, label)  # checks the name as the config does
    except TaskError as err:
        raise ReportError(f"{path}: {err}") from err
    return task, label


def _read_predictions(path: Path, label: str) -> pd.DataFrame | None:
    if not path.exists():
        log.warning("%s: no predictions file; its ROC curve is left out", path)
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the predictions ({err})") from err
    if label not in table.columns or not probability_columns(table):
        raise ReportError(
            f"{path}: predictions need the label column '{label}' and '{BINARY_COLUMN}' or "
            f"'{CLASS_PREFIX}<class>' columns; found {list(table.columns)}"
        )
    return table


def load_ssl_log(path: str | Path) -> pd.DataFrame:
    """Read the SSL training log (``step``, ``loss``, ``lr``; one row per optimizer step).

    Raises:
        ReportError: the file is unreadable, lacks a column, or holds a non-numeric value.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the SSL log ({err})") from err
    missing = [c for c in SSL_COLUMNS if c not in table.columns]
    if missing:
        raise ReportError(f"{path}: the SSL log lacks column(s) {missing}")
    try:
        return table.assign(**{c: pd.to_numeric(table[c]) for c in SSL_COLUMNS})
    except ValueError as err:
        raise ReportError(f"{path}: the SSL log holds a non-numeric value ({err})") from err


def preview_patches(table_path: str | Path, size: int, n: int = 8) -> tuple[np.ndarray, list[str]]:
    """The patches of a table's first ``n`` lesions (docs/method.md section 2), and their titles.

    Returns:
        Patches (n, 1, size, size, size) in normalised units (axes z, y, x), and titles naming the
        table row and any label columns.
    """
    table = read_table(table_path).head(n)
    table = table.assign(image_path=resolve_image_paths(table, table_path))
    patches = extract_patches(table, size=size)
    labels = [c for c, spec in LABEL_SPECS.items() if c in table.columns and not spec.companion_of]
    titles = []
    for position, (_, row) in enumerate(table.iterrows()):
        parts = [f"row {position}"] + [f"{c} {_format_label(row[c])}" for c in labels]
        titles.append("\n".join(parts))
    return patches, titles


def _format_label(value: object) -> str:
    if pd.isna(value):
        return DASH
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class DataEfficiency:
    """One task's data-efficiency results (``results/<task>/data_efficiency.json``).

    Attributes:
        path: the JSON file.
        task: 1, 2 or 3 for the paper's tasks, else the custom task's name.
        label: the label column.
        metric: the test metric's name (``mean_average_precision``, ``roc_auc``, ...).
        results: one row per (fraction, source): ``fraction``, ``source``, ``n_train``,
            ``value``, ``ci_low``, ``ci_high`` (None where undefined).
    """

    path: Path
    task: int | str
    label: str
    metric: str
    results: pd.DataFrame


_DATA_EFFICIENCY_COLUMNS = ("fraction", "source", "n_train", "value", "ci_low", "ci_high")


def load_data_efficiency(path: str | Path) -> DataEfficiency:
    """Read a data-efficiency JSON of workflow_scripts/data_efficiency.py.

    Raises:
        ReportError: unreadable, not JSON, or without its task, label, metric or result rows.
    """
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read data-efficiency results: {err}") from err
    missing = [k for k in ("task", "label", "metric", "results") if k not in summary]
    if missing:
        raise ReportError(f"{path}: data-efficiency results lack {', '.join(missing)}")
    rows = summary["results"]
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, dict) and set(_DATA_EFFICIENCY_COLUMNS) <= set(r) for r in rows)
    ):
        raise ReportError(
            f"{path}: 'results' must be a non-empty list of rows with "
            f"{', '.join(_DATA_EFFICIENCY_COLUMNS)}"
        )
    table = pd.DataFrame(rows)[list(_DATA_EFFICIENCY_COLUMNS)]
    for column in ("fraction", "value", "ci_low", "ci_high"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return DataEfficiency(
        path=path,
        task=summary["task"],
        label=str(summary["label"]),
        metric=str(summary["metric"]),
        results=table,
    )
