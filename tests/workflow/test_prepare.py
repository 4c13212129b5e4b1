"""The `prepare:` section: prepared tables replace `tables:` entries, every key reaches its
converter, and (slow) a real run from raw dataset folders to Task 2's linear evaluation."""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.prepare import fixtures
from workflow_scripts import config_tables, rule_args, targets

ROOT = Path(__file__).resolve().parents[2]


def _config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def _datasets(tmp_path: Path) -> dict:
    """Empty dataset folders, enough for table paths and dry runs."""
    for folder in ("DeepLesion/Images_png", "NSCLC-Radiomics", "LUNA16"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "DeepLesion" / "DL_info.csv").touch()
    (tmp_path / "clinical.csv").touch()
    (tmp_path / "lidc.sqlite").touch()
    return {
        "out_dir": str(tmp_path / "prepared"),
        "deeplesion": {"root": str(tmp_path / "DeepLesion"), "max_slice_spacing_mm": 3.5},
        "lung1": {
            "root": str(tmp_path / "NSCLC-Radiomics"),
            "clinical": str(tmp_path / "clinical.csv"),
            "roi": "^gtv-primary$",
            "skip_missing_roi": True,
            "split": [0.6, 0.2, 0.2],
        },
        "luna16": {
            "root": str(tmp_path / "LUNA16"),
            "lidc_db": str(tmp_path / "lidc.sqlite"),
            "split": [0.7, 0.1, 0.2],
        },
    }


def test_prepared_tables_replace_the_configured_ones(tmp_path: Path) -> None:
    config = _config("paper.yaml")
    assert targets.missing_tables(config)  # REPLACE_ME everywhere
    config["prepare"] = _datasets(tmp_path)
    tables = config_tables.table_paths(config)
    out = tmp_path / "prepared"
    assert tables["pretrain"] == str(out / "deeplesion" / "pretrain.csv")
    assert tables["task1_val"] == str(out / "deeplesion" / "task1_val.csv")
    assert tables["task2_train"] == str(out / "luna16" / "task2_train.csv")
    assert tables["task3_test"] == str(out / "lung1" / "task3_test.csv")
    assert config_tables.task_splits(config, "task3") == ["train", "val", "test"]
    assert targets.missing_tables(config) == []  # the prepare rules make every table
    partial = copy.deepcopy(config)
    partial["prepare"]["lung1"] = None
    missing = targets.missing_tables(partial)
    assert missing and all(m.startswith("tables.task3.") for m in missing)


def test_every_prepare_key_reaches_its_converter(tmp_path: Path) -> None:
    config = _config("config.yaml") | {"seed": 7}
    config["prepare"] = _datasets(tmp_path)
    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    datasets = schema["properties"]["prepare"]["properties"]
    for name in ("deeplesion", "lung1", "luna16"):
        options = rule_args.prepare_options(config, name)
        assert "--seed 7" in options
        for key, value in config["prepare"][name].items():
            assert key in datasets[name]["properties"]
            if key in rule_args.PREPARE_INPUTS:
                continue  # rule inputs (checked in the dry run below)
            flag = "--" + key.replace("_", "-")
            shown = (
                " ".join(map(str, value)) if isinstance(value, list) else shlex.quote(str(value))
            )
            assert (flag if value is True else f"{flag} {shown}") in options, (name, key)
        assert set(datasets[name]["properties"]) == set(config["prepare"][name])
    assert "--split 0.5 0.25 0.25" in rule_args.prepare_options(
        {"seed": 0, "prepare": {"luna16": {"root": "x"}}}, "luna16"
    )


def _snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
         "-d", str(workdir), *args],
        env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout,
    )  # fmt: skip


def test_dry_run_prepares_validates_and_runs_on_the_prepared_tables(tmp_path: Path) -> None:
    extra = tmp_path / "prepare.yaml"
    extra.write_text(yaml.safe_dump({"prepare": _datasets(tmp_path)}))
    paper = str(ROOT / "config/paper.yaml")
    result = _snakemake(tmp_path, "all", "-n", "-p", "--configfile", paper, str(extra))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for rule in ("prepare_deeplesion", "prepare_lung1", "prepare_luna16", "validate_table"):
        assert f"rule {rule}:" in out
    assert "make_demo_data" not in out
    prepared = tmp_path / "prepared"
    assert f"validate_table.py {prepared / 'luna16' / 'task2_train.csv'} --labels malignancy" in out
    assert f"--lidc-db {tmp_path / 'lidc.sqlite'}" in out
    assert f"--clinical {tmp_path / 'clinical.csv'}" in out
    assert "--roi '^gtv-primary$' --skip-missing-roi --seed 0 --split 0.6 0.2 0.2" in out


WORKFLOW_CASES = [
    fixtures.DeepLesionCase(patient=p, split=1 if p <= 8 else 2, kind=1 + p % 8)
    for p in range(1, 13)
]


def _luna_scans() -> list[fixtures.LunaScan]:
    """Eight patients, each with a benign and a malignant nodule: every split has both."""
    return [
        fixtures.LunaScan(
            f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{2000 + n}",
            f"LIDC-IDRI-{n:04d}",
            [
                fixtures.LunaNodule((18.0 + n, 20.0, 8.0), (1, 2, 1), radius_mm=4.0),
                fixtures.LunaNodule((44.0, 42.0 - n, 14.0), (5, 4, 5), radius_mm=4.0),
            ],
        )
        for n in range(1, 9)
    ]


@pytest.mark.slow
def test_raw_datasets_to_linear_evaluation(tmp_path: Path) -> None:
    dl_info = fixtures.write_deeplesion(tmp_path / "DeepLesion", WORKFLOW_CASES)
    scans, db = fixtures.write_luna16(tmp_path / "LUNA16", _luna_scans())
    extra = tmp_path / "prepare.yaml"
    extra.write_text(yaml.safe_dump({
        "demo": None,
        "tasks": [2],
        "prepare": {"deeplesion": {"root": str(dl_info.parent)},
                    "luna16": {"root": str(scans), "lidc_db": str(db)}},
    }))  # fmt: skip
    configs = [str(ROOT / "config/config.yaml"), str(ROOT / "tests/workflow/tiny.yaml"), str(extra)]
    work = tmp_path / "run"
    target = "results/task2/linear_eval.json"
    result = _snakemake(work, target, "--cores", "2", "--configfile", *configs, timeout=1500)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((work / "logs").rglob("*.log")))
    assert result.returncode == 0, result.stderr[-5000:] + logs[-8000:]
    report = json.loads((work / target).read_text())
    assert 0.0 <= report["test_metrics"]["roc_auc"]["value"] <= 1.0
    for table in ("pretrain", "task2_train", "task2_val", "task2_test"):
        assert json.loads((work / f"results/validation/{table}.json").read_text())["n_rows"] > 0
    summary = json.loads((work / "resources/prepared/luna16/summary.json").read_text())
    assert summary["class_balance"]["luna16"] == {"0": 8, "1": 8}
    again = _snakemake(work, target, "-n", "--configfile", *configs)
    assert "Nothing to be done" in again.stdout + again.stderr
