"""Linear evaluation of frozen features (METHOD section 6).

Standard scaling fitted on train, L2 logistic regression (lbfgs, multinomial for Task 1) whose
inverse regularisation C is searched by a seeded Optuna TPE sampler on the validation set, or by
stratified k-fold CV on train when there is no validation set; the final model is fit on train and
reported on test with seeded bootstrap confidence intervals.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from fmcib_core.eval.metrics import (
    BootstrapResult,
    UndefinedMetricError,
    average_precision,
    balanced_accuracy,
    bootstrap_ci,
    harrell_c_index,
    mean_average_precision,
    metrics_json,
    roc_auc,
)
from fmcib_core.io.atomic import atomic_path
from fmcib_core.models.heads import TASKS

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "C_RANGE",
    "SURVIVAL_COLUMNS",
    "TASK_LABELS",
    "LinearEvalError",
    "LinearEvalResult",
    "LinearModel",
    "fit_linear_eval",
    "labels_from_table",
    "load_linear_model",
    "prediction_table",
    "save_linear_model",
    "task_metrics",
]

log = logging.getLogger(__name__)

TASK_LABELS: dict[int, str] = {task: spec.label_column for task, spec in TASKS.items()}
SURVIVAL_COLUMNS = ("survival_time", "event")
C_RANGE = (1e-6, 1e3)
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_ALPHA = 0.05
MAX_ITER = 1000
_MODEL_KEYS = ("coef", "intercept", "classes", "scaler_mean", "scaler_scale", "C")

Split = tuple[np.ndarray, np.ndarray]
TestSplit = Split | tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]


class LinearEvalError(ValueError):
    """Inputs the linear evaluation cannot use; the message lists every problem, one per line."""


@dataclass(frozen=True, eq=False)
class LinearModel:
    """A fitted scaler + logistic regression, as plain arrays.

    Attributes:
        coef: (1, F) for two classes (the logit of ``classes[1]``), else (K, F).
        intercept: (1,) or (K,).
        classes: (K,) class labels, the columns of :meth:`predict_proba`.
        scaler_mean: (F,) train feature means.
        scaler_scale: (F,) train feature standard deviations (1 where constant).
        C: inverse L2 regularisation strength.
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    C: float

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) of features (N, F), as scikit-learn's ``predict_proba``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.scaler_mean.shape[0]:
            raise ValueError(f"expected features (N, {self.scaler_mean.shape[0]}), got {X.shape}")
        logits = ((X - self.scaler_mean) / self.scaler_scale) @ self.coef.T + self.intercept
        if len(self.classes) == 2:
            positive = expit(logits[:, 0])
            return np.column_stack([1.0 - positive, positive])
        return softmax(logits, axis=1)


