"""workflow_scripts/linear_eval.py, run in-process through main([...])."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmcib_core.eval.linear import load_linear_model
from fmcib_core.io.features import read_features, write_features
from tests.workflow_scripts import import_script


@pytest.fixture(scope="module")
def script():
    return import_script("linear_eval")


def feature_table(
    path: Path, n: int, seed: int, *, label: str = "malignancy", classes: int = 2, width: int = 5
) -> Path:
    """A feature table whose first ``classes`` features carry the label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, width)).astype(np.float32)
    X[np.arange(n), y] += 4.0
    table = pd.DataFrame({"lesion_id": [f"L{seed}-{i}" for i in range(n)], label: y})
    write_features(path, table, X)
    return path


@pytest.fixture
def tables(tmp_path):
    return {
        "train": feature_table(tmp_path / "train.parquet", 80, 0),
        "val": feature_table(tmp_path / "val.parquet", 40, 1),
        "test": feature_table(tmp_path / "test.parquet", 40, 2),
    }


def run(script, out: Path, *, task=2, train, test, val=None, extra=()):
    out.mkdir(exist_ok=True)
    argv = [
        "--task",
        str(task),
        "--train",
        str(train),
        "--test",
        str(test),
        "--source",
        "foundation",
        "--out-json",
        str(out / "report.json"),
        "--out-predictions",
        str(out / "pred.parquet"),
        "--out-model",
        str(out / "model.npz"),
        "--trials",
        "3",
        "--seed",
        "7",
        *extra,
    ]
    if val is not None:
        argv += ["--val", str(val)]
    return script.main(argv)


def test_writes_report_predictions_and_model(script, tables, tmp_path):
    out = tmp_path / "out"
    assert run(script, out, **tables) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == 2 and report["label"] == "malignancy"
    assert report["feature_source"] == "foundation" and report["seed"] == 7
    assert report["n_rows"] == {"train": 80, "val": 40, "test": 40}
    assert report["rows_dropped"] == {"train": 0, "val": 0, "test": 0}
    selection = report["model_selection"]
    assert selection["method"] == "validation" and selection["n_trials"] == 3
    assert set(report["test_metrics"]) == {"roc_auc", "average_precision"}
    auc = report["test_metrics"]["roc_auc"]
    assert auc["value"] > 0.95 and auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert {"python", "numpy", "scikit-learn", "optuna", "torch", "fmcib_core"} <= set(
        report["versions"]
    )
    predictions = pd.read_parquet(out / "pred.parquet")
    assert list(predictions.columns) == ["lesion_id", "malignancy", "prob"]
    _, X, _ = read_features(tables["test"])
    model = load_linear_model(out / "model.npz")
    np.testing.assert_allclose(predictions["prob"], model.predict_proba(X)[:, 1])
    assert sorted(p.name for p in out.iterdir()) == ["model.npz", "pred.parquet", "report.json"]


def test_same_seed_gives_byte_identical_json(script, tables, tmp_path):
    assert run(script, tmp_path / "a", **tables) == 0
    assert run(script, tmp_path / "b", **tables) == 0
    first = (tmp_path / "a" / "report.json").read_bytes()
    assert first == (tmp_path / "b" / "report.json").read_bytes()


