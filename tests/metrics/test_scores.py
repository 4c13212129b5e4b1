"""Metrics against hand-computed cases, scikit-learn, and a naive bootstrap loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fmcib_core.metrics.scores import (
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

# Sorted by score: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg).
Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_auc_hand_case():
    # Positive 0.35 beats negative 0.1 only; positive 0.8 beats both: 3 of 4 pairs.
    assert roc_auc(Y, S) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc(Y, -S) == pytest.approx(0.25)


def test_average_precision_hand_case():
    # Recall steps 0.5 at precision 1 (rank 1) and 0.5 at precision 2/3 (rank 3).
    assert average_precision(Y, S) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, 60)]
    s = rng.integers(0, 6, 62).astype(float)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


PROBA = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4]],
)
Y3 = np.array([0, 0, 1, 2])


def test_mean_average_precision_hand_case():
    # Class 0: ranking r0(+), r3, r1(+), r2 -> AP 0.5 * 1 + 0.5 * 2/3 = 5/6.
    # Classes 1 and 2: their single positive ranks first -> AP 1.
    assert mean_average_precision(Y3, PROBA) == pytest.approx((5 / 6 + 1 + 1) / 3)


def test_mean_average_precision_skips_absent_classes_and_maps_columns():
    # A fourth class absent from y is left out of the mean, not counted as 0.
    wider = np.column_stack([PROBA, np.full(4, 0.25)])
    assert mean_average_precision(Y3, wider) == pytest.approx(17 / 18)
    # Columns labelled by ``classes`` in another order give the same answer.
    shuffled = PROBA[:, [2, 0, 1]]
    assert mean_average_precision(Y3, shuffled, classes=[2, 0, 1]) == pytest.approx(17 / 18)
    with pytest.raises(ValueError, match=r"labels \[5\]"):
        mean_average_precision(np.array([0, 5]), PROBA[:2])


def test_balanced_accuracy_hand_case():
    # Recalls 2/3 and 1 -> 5/6, where plain accuracy would be 3/4.
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(5 / 6)


def test_c_index_hand_case():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 1, 0, 1])
    risk = np.array([0.9, 0.5, 0.7, 0.1])
    # Comparable pairs (shorter time has an event): (0,1) (0,2) (0,3) (1,2) (1,3).
    # Higher risk on the shorter time in all but (1,2): 4 of 5.
    assert harrell_c_index(time, event, risk) == pytest.approx(0.8)
    assert harrell_c_index(time, event, -risk) == pytest.approx(0.2)
    tied = np.array([0.9, 0.5, 0.7, 0.5])  # (1,3) tied: one half
    assert harrell_c_index(time, event, tied) == pytest.approx(3.5 / 5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: roc_auc([1, 1, 1], [0.1, 0.2, 0.3]),
        lambda: average_precision([0, 0], [0.1, 0.2]),
        lambda: mean_average_precision([2, 2], PROBA[:2]),
        lambda: balanced_accuracy([1, 1], [1, 0]),
        lambda: harrell_c_index([1.0, 2.0], [0, 0], [0.1, 0.2]),
    ],
    ids=["auc", "ap", "map", "balanced_accuracy", "c_index"],
)
def test_single_class_is_undefined(call):
    with pytest.raises(UndefinedMetricError):
        call()


def test_binary_metrics_reject_other_labels():
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0, 2], [0.1, 0.2])


def test_bootstrap_matches_a_naive_loop_and_counts_skips():
    y = np.array([0] * 8 + [1, 1])
    s = np.linspace(0, 1, 10)
    result = bootstrap_ci(roc_auc, y, s, n=200, seed=3)
    rng = np.random.default_rng(3)
    values, skipped = [], 0
    for _ in range(200):
        rows = rng.integers(0, 10, size=10)
        if len(set(y[rows])) < 2:
            skipped += 1
        else:
            values.append(roc_auc_score(y[rows], s[rows]))
    assert result.value == pytest.approx(1.0)
    assert result.n_skipped == skipped > 0
    assert result.ci_low == pytest.approx(np.quantile(values, 0.025))
    assert result.ci_high == pytest.approx(np.quantile(values, 0.975))


def test_bootstrap_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    s = y + rng.normal(size=80)
    first = bootstrap_ci(roc_auc, y, s, n=300, seed=1)
    assert first == bootstrap_ci(roc_auc, y, s, n=300, seed=1)
    assert first != bootstrap_ci(roc_auc, y, s, n=300, seed=2)
    assert first.ci_low < first.value < first.ci_high


def test_bootstrap_input_errors():
    with pytest.raises(UndefinedMetricError):
        bootstrap_ci(roc_auc, np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ci(roc_auc, np.array([0, 1]), np.arange(3.0))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(roc_auc, np.array([0, 1]), np.arange(2.0), alpha=1.5)


def test_metrics_json_turns_nan_into_none_and_keeps_counts() -> None:
    out = metrics_json(
        {
            "roc_auc": BootstrapResult(0.75, 0.5, 0.9, 3),
            "c_index": BootstrapResult(0.6, np.nan, np.nan, 10),
        },
        {"roc_auc": 40, "c_index": 12},
    )
    assert out["roc_auc"] == {
        "value": 0.75, "ci_low": 0.5, "ci_high": 0.9, "n_rows": 40, "n_resamples_skipped": 3
    }  # fmt: skip
    assert out["c_index"]["ci_low"] is None and out["c_index"]["n_rows"] == 12
