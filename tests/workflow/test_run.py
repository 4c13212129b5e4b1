"""The tiny real run: the whole DAG on a few synthetic patients with the tiny backbone.

As the snakemake-workflows catalog tests a workflow: lint and dry runs live in test_dag.py; this
runs every rule for real, then checks the outputs, that a second run has nothing to do, that a
moved copy of the finished checkout has nothing to do, and that deleting one intermediate
rebuilds only what depends on it. The run happens in a copy of the checkout whose path, like the
demo tables' folder, holds a space and a non-ASCII character, as real paths do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fmcib_core.io import load_weights, read_features
from fmcib_core.models import build_backbone

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ["config/config.yaml", "tests/workflow/tiny.yaml", "spaced.yaml"]
DEMO_DIR = "data/with space ü"
# The session-scoped tiny run (``run_dir``, tests/workflow/conftest.py) counts against its first
# test: allow it more than the suite-wide 600 s on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked, and untracked ones git does not ignore) copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    demo = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    tables = {
        key: {s: f"{DEMO_DIR}/{key}_{s}.csv" for s in value} if isinstance(value, dict) else
        f"{DEMO_DIR}/{key}.csv"
        for key, value in demo["tables"].items()
    }  # fmt: skip
    spaced = {"demo": {"out_dir": DEMO_DIR}, "tables": tables}
    (dest / "spaced.yaml").write_text(yaml.safe_dump(spaced, allow_unicode=True), encoding="utf-8")
    return dest


def _snakemake(
    checkout: Path, *args: str, timeout: int = 1200, configs: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Snakemake in ``checkout`` (its own Snakefile, folder and configs), as a user runs it."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(bin_dir / "snakemake"), "--configfile", *CONFIGS, *configs, "--cores", "2", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def _planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table."""
    stats = (result.stdout + result.stderr).split("Job stats:")[-1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"
    }


def test_every_task_has_linear_eval_with_cis(run_dir: Path) -> None:
    for task, metric in ((1, "mean_average_precision"), (2, "roc_auc"), (3, "roc_auc")):
        for name in ("linear_eval", "linear_eval_random-init"):
            report = json.loads((run_dir / f"results/task{task}/{name}.json").read_text())
            value = report["test_metrics"][metric]
            assert 0.0 <= value["value"] <= 1.0
            assert value["ci_low"] <= value["value"] <= value["ci_high"]
    assert (
        json.loads((run_dir / "results/task3/linear_eval.json").read_text())["test_metrics"][
            "c_index"
        ]["value"]
        is not None
    )


def test_finetuning_metrics_for_each_valid_init(run_dir: Path) -> None:
    for task, inits in ((1, ["random", "foundation"]), (2, ["random", "supervised", "foundation"])):
        for init in inits:
            metrics = json.loads(
                (run_dir / f"results/task{task}/finetune_{init}/metrics.json").read_text()
            )
            assert metrics["init"] == init and metrics["test_metrics"]
    assert not (run_dir / "results/task1/finetune_supervised").exists()


def test_exported_weights_load_strictly_into_the_configured_backbone(run_dir: Path) -> None:
    weights = load_weights(run_dir / "results/pretrain/model_weights.torch")
    assert weights.source_format == "fmcib"
    build_backbone("resnet10_w025").load_state_dict(weights.trunk, strict=True)
    safe = load_weights(run_dir / "results/pretrain/model_weights.safetensors")
    assert list(safe.trunk) == list(weights.trunk)
    assert all(torch.equal(v, safe.trunk[k]) for k, v in weights.trunk.items())


def test_feature_tables_carry_the_input_columns(run_dir: Path) -> None:
    table, features, names = read_features(run_dir / "results/task2/features/test.parquet")
    assert features.shape[1] == 128 and names[0] == "pred_0"
    assert {"image_path", "coordX", "malignancy", "case_id"} <= set(table.columns)


def test_report_is_written(run_dir: Path) -> None:
    html = (run_dir / "results/report/report.html").read_text()
    assert "<table" in html and "data:image/png;base64" in html


def test_a_custom_task_on_a_demo_label_runs_to_its_linear_evaluation(
    run_dir: Path, tmp_path: Path
) -> None:
    tables = {split: f"{DEMO_DIR}/task2_{split}.csv" for split in ("train", "val", "test")}
    extra = tmp_path / "custom.yaml"
    extra.write_text(
        json.dumps({"custom_tasks": {"malignancy_b": {"label": "malignancy", "tables": tables}}})
    )
    target = "results/malignancy_b/linear_eval.json"
    result = _snakemake(run_dir, target, configs=(str(extra),))
    assert result.returncode == 0, result.stderr[-6000:]
    custom = json.loads((run_dir / target).read_text())
    paper = json.loads((run_dir / "results/task2/linear_eval.json").read_text())
    assert custom["task"] == "malignancy_b" and custom["label"] == "malignancy"
    # the same label on the same tables and features: Task 2's numbers, to the digit
    assert custom["test_metrics"] == paper["test_metrics"]
    assert custom["model_selection"] == paper["model_selection"]
    planned = _snakemake(run_dir, "-n", "all", configs=(str(extra),))
    jobs = _planned_jobs(planned)
    # the custom task's other feature sources: random-init control and handcrafted descriptor
    assert jobs.get("finetune") == 3 and jobs.get("linear_eval") == 2, jobs


def test_second_run_has_nothing_to_do(run_dir: Path) -> None:
    result = _snakemake(run_dir, "-n", "all")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_moved_copy_of_the_finished_checkout_has_nothing_to_do(
    run_dir: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "moved elsewhere ü" / "copy"
    shutil.copytree(run_dir, moved, symlinks=True)
    result = _snakemake(moved, "-n", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


def test_deleting_an_intermediate_rebuilds_only_its_dependents(run_dir: Path) -> None:
    table = run_dir / "results/task2/features/test.parquet"
    aside = run_dir / "test.parquet.aside"
    table.rename(aside)
    try:
        result = _snakemake(run_dir, "-n", "all")
    finally:  # the finished run stays whole for the report tests that share it
        aside.rename(table)
    assert result.returncode == 0, result.stderr
    assert _planned_jobs(result) == {
        "extract_features": 1,
        "linear_eval": 1,
        "data_efficiency": 1,
        "stability": 1,
        "report": 1,
        "all": 1,
    }
