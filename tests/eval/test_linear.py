"""Linear evaluation: learns, stays at chance on noise, drops rows in step, checks its inputs."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fmcib_core.eval.linear import (
    LinearEvalError,
    LinearModel,
    fit_linear_eval,
    labels_from_table,
    load_linear_model,
    prediction_table,
    save_linear_model,
)

TRIALS = 5


def blobs(n: int, seed: int, *, classes: int = 2, width: int = 6, shift: float = 4.0):
    """Features whose first ``classes`` columns carry the label; labels balanced and in order."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, width)).astype(np.float32)
    X[np.arange(n), y] += shift
    return X, y


@pytest.mark.parametrize("with_val", [True, False], ids=["val", "cv"])
def test_separable_features_reach_auc_near_one(with_val):
    val = blobs(60, 1) if with_val else None
    result = fit_linear_eval(blobs(100, 0), val, blobs(80, 2), task=2, n_trials=TRIALS, seed=0)
    assert result.test_metrics["roc_auc"].value > 0.95
    assert result.test_metrics["average_precision"].value > 0.95
    assert result.selection == ("validation" if with_val else "cv")
    assert result.cv_folds == (None if with_val else 10)
    assert result.n_trials == TRIALS and 1e-6 <= result.model.C <= 1e3


def test_shuffled_labels_stay_near_chance():
    rng = np.random.default_rng(5)
    (X, y), (Xv, yv), (Xt, yt) = blobs(200, 0), blobs(100, 1), blobs(400, 2)
    shuffled = [(X, rng.permutation(y)), (Xv, rng.permutation(yv)), (Xt, rng.permutation(yt))]
    result = fit_linear_eval(*shuffled, task=2, n_trials=TRIALS, seed=0)
    assert abs(result.test_metrics["roc_auc"].value - 0.5) < 0.15


def test_nan_rows_are_dropped_from_x_and_y_together():
    (X, y), (Xt, yt) = blobs(120, 0), blobs(80, 2)
    X_nan, y_nan = X.copy(), y.astype(float)
    Xt_nan, yt_nan = Xt.copy(), yt.astype(float)
    # Dropping X alone would shift every later label by one row; labels alternate, so the
    # shifted pairs would be anti-correlated and the AUC far below 0.5.
    X_nan[3, 1] = np.nan
    y_nan[10] = np.nan
    Xt_nan[0, 0] = np.nan
    yt_nan[5] = np.nan
    result = fit_linear_eval(
        (X_nan, y_nan), None, (Xt_nan, yt_nan), task=2, n_trials=TRIALS, seed=0
    )
    keep, keep_t = np.ones(120, bool), np.ones(80, bool)
    keep[[3, 10]] = False
    keep_t[[0, 5]] = False
    clean = fit_linear_eval(
        (X[keep], y[keep]), None, (Xt[keep_t], yt[keep_t]), task=2, n_trials=TRIALS, seed=0
    )
    assert result.dropped == {"train": 2, "val": None, "test": 2}
    assert result.n_rows == {"train": 118, "val": None, "test": 78}
    assert result.test_metrics["roc_auc"].value > 0.95
    assert result.test_metrics == clean.test_metrics
    np.testing.assert_array_equal(result.model.coef, clean.model.coef)
    # Every test row keeps its place: NaN-feature rows get NaN, the unlabelled row a prediction.
    assert np.isnan(result.test_proba[0]).all() and np.isfinite(result.test_proba[1:]).all()
    np.testing.assert_array_equal(result.test_proba[keep_t], clean.test_proba)


def test_multiclass_task_one():
    result = fit_linear_eval(
        blobs(160, 0, classes=4),
        blobs(80, 1, classes=4),
        blobs(120, 2, classes=4),
        task=1,
        n_trials=TRIALS,
        seed=0,
    )
    assert result.selection_metric == "accuracy"
    assert result.model.coef.shape == (4, 6) and result.test_proba.shape == (120, 4)
    np.testing.assert_allclose(result.test_proba.sum(axis=1), 1.0)
    assert set(result.test_metrics) == {"mean_average_precision", "balanced_accuracy"}
    assert result.test_metrics["mean_average_precision"].value > 0.95
    assert result.test_metrics["balanced_accuracy"].value > 0.9


def test_task_three_adds_the_c_index_with_risk_from_class_zero():
    X, y = blobs(100, 0)
    Xt, yt = blobs(80, 2)
    # Survivors (label 1) live longer; a good model ranks deaths as high risk. Tied times within
    # a group are not comparable, so only the cross-group pairs count.
    time = np.where(yt == 1, 800.0, 200.0)
    extra = {"survival_time": time, "event": np.ones(80), "unused": None}
    with pytest.raises(LinearEvalError, match="exactly"):
        fit_linear_eval((X, y), None, (Xt, yt, extra), task=3, n_trials=TRIALS, seed=0)
    del extra["unused"]
    extra["survival_time"] = np.where(np.arange(80) == 7, np.nan, time)
    result = fit_linear_eval((X, y), None, (Xt, yt, extra), task=3, n_trials=TRIALS, seed=0)
    assert set(result.test_metrics) == {"roc_auc", "c_index"}
    assert result.test_metrics["c_index"].value > 0.9
    assert result.metric_rows == {"roc_auc": 80, "c_index": 79}
    no_events = extra | {"event": np.zeros(80)}
    with pytest.raises(LinearEvalError, match="comparable pair"):
        fit_linear_eval((X, y), None, (Xt, yt, no_events), task=3, n_trials=TRIALS, seed=0)


