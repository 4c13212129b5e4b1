"""Config problems as one line each, naming the file that set the key."""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.config_check import config_problems, config_sources, yaml_problem

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"


def test_every_problem_names_the_source_that_set_the_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    base, mine = tmp_path / "base.yaml", tmp_path / "mine.yaml"
    base.write_text("tables: {}\npretrain: {epochs: 3}\nseed: -1\n")
    mine.write_text("pretrain: {epochs: 0}\nfinetune: {inits: [imagenet]}\n")
    sources = config_sources([base], [mine], {"patch_size": 8})
    config = {
        "tables": {},
        "seed": -1,
        "pretrain": {"epochs": 0},
        "finetune": {"inits": ["imagenet"]},
        "patch_size": 8,
    }
    assert config_problems(config, SCHEMA, sources) == [
        "mine.yaml: finetune.inits.0: 'imagenet' is not one of ['random', 'supervised', "
        "'foundation']",
        "--config: patch_size: 8 is less than the minimum of 16",
        "mine.yaml: pretrain.epochs: 0 is less than the minimum of 1",
        "base.yaml: seed: -1 is less than the minimum of 0",
    ]


def test_missing_required_key_and_clean_config(tmp_path: Path) -> None:
    assert config_problems({}, SCHEMA, [("c.yaml", {})]) == [
        "c.yaml: (top level): 'tables' is a required property; add it"
    ]
    assert config_problems({"tables": {}}, SCHEMA, [("c.yaml", {"tables": {}})]) == []


def test_yaml_problem_names_file_line_and_column(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("a: 1\n")
    bad.write_text("a: 1\nb: [2\nc: 3\n")
    assert yaml_problem(good) is None
    problem = yaml_problem(bad)
    assert problem.startswith(f"{bad}:3:2: invalid YAML: ") and problem.endswith("there")
