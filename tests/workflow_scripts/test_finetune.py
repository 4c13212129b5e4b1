"""workflow_scripts/finetune.py, run in-process through main([...]) on synthetic CT volumes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from fmcib_core.demo import make_demo_dataset
from fmcib_core.io import load_into, load_weights, save_fmcib_weights
from fmcib_core.models import backbone_output_dim, build_backbone, task_head
from tests.workflow_scripts import import_script

BACKBONE = "resnet10_w025"
OUTPUTS = ["metrics.json", "model_weights.torch", "predictions.parquet", "train_log.csv"]
METRICS_KEYS = set(
    "task label init backbone weights n_rows selection best_epoch val_metric val_metrics "
    "test_metrics epochs batch_size lr step_size gamma patch_size precision seed threads".split()
)


@pytest.fixture(scope="module")
def script():
    return import_script("finetune")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight synthetic patients (3 train, 2 val, 3 test), a seed that gives every split both
    classes of every task (Task 3 is a patient's outcome)."""
    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(out, seed=10, n_cases=8, n_pretrain_cases=1)
    return out


def tables(demo: Path, task: int, splits=("train", "val", "test")) -> dict[str, Path]:
    return {split: demo / f"task{task}_{split}.csv" for split in splits}


def edited(demo: Path, folder: Path, name: str, change: Callable[[pd.DataFrame], pd.DataFrame]):
    """A copy of a demo table with absolute image paths, changed by ``change``."""
    table = pd.read_csv(demo / name)
    table["image_path"] = [str(demo / p) for p in table["image_path"]]
    folder.mkdir(exist_ok=True)
    change(table).to_csv(folder / name, index=False)
    return folder / name


def run(script, tmp_path: Path, name: str, paths: dict, *, task=2, init="random", extra=()) -> int:
    argv = ["--task", str(task), "--init", init, "--backbone", BACKBONE, "--patch-size", "16"]
    argv += ["--out-dir", str(tmp_path / name), "--work-dir", str(tmp_path / f"{name}-work")]
    argv += ["--epochs", "2", "--batch-size", "8", "--bootstrap", "20", "--seed", "3"]
    argv += ["--num-workers", "0"]
    for split, path in paths.items():
        argv += [f"--{split}", str(path)]
    return script.main([*argv, *extra])


def test_task_2_writes_the_four_outputs(script, demo, tmp_path):
    assert run(script, tmp_path, "out", tables(demo, 2)) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRICS_KEYS
    assert metrics["task"] == 2 and metrics["label"] == "malignancy"
    assert metrics["init"] == "random" and metrics["weights"] is None
    assert metrics["n_rows"] == {"train": 26, "val": 25, "test": 37}
    assert metrics["selection"] == "best_val_score" and metrics["best_epoch"] in (0, 1)
    assert metrics["val_metric"] == "roc_auc" and set(metrics["val_metrics"]) == {
        "val_score",
        "val_loss",
    }
    assert set(metrics["test_metrics"]) == {"roc_auc", "average_precision"}
    for result in metrics["test_metrics"].values():
        assert set(result) == {"value", "ci_low", "ci_high", "n_rows", "n_resamples_skipped"}
        assert result["n_rows"] == 37 and 0 <= result["value"] <= 1
    assert (metrics["epochs"], metrics["batch_size"], metrics["seed"]) == (2, 8, 3)

    log = pd.read_csv(out / "train_log.csv")
    assert list(log.columns) == ["epoch", "train_loss", "val_loss", "val_score", "lr"]
    assert log["epoch"].tolist() == [0, 1] and log.notna().all().all()
    best = log.set_index("epoch").loc[metrics["best_epoch"]]
    assert metrics["val_metrics"]["val_score"] == pytest.approx(best["val_score"])

    test = pd.read_csv(demo / "task2_test.csv")
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert list(predictions.columns) == [*test.columns, "prob"]
    pd.testing.assert_frame_equal(predictions[test.columns], test, check_dtype=False)
    assert predictions["prob"].between(0, 1).all()

    weights = load_weights(out / "model_weights.torch")
    assert weights.source_format == "fmcib" and weights.head is not None
    load_into(build_backbone(BACKBONE), weights.trunk, what="backbone", source="test")
    head = task_head(2, backbone_output_dim(BACKBONE))
    load_into(head, weights.head, what="head", source="test")

    # The same arguments again: the finished run is resumed, not retrained.
    first = (out / "metrics.json").read_text()
    (out / "metrics.json").unlink()
    assert run(script, tmp_path, "out", tables(demo, 2)) == 0
    assert (out / "metrics.json").read_text() == first


def test_same_seed_same_first_epoch(script, demo, tmp_path):
    paths = tables(demo, 2)
    extra = ["--epochs", "1"]
    assert run(script, tmp_path, "a", paths, extra=extra) == 0
    assert run(script, tmp_path, "b", paths, extra=extra) == 0
    logs = [pd.read_csv(tmp_path / name / "train_log.csv") for name in ("a", "b")]
    pd.testing.assert_frame_equal(*logs)


