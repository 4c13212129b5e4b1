"""The fitted model of linear evaluation as plain arrays, and its ``.npz`` file (no pickle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, softmax

from fmcib_core.io.atomic import atomic_path

__all__ = ["LinearEvalError", "LinearModel", "load_linear_model", "save_linear_model"]

_MODEL_KEYS = ("coef", "intercept", "classes", "scaler_mean", "scaler_scale", "C")


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


def save_linear_model(path: str | Path, result: object) -> None:
    """Write the model's arrays to an ``.npz`` file (no pickle) through :func:`atomic_path`.

    ``result`` is a :class:`LinearModel` or anything with one as its ``model`` attribute (a
    :class:`~fmcib_core.eval.linear.fit.LinearEvalResult`).
    """
    model = result if isinstance(result, LinearModel) else result.model
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
