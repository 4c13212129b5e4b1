"""The Snakemake-free functions that turn the config into table paths and target lists."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow_scripts"))

import targets  # noqa: E402


@pytest.fixture()
def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_table_paths_and_labels(demo_config: dict) -> None:
    tables = targets.table_paths(demo_config)
    assert tables["pretrain"] == "resources/demo/pretrain.csv"
    assert tables["task2_val"] == "resources/demo/task2_val.csv"
    assert len(tables) == 10
    assert targets.table_labels("pretrain") == []
    assert targets.table_labels("task1_test") == ["Coarse_lesion_type"]
    assert targets.table_labels("task3_train") == ["survival"]


def test_supervised_init_only_for_tasks_2_and_3(demo_config: dict) -> None:
    assert targets.finetune_inits(demo_config, 1) == ["random", "foundation"]
    assert targets.finetune_inits(demo_config, 2) == ["random", "supervised", "foundation"]
    cfg = copy.deepcopy(demo_config)
    cfg["tasks"] = [2]
    assert "supervised" not in targets.finetune_inits(cfg, 2)


def test_published_weights_skip_pretraining(demo_config: dict) -> None:
    assert "results/pretrain/model_weights.torch" in targets.all_targets(demo_config)
    cfg = copy.deepcopy(demo_config)
    cfg["pretrained_weights"] = "weights/model_weights.torch"
    assert targets.foundation_weights(cfg) == "weights/model_weights.torch"
    assert targets.foundation_source(cfg) == "published"
    assert not any("pretrain" in t for t in targets.all_targets(cfg) if "validation" not in t)


def test_all_targets_cover_every_task(demo_config: dict) -> None:
    all_ = targets.all_targets(demo_config)
    for task in (1, 2, 3):
        assert f"results/task{task}/linear_eval.json" in all_
        assert f"results/task{task}/linear_eval_random-init.json" in all_
        assert f"results/task{task}/features/test.parquet" in all_
    assert "results/task1/finetune_supervised/metrics.json" not in all_
    assert "results/task3/finetune_supervised/metrics.json" in all_
    assert all_[-1] == "results/report/report.html"
    cfg = copy.deepcopy(demo_config)
    cfg["features"]["random_init_control"] = False
    assert not any("random-init" in t for t in targets.all_targets(cfg))


def test_missing_tables_named_by_key(demo_config: dict, tmp_path: Path) -> None:
    assert targets.missing_tables(demo_config) == []  # the demo rule makes them
    cfg = copy.deepcopy(demo_config)
    cfg["demo"] = None
    cfg["tables"]["task2"]["val"] = str(tmp_path / "nope.csv")
    cfg["tables"]["pretrain"] = str(tmp_path / "none.csv")
    missing = targets.missing_tables(cfg)
    assert f"tables.task2.val ({tmp_path / 'nope.csv'})" in missing
    assert any(m.startswith("tables.pretrain") for m in missing)


def test_cli_flags() -> None:
    flags = targets.cli_flags({"batch_size": 8, "precision": "32-true", "gap": None, "csv": True})
    assert flags == "--batch-size 8 --precision 32-true --csv"
    assert targets.cli_flags({"csv": False}) == ""
