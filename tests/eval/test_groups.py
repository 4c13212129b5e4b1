"""Patient-level linear evaluation: aggregation by group and a bootstrap over groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmcib_core.eval.linear import LinearEvalError
from fmcib_core.eval.linear.groups import aggregate_by_group
from fmcib_core.metrics import bootstrap_ci, roc_auc


def test_aggregation_never_mixes_groups() -> None:
    table = pd.DataFrame({"case_id": ["b", "a", "b", "c", "a"], "row": range(5)})
    X = np.array([[1.0, 10], [2, 20], [3, 30], [4, 40], [np.nan, 50]])
    y = np.array([1.0, 0, 1, 1, 0])
    mean = aggregate_by_group(table, X, y, {}, column="case_id", how="mean", source="t")
    assert mean.table["case_id"].tolist() == ["b", "a", "c"]  # first appearance
    assert mean.table["row"].tolist() == [0, 1, 3] and mean.table["n_lesions"].tolist() == [2, 2, 1]
    np.testing.assert_array_equal(mean.X, [[2, 20], [2, 20], [4, 40]])  # a's NaN lesion left out
    np.testing.assert_array_equal(mean.y, [1, 0, 1])
    assert mean.n_lesions == 5
    top = aggregate_by_group(table, X, y, {}, column="case_id", how="max", source="t")
    np.testing.assert_array_equal(top.X, [[3, 30], [2, 20], [4, 40]])
    first = aggregate_by_group(table, X, y, {}, column="case_id", how="first", source="t")
    np.testing.assert_array_equal(first.X, [[1, 10], [2, 20], [4, 40]])


@pytest.mark.parametrize(
    ("ids", "y", "message"),
    [
        (["a", None, "b", ""], [0, 1, 1, 0], r"2 row\(s\) have no 'case_id' \(rows 2, 4\)"),
        (["a", "a", "b", "b"], [0, 1, 1, 1], "1 'case_id' group\\(s\\) disagree.*\\(a\\)"),
    ],
)
def test_missing_ids_and_mixed_labels_are_errors(ids, y, message) -> None:
    table = pd.DataFrame({"case_id": ids})
    with pytest.raises(LinearEvalError, match=message):
        aggregate_by_group(table, np.zeros((4, 2)), np.array(y, float), {}, column="case_id",
                           how="mean", source="t.parquet")  # fmt: skip
    with pytest.raises(LinearEvalError, match="group column 'patient' is missing"):
        aggregate_by_group(table, np.zeros((4, 2)), np.array(y, float), {}, column="patient",
                           how="mean", source="t.parquet")  # fmt: skip


def test_group_bootstrap_is_wider_than_a_lesion_bootstrap() -> None:
    # 20 patients with 10 nearly identical lesions each: the lesions are not 200 independent
    # samples, and only resampling patients shows how little 20 patients say.
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(20), 10)
    label = (np.arange(20) % 2)[patients]
    score = (rng.normal(size=20) + 0.8 * np.arange(20) % 2)[patients] + 0.01 * rng.normal(size=200)
    table = pd.DataFrame({"case_id": patients})
    lesion = bootstrap_ci(roc_auc, label, score, n=500, seed=0)
    grouped = aggregate_by_group(
        table, score[:, None], label.astype(float), {}, column="case_id", how="mean", source="t"
    )
    patient = bootstrap_ci(roc_auc, grouped.y.astype(int), grouped.X[:, 0], n=500, seed=0)
    assert patient.value == pytest.approx(lesion.value, abs=0.02)
    assert (patient.ci_high - patient.ci_low) > 2 * (lesion.ci_high - lesion.ci_low)
