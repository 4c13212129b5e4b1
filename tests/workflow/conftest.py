"""The workflow tests' shared tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflow.test_run import _copy_checkout, _snakemake


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout copy after ``snakemake all`` of the tiny config (test_run.py's CONFIGS).

    Shared by test_run.py and test_snakemake_report.py, so the whole DAG runs once per session.
    A test that changes the run puts it back as it found it.
    """
    workdir = _copy_checkout(tmp_path_factory.mktemp("tiny_run") / "check out ü" / "fmcib-workflow")
    result = _snakemake(workdir, "all")
    logs = "\n".join(
        f"--- {p.relative_to(workdir)}\n{p.read_text()[-3000:]}"
        for p in sorted((workdir / "logs").rglob("*.log"))
        if p.stat().st_size
    ) if (workdir / "logs").is_dir() else ""  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:] + logs[-12000:]
    return workdir