@dataclass(frozen=True, eq=False)
class LinearEvalResult:
    """Everything :func:`fit_linear_eval` found.

    Attributes:
        task: 1, 2 or 3.
        model: the final model (fit on train with ``model.C``).
        selection: ``"validation"`` or ``"cv"`` (stratified k-fold on train).
        selection_metric: ``"accuracy"`` (Task 1) or ``"roc_auc"``.
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

    task: int
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
                "score": _finite(self.selection_score),
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
    table: pd.DataFrame, task: int, *, source: str = "table"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the task's label column as float (NaN where missing) and any survival columns.

    The survival columns (``survival_time``, ``event``) are read for Task 3 only.

    Raises:
        LinearEvalError: unknown task, label column missing or not numeric, or only one of
            ``survival_time``/``event`` present.
    """
    if task not in TASK_LABELS:
        raise LinearEvalError(f"unknown task {task}; expected one of {sorted(TASK_LABELS)}")
    label = TASK_LABELS[task]
    problems = []
    if label not in table.columns:
        problems.append(f"{source}: label column '{label}' is missing (task {task})")
    present = [c for c in SURVIVAL_COLUMNS if c in table.columns] if task == 3 else []
    if len(present) == 1:
        problems.append(
            f"{source}: has '{present[0]}' but not its partner; give both of "
            f"{list(SURVIVAL_COLUMNS)} or neither"
        )
    for col in ([label] if label in table.columns else []) + present:
        if not pd.api.types.is_numeric_dtype(table[col].dtype):
            problems.append(f"{source}: column '{col}' is not numeric ({table[col].dtype})")
    if problems:
        raise LinearEvalError("\n".join(problems))
    y = table[label].to_numpy(dtype=np.float64, na_value=np.nan)
    extra = {c: table[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in present}
    return y, extra


def fit_linear_eval(
    train: Split,
    val: Split | None,
    test: TestSplit,
    *,
    task: int,
    n_trials: int,
    seed: int,
    cv_folds: int = 10,
    n_bootstrap: int = BOOTSTRAP_SAMPLES,
    progress: bool = False,
) -> LinearEvalResult:
    """Search C, fit the final model on train and score it on test (METHOD section 6).

    Rows with a non-finite feature or a missing label are dropped from X and y together, per
    split, and counted. Task 3's C-index uses the predicted probability of ``survival == 0``
    (death within two years) as the risk, on test rows with a known ``survival_time`` and
    ``event``.

    Args:
        train: ``(X (N, F), y (N,))``.
        val: the same, or None to select C by stratified ``cv_folds``-fold CV on train.
        test: ``(X, y)`` or ``(X, y, extra)`` with ``extra`` holding (N,) ``survival_time`` and
            ``event`` arrays (NaN where unknown) for Task 3's C-index; other tasks ignore it.
        task: 1 (multiclass; objective accuracy, test mAP and balanced accuracy), 2 (objective
            ROC-AUC; test AUC and AP) or 3 (objective ROC-AUC; test AUC and C-index).
        n_trials: Optuna trials.
        seed: seeds the TPE sampler, the CV shuffle and the bootstrap.
        cv_folds: folds when ``val`` is None.
        n_bootstrap: bootstrap resamples of the test metrics' 95% CIs.
        progress: show a tqdm bar over trials.

    Raises:
        LinearEvalError: every problem with the inputs, one per line.
    """
    _check_arguments(task, n_trials, cv_folds)
    splits = {"train": train} | ({"val": val} if val is not None else {}) | {"test": test[:2]}
    problems: list[str] = []
    kept = {name: _complete_rows(name, *split, problems) for name, split in splits.items()}
    given = dict(test[2]) if len(test) == 3 and task == 3 else {}
    extra = _survival_arrays(given, len(kept["test"][1]), problems)
    if problems:
        raise LinearEvalError("\n".join(problems))
    data = {name: (X[mask], y[mask].astype(np.int64)) for name, (X, y, mask) in kept.items()}
    _check_labels(task, data, None if val is not None else cv_folds)
    dropped = {n: int((~kept[n][2]).sum()) if n in kept else None for n in ("train", "val", "test")}
    for name, count in dropped.items():
        if count:
            log.warning("%s: dropped %d rows with a missing feature or label", name, count)

    fitter = _Fitter()
    score_fn = _validation_score if val is not None else _cv_score
    best_c, best_score = _search_c(
        score_fn(task, data, fitter, cv_folds, seed), n_trials, seed, progress
    )
    model = _final_model(data["train"], best_c, fitter)
    if fitter.unconverged:
        log.warning(
            "%d logistic-regression fits stopped at max_iter=%d", fitter.unconverged, MAX_ITER
        )

    test_X, _, mask = kept["test"]
    finite = np.isfinite(test_X).all(axis=1)
    test_proba = np.full((len(test_X), len(model.classes)), np.nan)
    test_proba[finite] = model.predict_proba(test_X[finite])
    extra = {k: v[mask] for k, v in extra.items()}
    metrics, rows = task_metrics(
        task, data["test"][1], test_proba[mask], model.classes, extra, seed, n_bootstrap
    )
    return LinearEvalResult(
        task=task,
        model=model,
        selection="validation" if val is not None else "cv",
        selection_metric="accuracy" if task == 1 else "roc_auc",
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

    Tasks 2 and 3 give one column ``prob`` (probability of label 1); Task 1 gives ``prob_<class>``
    per class seen in train (``prob_0`` ... ``prob_{K-1}`` when train holds classes 0 .. K-1).
    Rows whose features were missing hold NaN.

    Raises:
        LinearEvalError: the row counts differ or a probability column name is already taken.
    """
    classes = result.model.classes.tolist()
    binary = result.task != 1
    names = ["prob"] if binary else [f"prob_{c}" for c in classes]
    taken = [n for n in names if n in table.columns]
    if taken or len(table) != len(result.test_proba):
        raise LinearEvalError(
            f"{source}: cannot add predictions ({len(result.test_proba)} rows for "
            f"{len(table)}; columns already present: {taken})"
        )
    proba = result.test_proba[:, 1:] if binary else result.test_proba
    block = pd.DataFrame(proba, columns=names)
    return pd.concat([table.reset_index(drop=True), block], axis=1)


def save_linear_model(path: str | Path, result: LinearEvalResult | LinearModel) -> None:
    """Write the model's arrays to an ``.npz`` file (no pickle) through :func:`atomic_path`."""
    model = result.model if isinstance(result, LinearEvalResult) else result
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            coef=model.coef,
            intercept=model.intercept,
            classes=model.classes,
            scaler_mean=model.scaler_mean,
            scaler_scale=model.scaler_scale,
            C=np.float64(model.C),
        )


def load_linear_model(path: str | Path) -> LinearModel:
    """Read a model written by :func:`save_linear_model`.

    Raises:
        LinearEvalError: a key is missing or the shapes disagree.
    """
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _MODEL_KEYS if k not in npz.files]
        if missing:
            raise LinearEvalError(f"{path}: linear model file lacks {missing}")
        arrays = {k: npz[k] for k in _MODEL_KEYS}
    model = LinearModel(**{k: v for k, v in arrays.items() if k != "C"}, C=float(arrays["C"]))
    n_out, n_features = model.coef.shape
    k = len(model.classes)
    if (
        n_out != (1 if k == 2 else k)
        or model.intercept.shape != (n_out,)
        or model.scaler_mean.shape != (n_features,)
        or model.scaler_scale.shape != (n_features,)
    ):
        raise LinearEvalError(f"{path}: linear model arrays have inconsistent shapes")
    return model


