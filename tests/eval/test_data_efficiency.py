"""Data efficiency: nested, stratified, seeded subsets of train and the fits on them."""

from __future__ import annotations

import numpy as np
import pytest

from fmcib_core.eval.data_efficiency import (
    SourceData,
    data_efficiency,
    nested_stratified_subsets,
)
from fmcib_core.eval.linear import LinearEvalError
from tests.eval.test_linear import blobs

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def test_subsets_are_nested_stratified_and_seeded() -> None:
    y = np.array([0] * 60 + [1] * 30 + [2] * 10, dtype=float)
    subsets = nested_stratified_subsets(y, FRACTIONS, seed=3)
    assert list(subsets) == list(FRACTIONS)
    counts = {
        f: np.bincount(y[rows].astype(int), minlength=3).tolist() for f, rows in subsets.items()
    }
    assert counts == {0.1: [6, 3, 2], 0.25: [15, 8, 2], 0.5: [30, 15, 5], 1.0: [60, 30, 10]}
    for small, large in zip(FRACTIONS[:-1], FRACTIONS[1:], strict=True):
        assert set(subsets[small]) <= set(subsets[large])
    np.testing.assert_array_equal(subsets[1.0], np.arange(100))
    again = nested_stratified_subsets(y, FRACTIONS, seed=3)
    other = nested_stratified_subsets(y, FRACTIONS, seed=4)
    assert all(np.array_equal(subsets[f], again[f]) for f in FRACTIONS)
    assert not np.array_equal(subsets[0.1], other[0.1])


def test_subsets_keep_a_minimum_per_class_and_skip_missing_labels() -> None:
    y = np.array([0.0] * 20 + [1.0] * 3 + [np.nan] * 5)
    subsets = nested_stratified_subsets(y, [0.05, 1.0], seed=0)
    assert np.bincount(y[subsets[0.05]].astype(int)).tolist() == [2, 2]
    assert len(subsets[1.0]) == 23 and np.isfinite(y[subsets[1.0]]).all()


@pytest.mark.parametrize("fractions", [[], [0.0], [1.5]])
def test_bad_fractions_are_refused(fractions) -> None:
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        nested_stratified_subsets(np.zeros(10), fractions, seed=0)


def _source(seed: int, shift: float) -> SourceData:
    train = blobs(200, seed, shift=shift)
    return SourceData(train=train, val=blobs(60, seed + 1, shift=shift),
                      test=blobs(200, seed + 2, shift=shift))  # fmt: skip


def test_fits_every_source_at_every_fraction_and_more_data_helps() -> None:
    sources = {"strong": _source(0, 1.5), "none": _source(0, 0.0)}
    rows = data_efficiency(sources, task=2, fractions=[1.0, 0.05], n_trials=3, seed=0,
                           n_bootstrap=50)  # fmt: skip
    assert [(r["fraction"], r["source"]) for r in rows] == [
        (0.05, "strong"), (0.05, "none"), (1.0, "strong"), (1.0, "none"),
    ]  # fmt: skip
    assert [r["n_train"] for r in rows] == [10, 10, 200, 200]
    assert all(r["metric"] == "roc_auc" and r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)
    by = {(r["fraction"], r["source"]): r["value"] for r in rows}
    assert by[1.0, "strong"] > 0.8 and abs(by[1.0, "none"] - 0.5) < 0.12
    assert by[1.0, "strong"] >= by[0.05, "strong"]


def test_without_val_the_folds_shrink_to_the_smallest_class() -> None:
    source = _source(0, 2.0)
    no_val = SourceData(train=source.train, val=None, test=source.test)
    rows = data_efficiency({"a": no_val}, task=2, fractions=[0.02], n_trials=2, seed=0,
                           cv_folds=10, n_bootstrap=20)  # fmt: skip
    assert rows[0]["n_train"] == 4  # 2 per class, 2-fold CV


def test_sources_of_different_rows_are_refused() -> None:
    a, b = _source(0, 1.0), _source(5, 1.0)
    b = SourceData(train=(b.train[0], 1 - b.train[1]), val=b.val, test=b.test)
    with pytest.raises(LinearEvalError, match="training labels differ"):
        data_efficiency({"a": a, "b": b}, task=2, fractions=[1.0], n_trials=1, seed=0)
