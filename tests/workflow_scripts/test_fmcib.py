"""The installed ``fmcib`` command: each subcommand through the entry point, from another folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fmcib_core.demo import make_demo_dataset
from fmcib_core.io import save_fmcib_weights
from fmcib_core.models import build_backbone
from tests.workflow_scripts import import_script

ROOT = Path(__file__).resolve().parents[2]
FMCIB = Path(sys.executable).parent / "fmcib"
BACKBONE = ["--backbone", "resnet10_w025", "--patch-size", "24"]


def fmcib(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert FMCIB.is_file(), f"{FMCIB} is missing: install the project (make install)"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(FMCIB), *args], cwd=cwd, env=env, capture_output=True, encoding="utf-8", timeout=300
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(out, seed=0, n_cases=4)
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model_weights.torch"
    return save_fmcib_weights(path, build_backbone("resnet10_w025").state_dict())


def test_help_names_every_subcommand_with_an_example(tmp_path: Path) -> None:
    result = fmcib("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("validate", "features", "linear-eval", "export-weights"):
        assert command in result.stdout
    for command in ("features", "linear-eval"):
        assert "example: fmcib " + command in fmcib(command, "--help", cwd=tmp_path).stdout
    assert "--labels" in fmcib("validate", "--help", cwd=tmp_path).stdout


def test_validate(demo: Path, tmp_path: Path) -> None:
    table = demo / "task2_test.csv"
    assert fmcib("validate", str(table), "--labels", "malignancy", cwd=tmp_path).returncode == 0
    bad = fmcib("validate", str(table), "--labels", "size", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown label(s) ['size']" in bad.stderr


def test_features_equal_the_workflow_script_and_feed_linear_eval(
    demo: Path, weights: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for split in ("train", "val", "test"):
        table = demo / f"task2_{split}.csv"
        args = ["features", str(table), "--weights", str(weights), *BACKBONE, "--threads", "1"]
        result = fmcib(*args, "--out", f"{split}.parquet", cwd=elsewhere)
        assert result.returncode == 0, result.stderr
    script = import_script("extract_features")
    rule_args = ["--table", str(demo / "task2_test.csv"), "--weights", str(weights), *BACKBONE]
    rule_args += ["--accelerator", "cpu", "--seed", "0", "--batch-size", "16"]
    assert script.main([*rule_args, "--precision", "fp32", "--out", str(tmp_path / "rule.pq")]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(elsewhere / "test.parquet"),
        pd.read_parquet(tmp_path / "rule.pq"),
        check_exact=True,
    )
    result = fmcib(
        "linear-eval", "train.parquet", "val.parquet", "test.parquet", "--label", "malignancy",
        "--trials", "3", "--bootstrap", "20", "--out-prefix", "out/malignancy", cwd=elsewhere,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((elsewhere / "out/malignancy.json").read_text())
    assert report["task"] == "malignancy" and report["feature_source"] == "external"
    assert report["model_selection"]["metric"] == "roc_auc"
    assert set(report["test_metrics"]) == {"roc_auc", "average_precision"}
    assert (elsewhere / "out/malignancy_predictions.parquet").is_file()
    accuracy = fmcib(
        "linear-eval", "train.parquet", "val.parquet", "test.parquet", "--label", "malignancy",
        "--trials", "2", "--scoring", "accuracy", "--out-prefix", "acc", cwd=elsewhere,
    )  # fmt: skip
    assert accuracy.returncode == 0, accuracy.stderr
    assert json.loads((elsewhere / "acc.json").read_text())["model_selection"]["metric"] == (
        "accuracy"
    )


def test_bad_input_is_one_line_and_exit_1(demo: Path, tmp_path: Path) -> None:
    result = fmcib(
        "features", str(demo / "task2_test.csv"), "--weights", str(tmp_path / "none.torch"),
        "--out", "f.parquet", *BACKBONE, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "weights file does not exist" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "f.parquet").exists()
    missing = fmcib("export-weights", "--checkpoint", "nope.ckpt", "--backbone", "resnet10",
                    "--out", "w.torch", cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1 and not (tmp_path / "w.torch").exists()


def test_defaults_are_the_schemas() -> None:
    from workflow_scripts.fmcib import DEFAULTS
    from workflow_scripts.rule_args import FEATURE_BATCH

    props = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())["properties"]
    assert DEFAULTS == {
        "backbone": props["backbone"]["default"],
        "patch_size": props["patch_size"]["default"],
        "seed": props["seed"]["default"],
        # null in the schema: the accelerator's; the command runs where it is called (a CPU)
        "batch_size": props["features"]["properties"]["batch_size"]["default"]
        or FEATURE_BATCH["cpu"],
        "precision": props["features"]["properties"]["precision"]["default"],
        **{
            k: props["linear_eval"]["properties"][k]["default"]
            for k in ("trials", "cv_folds", "bootstrap", "aggregate")
        },
    }
