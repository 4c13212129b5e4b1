"""Linear evaluation of frozen features (docs/method.md section 6).

Standard scaling fitted on train, L2 logistic regression (lbfgs; multinomial for a multiclass
task) whose inverse regularisation C is searched by a seeded Optuna TPE sampler on the validation
set, or by stratified k-fold CV on train when there is no validation set; the final model is fit
on train and reported on test with seeded bootstrap confidence intervals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fmcib_core.eval.linear.model import LinearEvalError, LinearModel
from fmcib_core.eval.linear.search import (
    C_RANGE,
    MAX_ITER,
    SEARCH_METRICS,
    Fitter,
    cv_score,
    final_model,
    search_c,
    validation_score,
)
from fmcib_core.io.labels import LabelColumnError, task_labels
from fmcib_core.io.predictions import with_probabilities
from fmcib_core.metrics.evaluate import BOOTSTRAP_ALPHA, BOOTSTRAP_SAMPLES, task_metrics
from fmcib_core.metrics.scores import BootstrapResult, UndefinedMetricError, finite, metrics_json
from fmcib_core.tasks import SURVIVAL_COLUMNS, Task, TaskError, paper_task

__all__ = [
    "LinearEvalResult",
    "as_task",
    "fit_linear_eval",
    "labels_from_table",
    "prediction_table",
]

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]
TestSplit = Split | tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]


def as_task(task: int | str | Task) -> Task:
    """``task`` as a :class:`Task`: a Task as it is, else the paper's task of that number.

    Raises:
        LinearEvalError: not a Task and not one of the paper's tasks.
    """
    try:
        return paper_task(task)
    except TaskError as err:
        raise LinearEvalError(str(err)) from err


@dataclass(frozen=True, eq=False)
class LinearEvalResult:
    """Everything :func:`fit_linear_eval` found.

    Attributes:
        task: the task evaluated.
        model: the final model (fit on train with ``model.C``).
        selection: ``"validation"`` or ``"cv"`` (stratified k-fold on train).
        selection_metric: the task's search metric, ``"accuracy"`` or ``"roc_auc"``.
        selection_score: the best C's validation (or mean CV) score.
        cv_folds: folds used, or None with a validation set.
        n_trials: Optuna trials run.
        fits_not_converged: search and final fits that hit ``max_iter``.
        n_rows: rows used per split (``val`` None without one).
        dropped: rows dropped per split for a missing feature or label.
        test_proba: (N_test, K) probabilities for every input test row, NaN where a feature is
            missing (rows with a missing label are predicted but not scored).
        test_metrics: metric name -> bootstrap result on the scored test rows.
        metric_rows: metric name -> rows it was computed on.
        seed: seed of the sampler, the CV shuffle and the bootstrap.
    """

    task: Task
    model: LinearModel
    selection: str
    selection_metric: str
    selection_score: float
    cv_folds: int | None
    n_trials: int
    fits_not_converged: int
    n_rows: dict[str, int | None]
    dropped: dict[str, int | None]
    test_proba: np.ndarray
    test_metrics: dict[str, BootstrapResult]
    metric_rows: dict[str, int]
    seed: int
    n_bootstrap: int = BOOTSTRAP_SAMPLES

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no arrays; NaN becomes None)."""
        metrics = metrics_json(self.test_metrics, self.metric_rows)
        return {
            "n_rows": dict(self.n_rows),
            "rows_dropped": dict(self.dropped),
            "model_selection": {
                "method": self.selection,
                "metric": self.selection_metric,
                "score": finite(self.selection_score),
                "cv_folds": self.cv_folds,
                "best_C": self.model.C,
                "n_trials": self.n_trials,
                "sampler": "optuna TPESampler",
                "C_range_log_uniform": list(C_RANGE),
                "fits_not_converged": self.fits_not_converged,
            },
            "test_metrics": metrics,
            "bootstrap": {"n_resamples": self.n_bootstrap, "alpha": BOOTSTRAP_ALPHA},
            "seed": self.seed,
        }


