"""The workflow as Snakemake sees it: lint, dry runs, config validation at parse time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_lint_is_clean(tmp_path: Path) -> None:
    result = _snakemake("--lint", "--configfile", str(ROOT / "config/config.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_dry_run_shows_the_whole_chain(tmp_path: Path) -> None:
    result = _snakemake("-n", "--configfile", str(ROOT / "config/config.yaml"), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for rule in (
        "make_demo_data",
        "validate_table",
        "cache_volumes",
        "pretrain",
        "export_weights",
        "finetune",
        "extract_features",
        "linear_eval",
        "report",
    ):
        assert rule in out


def test_single_target_builds_only_what_it_needs(tmp_path: Path) -> None:
    result = _snakemake(
        "-n",
        "results/task2/linear_eval.json",
        "--configfile",
        str(ROOT / "config/config.yaml"),
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "finetune" not in out and "report" not in out
    assert "task1" not in out.split("Job stats")[-1]


def test_paper_config_with_placeholders_fails_naming_keys(tmp_path: Path) -> None:
    result = _snakemake("-n", "--configfile", str(ROOT / "config/paper.yaml"), cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tables.pretrain (REPLACE_ME/pretrain.csv)" in out
    assert "tables.task3.test" in out


@pytest.mark.parametrize(
    ("override", "key"),
    [("pretrain={'epoch': 3}", "'epoch' was unexpected"), ("patch_size=8", "patch_size")],
)
def test_config_typo_or_bound_fails_at_parse_time(tmp_path: Path, override: str, key: str) -> None:
    result = _snakemake(
        "-n", "--configfile", str(ROOT / "config/config.yaml"), "--config", override, cwd=tmp_path
    )
    assert result.returncode != 0
    assert key in result.stdout + result.stderr


def test_published_weights_skip_pretraining(tmp_path: Path) -> None:
    weights = tmp_path / "model_weights.torch"
    weights.write_bytes(b"placeholder: the dry run only plans")
    result = _snakemake(
        "-n",
        "--configfile",
        str(ROOT / "config/config.yaml"),
        "--config",
        f"pretrained_weights={weights}",
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "pretrain " not in out and "cache_volumes" not in out
