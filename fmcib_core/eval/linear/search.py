"""The search over the logistic regression's C: seeded Optuna TPE on validation or on CV folds.

Standard scaling is fitted on the rows a model is fitted on; the objective is the task's search
metric (docs/method.md section 6).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import optuna
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from fmcib_core.eval.linear.model import LinearModel
from fmcib_core.metrics.scores import roc_auc

__all__ = [
    "SEARCH_METRICS",
    "C_RANGE",
    "MAX_ITER",
    "Fitter",
    "cv_score",
    "final_model",
    "search_c",
    "validation_score",
]

log = logging.getLogger(__name__)

C_RANGE = (1e-6, 1e3)
MAX_ITER = 1000

Split = tuple[np.ndarray, np.ndarray]


class Fitter:
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


def _accuracy(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y))


def _roc_auc(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    return roc_auc(y, model.predict_proba(X)[:, 1])


# A task's search metric (fmcib_core.tasks.Task.search_metric) -> how a fitted model scores.
_SCORES: dict[str, Callable[[LogisticRegression, np.ndarray, np.ndarray], float]] = {
    "accuracy": _accuracy,
    "roc_auc": _roc_auc,
}


def validation_score(
    metric: str, data: dict[str, Split], fitter: Fitter, cv_folds: int, seed: int
) -> Callable[[float], float]:
    """Objective of C: ``metric`` on val of a model fit on train (both scaled by train)."""
    score = _SCORES[metric]
    scaler = StandardScaler().fit(data["train"][0])
    X_train, y_train = scaler.transform(data["train"][0]), data["train"][1]
    X_val, y_val = scaler.transform(data["val"][0]), data["val"][1]
    return lambda c: score(fitter.fit(X_train, y_train, c), X_val, y_val)


def cv_score(
    metric: str, data: dict[str, Split], fitter: Fitter, cv_folds: int, seed: int
) -> Callable[[float], float]:
    """Objective of C: mean ``metric`` over seeded stratified folds of train."""
    score = _SCORES[metric]
    X, y = data["train"]
    folds = []
    splitter = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
    for fit_rows, score_rows in splitter.split(X, y):
        scaler = StandardScaler().fit(X[fit_rows])
        fold = (scaler.transform(X[fit_rows]), y[fit_rows])
        folds.append((*fold, scaler.transform(X[score_rows]), y[score_rows]))
    return lambda c: float(np.mean([score(fitter.fit(a, b, c), u, v) for a, b, u, v in folds]))


def final_model(train: Split, c: float, fitter: Fitter) -> LinearModel:
    """The scaler and logistic regression fit on all of train with ``c``."""
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


def search_c(
    objective: Callable[[float], float], n_trials: int, seed: int, progress: bool
) -> tuple[float, float]:
    """The best C over ``n_trials`` of a seeded TPE sampler (log-uniform in ``C_RANGE``)."""
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


SEARCH_METRICS: tuple[str, ...] = tuple(_SCORES)
"""The objectives the search over C can maximise."""