def test_same_seed_same_result_and_optuna_verbosity_restored():
    optuna.logging.set_verbosity(optuna.logging.INFO)
    args = (blobs(100, 0), blobs(50, 1), blobs(60, 2))
    first = fit_linear_eval(*args, task=2, n_trials=TRIALS, seed=4)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    assert first.summary() == fit_linear_eval(*args, task=2, n_trials=TRIALS, seed=4).summary()


def _single_class(split):
    X, y = split
    return X, np.zeros_like(y)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda tr, va, te: (_single_class(tr), va, te), "train: a single class"),
        (lambda tr, va, te: (tr, _single_class(va), te), "val: a single class"),
        (lambda tr, va, te: (tr, va, _single_class(te)), "test: a single class"),
        (lambda tr, va, te: (tr, (va[0][:, :3], va[1]), te), "feature dimensions differ"),
        (lambda tr, va, te: (tr, va, (te[0], te[1] * 2)), "labels must be 0 or 1"),
        (lambda tr, va, te: (tr, va, (te[0], te[1] + 0.5)), "whole numbers"),
        (lambda tr, va, te: (tr, va, (te[0], te[1][:-1])), r"got \(20, 6\) and \(19,\)"),
        (lambda tr, va, te: ((tr[0][:, :0], tr[1]), va, te), r"F >= 1"),
        (lambda tr, va, te: (tr, va, (te[0] * np.nan, te[1])), "test: no row"),
        (lambda tr, va, te: ((tr[0][:12], tr[1][:12]), None, te), "fewer rows than the 10 CV"),
    ],
    ids=["train1", "val1", "test1", "width", "binary", "whole", "length", "nofeat", "allnan", "cv"],
)
def test_bad_inputs_raise_clear_errors(change, message):
    splits = change(blobs(40, 0), blobs(20, 1), blobs(20, 2))
    with pytest.raises(LinearEvalError, match=message):
        fit_linear_eval(*splits, task=2, n_trials=TRIALS, seed=0)


def test_problems_are_reported_together():
    train, val = blobs(40, 0), blobs(20, 1)
    with pytest.raises(LinearEvalError) as err:
        fit_linear_eval(
            train,
            (val[0][:, :3], val[1]),
            _single_class(blobs(20, 2)),
            task=2,
            n_trials=TRIALS,
            seed=0,
        )
    assert len(str(err.value).splitlines()) == 2


def test_unseen_test_class_and_bad_arguments():
    train, test = blobs(40, 0, classes=3), blobs(40, 1, classes=4)
    with pytest.raises(LinearEvalError, match=r"test: classes \[3\] do not occur in train"):
        fit_linear_eval(train, None, test, task=1, n_trials=TRIALS, seed=0, cv_folds=3)
    with pytest.raises(LinearEvalError, match="n_trials") as err:
        fit_linear_eval(train, None, test, task=4, n_trials=0, seed=0, cv_folds=1)
    assert len(str(err.value).splitlines()) == 3


def test_labels_from_table():
    table = pd.DataFrame({"malignancy": [0, None, 1], "survival_time": [1.0, 2.0, 3.0]})
    with pytest.raises(LinearEvalError) as err:
        labels_from_table(table, 3, source="t.parquet")
    lines = str(err.value).splitlines()
    assert "t.parquet: label column 'survival' is missing (task 3)" in lines
    assert any("'survival_time' but not its partner" in line for line in lines)
    y, extra = labels_from_table(table, 2)
    np.testing.assert_array_equal(y, [0, np.nan, 1])
    assert extra == {}
    with pytest.raises(LinearEvalError, match="not numeric"):
        labels_from_table(pd.DataFrame({"malignancy": ["yes", "no"]}), 2)


@pytest.mark.parametrize("classes", [2, 3])
def test_linear_model_matches_sklearn_and_round_trips(tmp_path, classes):
    X, y = blobs(90, 0, classes=classes)
    result = fit_linear_eval(
        (X, y),
        None,
        blobs(30, 1, classes=classes),
        task=1 if classes > 2 else 2,
        n_trials=2,
        seed=0,
        cv_folds=3,
    )
    model = result.model
    reference = LogisticRegression(C=model.C, max_iter=1000).fit(
        (X - model.scaler_mean) / model.scaler_scale, y
    )
    expected = reference.predict_proba((X - model.scaler_mean) / model.scaler_scale)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-6, atol=1e-9)
    save_linear_model(tmp_path / "m.npz", result)
    loaded = load_linear_model(tmp_path / "m.npz")
    assert isinstance(loaded, LinearModel) and loaded.C == model.C
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_load_rejects_incomplete_model(tmp_path):
    np.savez(tmp_path / "m.npz", coef=np.zeros((1, 2)))
    with pytest.raises(LinearEvalError, match="lacks"):
        load_linear_model(tmp_path / "m.npz")


def test_prediction_table_columns():
    table = pd.DataFrame({"id": ["a", "b", "c"], "malignancy": [0, 1, 1]})
    result = fit_linear_eval(
        blobs(40, 0), None, blobs(3, 1), task=2, n_trials=2, seed=0, cv_folds=2
    )
    out = prediction_table(table, result)
    assert list(out.columns) == ["id", "malignancy", "prob"]
    np.testing.assert_array_equal(out["prob"], result.test_proba[:, 1])
    with pytest.raises(LinearEvalError, match="already present"):
        prediction_table(out, result)


def test_task_one_names_probabilities_by_class_even_with_two_classes():
    table = pd.DataFrame({"Coarse_lesion_type": [0, 1, 0]})
    result = fit_linear_eval(
        blobs(40, 0), None, blobs(3, 1), task=1, n_trials=2, seed=0, cv_folds=2
    )
    out = prediction_table(table, result)
    assert list(out.columns) == ["Coarse_lesion_type", "prob_0", "prob_1"]
    np.testing.assert_array_equal(out[["prob_0", "prob_1"]].to_numpy(), result.test_proba)