def _check_arguments(task: int, n_trials: int, cv_folds: int) -> None:
    problems = []
    if task not in TASK_LABELS:
        problems.append(f"unknown task {task}; expected one of {sorted(TASK_LABELS)}")
    if n_trials < 1:
        problems.append(f"n_trials must be >= 1, got {n_trials}")
    if cv_folds < 2:
        problems.append(f"cv_folds must be >= 2, got {cv_folds}")
    if problems:
        raise LinearEvalError("\n".join(problems))


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


def _check_labels(task: int, data: dict[str, Split], cv_folds: int | None) -> None:
    problems = []
    widths = {name: X.shape[1] for name, (X, _) in data.items()}
    if len(set(widths.values())) > 1:
        problems.append(f"feature dimensions differ between splits: {widths}")
    train_classes = np.unique(data["train"][1])
    for name, (_, y) in data.items():
        classes = np.unique(y)
        if task != 1 and not np.isin(classes, (0, 1)).all():
            problems.append(f"{name}: task {task} labels must be 0 or 1, found {classes.tolist()}")
        if len(classes) < 2 and (name != "val" or task != 1):
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


class _Fitter:
    """Fits logistic regressions and counts those that stop at ``max_iter`` unconverged."""

    def __init__(self) -> None:
        self.unconverged = 0

    def fit(self, X: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
        # l1_ratio=0 is the L2 penalty (``penalty`` is deprecated since scikit-learn 1.8); with
        # three or more classes lbfgs minimises the multinomial loss by default.
        model = LogisticRegression(C=c, l1_ratio=0.0, solver="lbfgs", max_iter=MAX_ITER)
        with warnings.catch_warnings():
            # Counted below and logged once instead of one warning per trial.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        if int(np.max(model.n_iter_)) >= MAX_ITER:
            self.unconverged += 1
        return model


def _score(task: int, model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    if task == 1:
        return float(np.mean(model.predict(X) == y))
    return roc_auc(y, model.predict_proba(X)[:, 1])


def _validation_score(
    task: int, data: dict[str, Split], fitter: _Fitter, cv_folds: int, seed: int
) -> Callable[[float], float]:
    scaler = StandardScaler().fit(data["train"][0])
    X_train, y_train = scaler.transform(data["train"][0]), data["train"][1]
    X_val, y_val = scaler.transform(data["val"][0]), data["val"][1]
    return lambda c: _score(task, fitter.fit(X_train, y_train, c), X_val, y_val)


def _cv_score(
    task: int, data: dict[str, Split], fitter: _Fitter, cv_folds: int, seed: int
) -> Callable[[float], float]:
    X, y = data["train"]
    folds = []
    splitter = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
    for fit_rows, score_rows in splitter.split(X, y):
        scaler = StandardScaler().fit(X[fit_rows])
        fold = (scaler.transform(X[fit_rows]), y[fit_rows])
        folds.append((*fold, scaler.transform(X[score_rows]), y[score_rows]))
    return lambda c: float(
        np.mean([_score(task, fitter.fit(a, b, c), u, v) for a, b, u, v in folds])
    )


def _final_model(train: Split, c: float, fitter: _Fitter) -> LinearModel:
    X, y = train
    scaler = StandardScaler().fit(X)
    fitted = fitter.fit(scaler.transform(X), y, c)
    return LinearModel(
        coef=fitted.coef_.copy(),
        intercept=fitted.intercept_.copy(),
        classes=fitted.classes_.copy(),
        scaler_mean=scaler.mean_.copy(),
        scaler_scale=scaler.scale_.copy(),
        C=float(c),
    )


def _search_c(
    objective: Callable[[float], float], n_trials: int, seed: int, progress: bool
) -> tuple[float, float]:
    with (
        _optuna_verbosity(optuna.logging.WARNING),
        tqdm(total=n_trials, desc="C search", disable=not progress) as bar,
    ):
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        study.optimize(
            lambda trial: objective(trial.suggest_float("C", *C_RANGE, log=True)),
            n_trials=n_trials,
            callbacks=[lambda _study, _trial: bar.update()],
        )
    best = study.best_trial
    log.info("best C %.4g, score %.4f over %d trials", best.params["C"], best.value, n_trials)
    return float(best.params["C"]), float(best.value)


@contextlib.contextmanager
def _optuna_verbosity(level: int) -> Iterator[None]:
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def task_metrics(
    task: int,
    y: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    extra: dict[str, np.ndarray],
    seed: int,
    n_bootstrap: int = BOOTSTRAP_SAMPLES,
) -> tuple[dict[str, BootstrapResult], dict[str, int]]:
    """A task's test metrics with seeded bootstrap 95% CIs, and the rows each one used.

    Task 1: mean average precision and balanced accuracy; Task 2: ROC-AUC and average
    precision; Task 3: ROC-AUC, plus Harrell's C-index when ``extra`` holds ``survival_time``
    and ``event``. ``proba`` is (N, K) with columns in ``classes`` order.
    """

    def ci(fn: Callable[..., float], *arrays: np.ndarray) -> BootstrapResult:
        return bootstrap_ci(fn, *arrays, n=n_bootstrap, seed=seed, alpha=BOOTSTRAP_ALPHA)

    if task == 1:
        predicted = classes[np.argmax(proba, axis=1)]
        metrics = {
            "mean_average_precision": ci(
                lambda a, b: mean_average_precision(a, b, classes), y, proba
            ),
            "balanced_accuracy": ci(balanced_accuracy, y, predicted),
        }
        return metrics, dict.fromkeys(metrics, len(y))
    positive = proba[:, 1]
    metrics = {"roc_auc": ci(roc_auc, y, positive)}
    if task == 2:
        metrics["average_precision"] = ci(average_precision, y, positive)
    rows = dict.fromkeys(metrics, len(y))
    if task == 3 and extra:
        time, event = extra["survival_time"], extra["event"]
        known = np.isfinite(time) & np.isfinite(event)
        # survival == 1 means alive at two years, so the risk is the probability of class 0.
        try:
            metrics["c_index"] = ci(harrell_c_index, time[known], event[known], proba[known, 0])
        except UndefinedMetricError as err:
            raise LinearEvalError(
                f"test: {err} among {int(known.sum())} rows with survival data"
            ) from err
        rows["c_index"] = int(known.sum())
    return metrics, rows


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