def test_task_one_with_cv(script, tmp_path):
    label = "Coarse_lesion_type"
    train = feature_table(tmp_path / "train.parquet", 90, 0, label=label, classes=3)
    test = feature_table(tmp_path / "test.parquet", 30, 1, label=label, classes=3)
    out = tmp_path / "out"
    assert run(script, out, task=1, train=train, test=test, extra=["--cv-folds", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model_selection"]["method"] == "cv"
    assert report["model_selection"]["cv_folds"] == 3
    assert report["n_rows"]["val"] is None
    assert set(report["test_metrics"]) == {"mean_average_precision", "balanced_accuracy"}
    columns = list(pd.read_parquet(out / "pred.parquet").columns)
    assert columns == ["lesion_id", label, "prob_0", "prob_1", "prob_2"]


def _rewrite(path: Path, change) -> Path:
    change(pd.read_parquet(path)).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    "break_inputs,messages,n_lines",
    [
        (
            lambda t: _rewrite(t["test"], lambda f: f.drop(columns="malignancy")),
            ["test.parquet: label column 'malignancy' is missing"],
            1,
        ),
        (
            lambda t: _rewrite(t["train"], lambda f: f.assign(malignancy=1)),
            ["train: a single class", "val: classes [0] do not occur in train"],
            3,
        ),
        (
            lambda t: _rewrite(t["val"], lambda f: f.drop(columns="pred_4")),
            ["feature dimensions differ"],
            1,
        ),
        (
            lambda t: _rewrite(t["test"], lambda f: f.assign(pred_2="x")),
            ["test.parquet", "'pred_2' (object)"],
            1,
        ),
        (
            lambda t: t.pop("val") and _rewrite(t["train"], lambda f: f.iloc[:15]),
            ["fewer rows than the 10 CV folds"],
            1,
        ),
        (
            lambda t: [
                _rewrite(t[s], lambda f: f.drop(columns="malignancy")) for s in ("train", "test")
            ],
            ["train.parquet: label column", "test.parquet: label column"],
            2,
        ),
    ],
    ids=["no-label", "single-class", "width", "string-feature", "cv-too-few", "two-files"],
)
def test_bad_inputs_exit_1_with_message_and_no_outputs(
    script, tables, tmp_path, capsys, break_inputs, messages, n_lines
):
    break_inputs(tables)
    out = tmp_path / "out"
    assert run(script, out, **tables) == 1
    err = capsys.readouterr().err
    for message in messages:
        assert message in err
    error_lines = [line for line in err.splitlines() if " ERROR " in line]
    assert len(error_lines) == n_lines  # one line per problem
    assert list(out.iterdir()) == []


def test_unwritable_output_leaves_no_other_output(script, tables, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocker").write_text("a file where a folder is needed")
    argv = ["--task", "2", "--train", str(tables["train"]), "--test", str(tables["test"])]
    argv += ["--source", "published", "--trials", "2", "--cv-folds", "2"]
    argv += ["--out-json", str(out / "r.json"), "--out-predictions", str(out / "p.parquet")]
    argv += ["--out-model", str(out / "blocker" / "m.npz")]
    assert script.main(argv) == 1
    assert "blocker" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["blocker"]


def grouped_table(path: Path, n_patients: int, seed: int) -> Path:
    """Three lesions per patient (``case_id``), a patient-level survival label and times."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), 3)
    y = (np.arange(n_patients) % 2)[patient]
    X = rng.normal(size=(len(patient), 4)).astype(np.float32)
    X[:, 0] += 2.0 * y
    table = pd.DataFrame(
        {
            "case_id": [f"P{seed}-{p}" for p in patient],
            "survival": y,
            "survival_time": (300 + 900 * y + patient).astype(float),
            "event": 1 - y,
        }
    )
    write_features(path, table, X)
    return path


def test_group_by_gives_patient_level_rows_metrics_and_counts(script, tmp_path):
    train = grouped_table(tmp_path / "train.parquet", 30, 0)
    test = grouped_table(tmp_path / "test.parquet", 20, 1)
    extra = ["--group-by", "case_id", "--aggregate", "mean"]
    assert run(script, tmp_path / "out", task=3, train=train, test=test, extra=extra) == 0
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["groups"] == {
        "column": "case_id",
        "aggregate": "mean",
        "train": {"lesions": 90, "groups": 30},
        "test": {"lesions": 60, "groups": 20},
    }
    assert report["n_rows"]["test"] == 20
    assert report["test_metrics"]["roc_auc"]["n_rows"] == 20
    assert report["test_metrics"]["c_index"]["n_rows"] == 20
    predictions = pd.read_parquet(tmp_path / "out/pred.parquet")
    assert len(predictions) == 20 and predictions["n_lesions"].eq(3).all()
    assert predictions["case_id"].is_unique
    assert run(script, tmp_path / "plain", task=3, train=train, test=test) == 0
    plain = json.loads((tmp_path / "plain/report.json").read_text())
    assert "groups" not in plain and plain["n_rows"]["test"] == 60