def labels_from_table(
    table: pd.DataFrame, task: int | str | Task, *, source: str = "table"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the task's label column as float (NaN where missing) and any survival columns.

    :func:`fmcib_core.io.labels.task_labels`, with its errors as :class:`LinearEvalError`.

    Raises:
        LinearEvalError: unknown task, label column missing or not numeric, or only one of
            ``survival_time``/``event`` present.
    """
    task = as_task(task)
    try:
        return task_labels(table, task, source=source)
    except LabelColumnError as err:
        raise LinearEvalError(str(err)) from err


def fit_linear_eval(
    train: Split,
    val: Split | None,
    test: TestSplit,
    *,
    task: int | str | Task,
    n_trials: int,
    seed: int,
    cv_folds: int = 10,
    n_bootstrap: int = BOOTSTRAP_SAMPLES,
    progress: bool = False,
    search_metric: str | None = None,
) -> LinearEvalResult:
    """Search C, fit the final model on train and score it on test (docs/method.md section 6).

    Rows with a non-finite feature or a missing label are dropped from X and y together, per
    split, and counted. A survival task's C-index uses the predicted probability of class 0
    (the event before the horizon) as the risk, on test rows with a known ``survival_time`` and
    ``event``.

    Args:
        train: ``(X (N, F), y (N,))``.
        val: the same, or None to select C by stratified ``cv_folds``-fold CV on train.
        test: ``(X, y)`` or ``(X, y, extra)`` with ``extra`` holding (N,) ``survival_time`` and
            ``event`` arrays (NaN where unknown) for a survival task's C-index; other tasks
            ignore it.
        task: a :class:`Task` (its search metric and test metrics), or the number of a paper
            task.
        n_trials: Optuna trials.
        seed: seeds the TPE sampler, the CV shuffle and the bootstrap.
        cv_folds: folds when ``val`` is None.
        n_bootstrap: bootstrap resamples of the test metrics' 95% CIs.
        progress: show a tqdm bar over trials.
        search_metric: the objective of the search over C, ``accuracy`` or ``roc_auc``
            (``roc_auc`` needs a binary task); default the task's (docs/method.md section 6).

    Raises:
        LinearEvalError: every problem with the inputs, one per line.
    """
    task = _check_arguments(task, n_trials, cv_folds, search_metric)
    metric = search_metric or task.search_metric
    splits = {"train": train} | ({"val": val} if val is not None else {}) | {"test": test[:2]}
    problems: list[str] = []
    kept = {name: _complete_rows(name, *split, problems) for name, split in splits.items()}
    given = dict(test[2]) if len(test) == 3 and task.survival else {}
    extra = _survival_arrays(given, len(kept["test"][1]), problems)
    if problems:
        raise LinearEvalError("\n".join(problems))
    data = {name: (X[mask], y[mask].astype(np.int64)) for name, (X, y, mask) in kept.items()}
    _check_labels(task, data, None if val is not None else cv_folds)
    dropped = {n: int((~kept[n][2]).sum()) if n in kept else None for n in ("train", "val", "test")}
    for name, count in dropped.items():
        if count:
            log.warning("%s: dropped %d rows with a missing feature or label", name, count)

    fitter = Fitter()
    score_fn = validation_score if val is not None else cv_score
    best_c, best_score = search_c(
        score_fn(metric, data, fitter, cv_folds, seed), n_trials, seed, progress
    )
    model = final_model(data["train"], best_c, fitter)
    if fitter.unconverged:
        log.warning(
            "%d logistic-regression fits stopped at max_iter=%d", fitter.unconverged, MAX_ITER
        )

    test_X, _, mask = kept["test"]
    finite = np.isfinite(test_X).all(axis=1)
    test_proba = np.full((len(test_X), len(model.classes)), np.nan)
    test_proba[finite] = model.predict_proba(test_X[finite])
    extra = {k: v[mask] for k, v in extra.items()}
    try:
        metrics, rows = task_metrics(
            task, data["test"][1], test_proba[mask], model.classes, extra, seed, n_bootstrap
        )
    except UndefinedMetricError as err:
        raise LinearEvalError(str(err)) from err
    return LinearEvalResult(
        task=task,
        model=model,
        selection="validation" if val is not None else "cv",
        selection_metric=metric,
        selection_score=best_score,
        cv_folds=None if val is not None else cv_folds,
        n_trials=n_trials,
        fits_not_converged=fitter.unconverged,
        n_rows={n: len(data[n][1]) if n in data else None for n in ("train", "val", "test")},
        dropped=dropped,
        test_proba=test_proba,
        test_metrics=metrics,
        metric_rows=rows,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )


def prediction_table(
    table: pd.DataFrame, result: LinearEvalResult, *, source: str = "test"
) -> pd.DataFrame:
    """Return the test table's columns followed by the predicted probabilities.

    The layout of :mod:`fmcib_core.io.predictions`: binary tasks give one column ``prob``
    (probability of label 1); multiclass tasks give ``prob_<class>`` per class seen in train
    (``prob_0`` ... ``prob_{K-1}`` when train holds classes 0 .. K-1). Rows whose features were
    missing hold NaN.

    Raises:
        LinearEvalError: the row counts differ or a probability column name is already taken.
    """
    try:
        return with_probabilities(
            table, result.test_proba, result.model.classes, result.task.multiclass
        )
    except ValueError as err:
        raise LinearEvalError(f"{source}: {err}") from err


def _check_arguments(
    task: int | str | Task, n_trials: int, cv_folds: int, search_metric: str | None = None
) -> Task:
    problems = []
    try:
        task = as_task(task)
    except LinearEvalError as err:
        problems.append(str(err))
    if search_metric not in (None, *SEARCH_METRICS):
        problems.append(f"search metric must be one of {SEARCH_METRICS}, got {search_metric!r}")
    elif search_metric == "roc_auc" and isinstance(task, Task) and task.multiclass:
        problems.append("search metric roc_auc needs a binary task; use accuracy")
    if n_trials < 1:
        problems.append(f"n_trials must be >= 1, got {n_trials}")
    if cv_folds < 2:
        problems.append(f"cv_folds must be >= 2, got {cv_folds}")
    if problems:
        raise LinearEvalError("\n".join(problems))
    return task


def _complete_rows(
    name: str, X: np.ndarray, y: np.ndarray, problems: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return X, y as float arrays and the mask of rows with every feature and the label."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 1 or y.ndim != 1 or len(X) != len(y):
        problems.append(
            f"{name}: need features (N, F >= 1) and labels (N,); got {X.shape} and {y.shape}"
        )
        return X, y, np.zeros(len(y), dtype=bool)
    mask = np.isfinite(X).all(axis=1) & np.isfinite(y)
    if not mask.any():
        problems.append(f"{name}: no row has every feature and the label")
    elif not np.array_equal(y[mask], np.round(y[mask])):
        problems.append(f"{name}: labels must be whole numbers")
    return X, y, mask


def _survival_arrays(
    extra: dict[str, np.ndarray], n_rows: int, problems: list[str]
) -> dict[str, np.ndarray]:
    """Check the optional test ``survival_time``/``event`` arrays; NaN marks an unknown value."""
    if not extra:
        return {}
    if sorted(extra) != sorted(SURVIVAL_COLUMNS):
        problems.append(
            f"test: survival data must hold exactly {list(SURVIVAL_COLUMNS)}, got {sorted(extra)}"
        )
        return {}
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in extra.items()}
    for name, values in arrays.items():
        if values.shape != (n_rows,):
            problems.append(f"test: '{name}' has shape {values.shape}, expected ({n_rows},)")
            return {}
    event = arrays["event"]
    if not np.isin(event[np.isfinite(event)], (0, 1)).all():
        problems.append("test: 'event' must be 0 or 1")
    if (arrays["survival_time"] < 0).any():
        problems.append("test: 'survival_time' must not be negative")
    return arrays


def _check_labels(task: Task, data: dict[str, Split], cv_folds: int | None) -> None:
    problems = []
    widths = {name: X.shape[1] for name, (X, _) in data.items()}
    if len(set(widths.values())) > 1:
        problems.append(f"feature dimensions differ between splits: {widths}")
    train_classes = np.unique(data["train"][1])
    for name, (_, y) in data.items():
        classes = np.unique(y)
        if not task.multiclass and not np.isin(classes, (0, 1)).all():
            problems.append(
                f"{name}: task {task.id} labels must be 0 or 1, found {classes.tolist()}"
            )
        # a multiclass search scores accuracy, which a single-class validation set still has
        if len(classes) < 2 and (name != "val" or not task.multiclass):
            problems.append(f"{name}: a single class ({classes.tolist()}); need at least two")
        unseen = np.setdiff1d(classes, train_classes)
        if name != "train" and len(unseen):
            problems.append(f"{name}: classes {unseen.tolist()} do not occur in train")
    if cv_folds is not None:
        values, counts = np.unique(data["train"][1], return_counts=True)
        few = {int(v): int(c) for v, c in zip(values, counts, strict=True) if c < cv_folds}
        if few:
            problems.append(f"train: classes with fewer rows than the {cv_folds} CV folds: {few}")
    if problems:
        raise LinearEvalError("\n".join(problems))