# A training job beside the measured one: a torch loop on every core for its lifetime.
BUSY = """
import torch
torch.set_num_threads(2)
model = torch.nn.Conv3d(1, 8, 3)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
while True:
    opt.zero_grad()
    model(torch.randn(4, 1, 24, 24, 24)).square().mean().backward()
    opt.step()
"""


@pytest.mark.slow
def test_same_seed_same_numbers_whatever_runs_beside_and_whatever_the_threads_default(
    script, demo, tmp_path
):
    paths = tables(demo, 1)
    extra = ["--threads", "2", "--init", "random"]
    torch.set_num_threads(1)  # the environment's default, which the run must not follow
    assert run(script, tmp_path, "alone", paths, task=1, extra=extra) == 0
    torch.set_num_threads(2)
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        assert run(script, tmp_path, "beside", paths, task=1, extra=extra) == 0
    finally:
        busy.kill()
        busy.wait()
    alone, beside = tmp_path / "alone", tmp_path / "beside"
    assert (alone / "metrics.json").read_text() == (beside / "metrics.json").read_text()
    pd.testing.assert_frame_equal(
        pd.read_csv(alone / "train_log.csv"), pd.read_csv(beside / "train_log.csv")
    )
    first, second = (load_weights(p / "model_weights.torch") for p in (alone, beside))
    for key, value in first.trunk.items():
        assert torch.equal(value, second.trunk[key]), key
    for key, value in first.head.items():
        assert torch.equal(value, second.head[key]), key


def test_task_3_supervised_init_without_validation(script, demo, tmp_path):
    task1 = build_backbone(BACKBONE)
    weights = save_fmcib_weights(tmp_path / "task1.torch", task1.state_dict())
    paths = tables(demo, 3, ("train", "test"))
    extra = ["--weights", str(weights)]
    assert run(script, tmp_path, "out", paths, task=3, init="supervised", extra=extra) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["selection"] == "last_epoch" and metrics["best_epoch"] == 1
    assert metrics["val_metrics"] is None and metrics["n_rows"]["val"] is None
    assert metrics["weights"] == str(weights)
    assert set(metrics["test_metrics"]) == {"roc_auc", "c_index"}
    log = pd.read_csv(tmp_path / "out" / "train_log.csv")
    assert log["val_score"].isna().all() and log["train_loss"].notna().all()


def test_task_1_writes_a_probability_per_class(script, demo, tmp_path):
    extra = ["--epochs", "1"]
    assert run(script, tmp_path, "out", tables(demo, 1), task=1, extra=extra) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["val_metric"] == "mean_average_precision"
    assert set(metrics["test_metrics"]) == {"mean_average_precision", "balanced_accuracy"}
    columns = list(pd.read_parquet(tmp_path / "out" / "predictions.parquet").columns)
    assert columns[-8:] == [f"prob_{c}" for c in range(8)]


def wrong_key_weights(folder: Path) -> Path:
    trunk = build_backbone(BACKBONE).state_dict()
    trunk["fc.weight"] = torch.zeros(2, 2)
    return save_fmcib_weights(folder / "bad.torch", trunk)


BAD_INPUTS = {
    "missing-labels": (
        lambda demo, d: {
            **tables(demo, 2),
            "train": edited(demo, d, "task2_train.csv", lambda t: t.drop(columns="malignancy")),
            "test": edited(demo, d, "task2_test.csv", lambda t: t.drop(columns="malignancy")),
        },
        {},
        ["task2_train.csv: label column 'malignancy' is missing", "task2_test.csv: label column"],
    ),
    "single-class": (
        lambda demo, d: {
            **tables(demo, 2),
            "train": edited(demo, d, "task2_train.csv", lambda t: t.assign(malignancy=1)),
        },
        {},
        ["task2_train.csv: column 'malignancy' holds 1 class(es) [1]; need at least 2"],
    ),
    "wrong-weights": (
        lambda demo, d: tables(demo, 2),
        {"init": "foundation", "extra": ["--weights", "{bad}"]},
        ["backbone weights do not fit the model", "1 key unexpected: fc.weight"],
    ),
    "supervised-task-1": (
        lambda demo, d: tables(demo, 1),
        {"task": 1, "init": "supervised", "extra": ["--weights", "{bad}"]},
        ["init 'supervised' is the Task 1 model's backbone"],
    ),
    "missing-table": (
        lambda demo, d: {**tables(demo, 2), "val": d / "nowhere.csv"},
        {},
        ["nowhere.csv: table does not exist"],
    ),
    "seed-outside-image": (
        lambda demo, d: {
            **tables(demo, 2),
            "test": edited(demo, d, "task2_test.csv", lambda t: t.assign(coordZ=5000.0)),
        },
        {},
        ["row 0", "lies outside the scan's 1 mm grid"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_exit_1_with_one_line_per_problem(script, demo, tmp_path, capsys, case):
    make_paths, options, messages = BAD_INPUTS[case]
    paths = make_paths(demo, tmp_path / "tables")
    bad = str(wrong_key_weights(tmp_path))
    options = {**options, "extra": [a.format(bad=bad) for a in options.get("extra", [])]}
    assert run(script, tmp_path, "out", paths, **options) == 1
    err = capsys.readouterr().err
    for message in messages:
        assert message in err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == (2 if case == "missing-labels" else 1), errors
    assert not (tmp_path / "out").exists()
