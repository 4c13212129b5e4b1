"""Per-task test metrics and the fine-tuning selection score, against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from fmcib_core.metrics import UndefinedMetricError, selection_score, task_metrics
from fmcib_core.tasks import TASKS, custom_task


@pytest.mark.parametrize("multiclass", [True, False])
def test_selection_score_matches_the_test_metrics(multiclass: bool) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(40) % (8 if multiclass else 2)
    if multiclass:
        proba = rng.dirichlet(np.ones(8), size=40)
        expected = np.mean([average_precision_score(y == c, proba[:, c]) for c in range(8)])
        assert selection_score(y, proba, True) == pytest.approx(expected)
    else:
        proba = rng.random((40, 1))
        assert selection_score(y, proba, False) == pytest.approx(roc_auc_score(y, proba[:, 0]))
    assert math.isnan(selection_score(np.ones(5), np.full((5, 1), 0.5), False))


def _binary(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    positive = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return y, np.column_stack([1 - positive, positive])


def test_task_metrics_follow_the_task_table() -> None:
    y, proba = _binary()
    classes = np.array([0, 1])
    metrics, rows = task_metrics(TASKS[2], y, proba, classes, {}, seed=0, n_bootstrap=50)
    assert list(metrics) == ["roc_auc", "average_precision"] and rows == dict.fromkeys(metrics, 60)
    assert metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, proba[:, 1]))
    assert metrics["average_precision"].value == pytest.approx(
        average_precision_score(y, proba[:, 1])
    )
    # a custom binary task reports what Task 2 reports, to the digit
    custom, _ = task_metrics(custom_task("b", "x"), y, proba, classes, {}, seed=0, n_bootstrap=50)
    assert custom == metrics
    survival, rows = task_metrics(TASKS[3], y, proba, classes, {}, seed=0, n_bootstrap=50)
    assert list(survival) == ["roc_auc"]


def test_task_metrics_multiclass_and_c_index() -> None:
    rng = np.random.default_rng(1)
    y = np.arange(48) % 8
    proba = rng.dirichlet(np.ones(8), size=48)
    metrics, _ = task_metrics(1, y, proba, np.arange(8), {}, seed=0, n_bootstrap=20)
    assert list(metrics) == ["mean_average_precision", "balanced_accuracy"]
    predicted = np.argmax(proba, axis=1)
    assert metrics["balanced_accuracy"].value == pytest.approx(
        balanced_accuracy_score(y, predicted)
    )
    yb, pb = _binary(20)
    extra = {"survival_time": np.arange(20.0), "event": np.r_[np.ones(10), [np.nan] * 10]}
    metrics, rows = task_metrics(3, yb, pb, np.array([0, 1]), extra, seed=0, n_bootstrap=20)
    assert list(metrics) == ["roc_auc", "c_index"] and rows == {"roc_auc": 20, "c_index": 10}
    no_event = {"survival_time": np.arange(20.0), "event": np.zeros(20)}
    with pytest.raises(UndefinedMetricError, match="among 20 rows with survival data"):
        task_metrics(3, yb, pb, np.array([0, 1]), no_event, seed=0, n_bootstrap=20)
