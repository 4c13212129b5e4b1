"""What every stage knows about a task, as data (docs/method.md sections 5-7).

A :class:`Task` says where a task's label is (its column), what kind of label it is (multiclass,
binary, or binary with survival times), how its head and loss look, which test metrics it
reports and which metric picks its linear model and its fine-tuned checkpoint. The paper's three
tasks are entries of :data:`TASKS`; a user's own label column becomes a task through
:func:`custom_task`, and every stage serves it exactly like the paper's.

This module imports nothing but the standard library, so that the workflow's target functions
can use it while Snakemake parses the rules, without loading torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "SURVIVAL_COLUMNS",
    "TASKS",
    "Task",
    "TaskError",
    "custom_task",
    "paper_task",
]

KINDS: tuple[str, ...] = ("multiclass", "binary", "binary_survival")
SURVIVAL_COLUMNS: tuple[str, str] = ("survival_time", "event")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

# Test metrics of each kind, and the metric that selects a linear model's C on validation (or
# in CV) and a fine-tuned checkpoint. "c_index" is reported only where survival data exist.
_TEST_METRICS = {
    "multiclass": ("mean_average_precision", "balanced_accuracy"),
    "binary": ("roc_auc", "average_precision"),
    "binary_survival": ("roc_auc", "c_index"),
}
_SEARCH_METRIC = {"multiclass": "accuracy", "binary": "roc_auc", "binary_survival": "roc_auc"}
_SELECTION_METRIC = {
    "multiclass": "mean_average_precision",
    "binary": "roc_auc",
    "binary_survival": "roc_auc",
}


class TaskError(ValueError):
    """A task that cannot exist: unknown name, bad kind, class count or head."""


@dataclass(frozen=True)
class Task:
    """One supervised task on a label column of the lesion tables.

    Attributes:
        id: 1, 2 or 3 for the paper's tasks, else the custom task's name; written as ``task``
            into every output of the task.
        label_column: the table column holding the label (integer class indices).
        kind: ``multiclass``, ``binary`` (labels 0/1) or ``binary_survival`` (0/1, with optional
            ``survival_time``/``event`` columns for Harrell's C-index; ``survival == 0`` is the
            event, so the risk is the probability of class 0).
        n_classes: classes of a multiclass task; 2 for the binary kinds.
        hidden: hidden layer sizes of the fine-tuning head between the features and the logits.
        display: a short human name for reports.
        supervised_init: whether the ``supervised`` initialisation (the backbone of Task 1's
            random-init model) applies; not for Task 1 itself.
        label_note: what the label values mean, for messages (e.g. "alive at 2 years").
    """

    id: int | str
    label_column: str
    kind: str
    n_classes: int
    hidden: tuple[int, ...]
    display: str
    supervised_init: bool = True
    label_note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TaskError(f"task {self.id}: kind must be one of {', '.join(KINDS)}")
        if self.multiclass and self.n_classes < 3:
            raise TaskError(f"task {self.id}: a multiclass task needs n_classes >= 3")
        if not self.multiclass and self.n_classes != 2:
            raise TaskError(f"task {self.id}: a {self.kind} task has n_classes 2")
        if any(size < 1 for size in self.hidden):
            raise TaskError(f"task {self.id}: hidden layer sizes must be >= 1")

    @property
    def key(self) -> str:
        """The task's name in config keys and output folders: ``task2``, or the custom name."""
        return f"task{self.id}" if isinstance(self.id, int) else self.id

    @property
    def multiclass(self) -> bool:
        """Whether the head has one logit per class (cross-entropy) rather than one (BCE)."""
        return self.kind == "multiclass"

    @property
    def survival(self) -> bool:
        """Whether ``survival_time``/``event`` columns are read for the C-index."""
        return self.kind == "binary_survival"

    @property
    def n_outputs(self) -> int:
        """Logits of the head: ``n_classes`` for multiclass, else 1."""
        return self.n_classes if self.multiclass else 1

    @property
    def loss(self) -> str:
        """``"ce"`` (cross-entropy over classes) or ``"bce"`` (BCE with logits)."""
        return "ce" if self.multiclass else "bce"

    @property
    def test_metrics(self) -> tuple[str, ...]:
        """Names of the test metrics, in report order."""
        return _TEST_METRICS[self.kind]

    @property
    def search_metric(self) -> str:
        """Objective of the linear model's search over C: ``accuracy`` or ``roc_auc``."""
        return _SEARCH_METRIC[self.kind]

    @property
    def selection_metric(self) -> str:
        """Validation metric that keeps a fine-tuned checkpoint: mAP or ROC-AUC."""
        return _SELECTION_METRIC[self.kind]

    @property
    def label_rule(self) -> str:
        """The allowed label values in words: ``0 or 1``, or ``an integer 0..K-1``."""
        rule = "0 or 1" if self.n_classes == 2 else f"an integer 0..{self.n_classes - 1}"
        return f"{rule} ({self.label_note})" if self.label_note else rule

    def head_dims(self, in_dim: int) -> list[int]:
        """Layer sizes of the fine-tuning head for features of size ``in_dim``."""
        return [in_dim, *self.hidden, self.n_outputs]


TASKS: dict[int, Task] = {
    1: Task(
        1,
        "Coarse_lesion_type",
        "multiclass",
        8,
        (2048,),
        "lesion type",
        supervised_init=False,
        label_note="DeepLesion's coarse lesion type minus one",
    ),
    2: Task(2, "malignancy", "binary", 2, (2048,), "malignancy"),
    3: Task(
        3,
        "survival",
        "binary_survival",
        2,
        (2048, 512, 256),
        "2-year survival",
        label_note="alive at 2 years",
    ),
}
"""The paper's tasks by number (docs/method.md section 5)."""


def paper_task(task: int | str | Task) -> Task:
    """The paper's task ``task`` (1, 2, 3, or their keys ``task1`` ...); a Task passes through.

    Raises:
        TaskError: not one of the paper's tasks.
    """
    if isinstance(task, Task):
        return task
    number = str(task).removeprefix("task")
    if number.isdigit() and int(number) in TASKS:
        return TASKS[int(number)]
    raise TaskError(f"unknown task {task!r}; the paper's tasks are {sorted(TASKS)}")


def custom_task(
    name: str,
    label_column: str,
    kind: str = "binary",
    *,
    n_classes: int | None = None,
    hidden: tuple[int, ...] | list[int] = (2048,),
    display: str | None = None,
) -> Task:
    """A task of the user's on ``label_column``, served by every stage like the paper's.

    Args:
        name: its name in outputs (``results/<name>/...``): a letter, then letters, digits,
            ``_`` or ``-``; not ``task1``-``task3``.
        label_column: the table column holding the labels.
        kind: one of :data:`KINDS`.
        n_classes: classes of a multiclass task (required then); binary kinds have 2.
        hidden: hidden sizes of its fine-tuning head (default the paper's Task 2 head).
        display: a human name (default the label column).

    Raises:
        TaskError: a bad name, kind, class count or head.
    """
    if not _NAME.fullmatch(name) or name in {t.key for t in TASKS.values()}:
        raise TaskError(
            f"custom task name {name!r}: use a letter then letters, digits, '_' or '-', "
            "and not a paper task's key (task1, task2, task3)"
        )
    if kind == "multiclass" and n_classes is None:
        raise TaskError(f"task {name}: a multiclass task needs n_classes")
    classes = 2 if n_classes is None else int(n_classes)
    return Task(name, label_column, kind, classes, tuple(hidden), display or label_column)
