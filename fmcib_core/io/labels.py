"""A task's label column, and a survival task's ``survival_time``/``event`` columns, as arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmcib_core.tasks import SURVIVAL_COLUMNS, Task

__all__ = ["LabelColumnError", "survival_arrays", "task_labels"]


class LabelColumnError(ValueError):
    """Label columns that cannot be read; the message lists every problem, one per line."""


def task_labels(
    table: pd.DataFrame, task: Task, *, source: str = "table"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the task's label column as float (NaN where missing) and any survival columns.

    The survival columns (``survival_time``, ``event``) are read for survival tasks only, when
    the table has them.

    Raises:
        LabelColumnError: the label column is missing or not numeric, or only one of
            ``survival_time``/``event`` is present.
    """
    label = task.label_column
    problems = []
    if label not in table.columns:
        problems.append(f"{source}: label column '{label}' is missing (task {task.id})")
    present = [c for c in SURVIVAL_COLUMNS if c in table.columns] if task.survival else []
    if len(present) == 1:
        problems.append(
            f"{source}: has '{present[0]}' but not its partner; give both of "
            f"{list(SURVIVAL_COLUMNS)} or neither"
        )
    for col in ([label] if label in table.columns else []) + present:
        if not pd.api.types.is_numeric_dtype(table[col].dtype):
            problems.append(f"{source}: column '{col}' is not numeric ({table[col].dtype})")
    if problems:
        raise LabelColumnError("\n".join(problems))
    y = table[label].to_numpy(dtype=np.float64, na_value=np.nan)
    extra = {c: table[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in present}
    return y, extra


def survival_arrays(
    table: pd.DataFrame, task: Task, *, source: str = "table"
) -> dict[str, np.ndarray]:
    """``{survival_time, event}`` arrays of a survival task's table (empty when absent)."""
    return task_labels(table, task, source=source)[1]
