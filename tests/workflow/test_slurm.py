"""The workflow through profiles/slurm on a real one-node SLURM cluster that the test starts.

Every job must go through sbatch (the controller lists it as COMPLETED under the run's job name,
with the rule in its comment), and the targets must match a local run of the same config. The
SLURM run extracts each feature table in two shards (``--set-scatter features=2``): two SLURM
jobs per table, gathered into the local, unsharded run's table, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from slurm_cluster import SlurmCluster, ensure_installed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "slurm"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"

# What both runs build.
# linear_eval.json depends on pretraining, export, features of three splits and validation, so
# equal JSONs mean every GPU-capable rule ran through sbatch to the same numbers as locally.
TARGETS = ["results/validation/task2_val.json", "results/task2/linear_eval.json"]
# Built on the way: the feature tables, by 2 shard jobs each on SLURM and 1 job each locally.
FEATURE_TABLES = [f"results/task2/features/{split}.parquet" for split in ("train", "val", "test")]
SHARDS = 2
# Keys of JSON outputs whose values legitimately differ between two runs (timings).
VOLATILE_KEYS: frozenset[str] = frozenset()
# Merged into config/config.yaml (nested keys one by one) to make the demo small enough for a test:
# the tiny overrides of the local end-to-end run, and only the task the targets need.
TINY: dict[str, Any] = {
    **yaml.safe_load((Path(__file__).parent / "tiny.yaml").read_text()),
    "tasks": [2],
}
RUN_LIMIT_S = 900
# Test-only executor settings: fail at the first error and poll SLURM soon after submitting;
# keep the per-job SLURM logs so that a failure can show them.
SLURM_TEST_ARGS = [
    "--retries",
    "0",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
]


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    reason = ensure_installed()
    if reason is not None:
        pytest.skip(f"cannot start a SLURM test cluster: {reason}")
    # Not pytest's tmp_path: munged needs every parent folder of its socket searchable by all,
    # and a socket path shorter than 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="fmcib-slurm-", dir="/tmp"))
    try:
        cluster = SlurmCluster.start(root)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if nested else value
    return out


def _tiny_config(folder: Path) -> Path:
    config = _merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), TINY)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(
    args: list[str], workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    # Targets first: options such as --configfile take every word that follows them.
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S), str(SNAKEMAKE), *TARGETS]
    cmd += ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    # Rules call `python`: the venv's, in the jobs too (sbatch --export=ALL passes PATH on).
    env = dict(env, PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}")
    return subprocess.run(
        cmd, cwd=workdir.parent, env=env, capture_output=True, encoding="utf-8", errors="replace"
    )


def _job_stats(output: str) -> Counter[str]:
    """Jobs per rule from Snakemake's "Job stats" table, leaving out local rules."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter()
    for line in table.splitlines()[3:]:
        rule, count = line.split()
        if rule != "total":
            counts[rule] = int(count)
    for rule in re.findall(r"^localrule (\w+):", output, flags=re.MULTILINE):
        counts.pop(rule, None)
    return counts


def _rule_of(comment: str) -> str:
    """The rule in the plugin's job comment, ``rule_<name>`` or ``rule_<name>_wildcards_<...>``."""
    return comment.removeprefix("rule_").split("_wildcards_", 1)[0]


def _job_logs(workdir: Path) -> str:
    """The tails of the rules' logs and of the plugin's per-job SLURM logs."""
    logs = sorted((workdir / "logs").rglob("*.log"))
    logs += sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    return "\n".join(f"--- {p} ---\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def _comparable(path: Path, workdir: Path) -> Any:
    """A file's content with the run's folder and volatile JSON keys taken out."""
    if path.suffix != ".json":
        return path.read_bytes()

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(path.read_text().replace(str(workdir), "<workdir>")))


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_LIMIT_S + 600)
def test_profile_runs_every_job_through_sbatch(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    config = _tiny_config(tmp_path)
    local, on_slurm = tmp_path / "local", tmp_path / "slurm"

    local_run = _snakemake(["--cores", "2", "--configfile", str(config)], local, dict(os.environ))
    status = local_run.returncode
    assert status == 0, f"local run failed:\n{local_run.stderr}\n{_job_logs(local)}"

    args = ["--profile", str(PROFILE), "--configfile", str(config), *SLURM_TEST_ARGS]
    args += ["--set-scatter", f"features={SHARDS}"]
    slurm_run = _snakemake(args, on_slurm, slurm_cluster.env)
    output = slurm_run.stdout + slurm_run.stderr
    context = f"{output}\n{_job_logs(on_slurm)}\n{slurm_cluster.logs()}"
    status = slurm_run.returncode
    assert status == 0, f"SLURM run failed:\n{context}"

    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, f"the run did not use the SLURM executor:\n{context}"
    assert "Falling back to 'sacct'" not in output, "job states did not come from squeue"
    jobs = [job for job in slurm_cluster.jobs() if job["JobName"] == run_id.group(1)]
    states = [(job["JobId"], job["Comment"], job["JobState"]) for job in jobs]
    assert {state for *_, state in states} == {"COMPLETED"}, f"{states}\n{context}"
    submitted = Counter(_rule_of(comment) for _, comment, _ in states)
    assert submitted == _job_stats(output), context

    for target in TARGETS + FEATURE_TABLES:
        assert _comparable(on_slurm / target, on_slurm) == _comparable(local / target, local), (
            f"{target} differs between the SLURM and the local run"
        )

    # Each shard of each feature table was a SLURM job of its own.
    shard_jobs: dict[str, set[tuple[str, str]]] = {}
    for job_id, comment, _ in states:
        if _rule_of(comment) == "extract_features":
            table, _, item = comment.split("_wildcards_", 1)[1].rpartition("_")
            shard_jobs.setdefault(table, set()).add((item, job_id))
    for split in ("train", "val", "test"):
        jobs_of_table = shard_jobs.get(f"task2_features_{split}", set())
        assert sorted(item for item, _ in jobs_of_table) == [f"{i}-of-{SHARDS}" for i in (1, 2)], (
            f"{split}: {sorted(jobs_of_table)}\n{context}"
        )
    job_ids = [job_id for jobs_of_table in shard_jobs.values() for _, job_id in jobs_of_table]
    assert len(set(job_ids)) == len(job_ids) == 3 * SHARDS, shard_jobs
    assert "gather_features" not in submitted and "localrule gather_features:" in output


@pytest.mark.slurm
@pytest.mark.slow
def test_gpu_rules_can_be_scheduled(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "gpu.out"
    slurm_cluster.client(
        "sbatch", "--wait", "--gpus=1", f"--output={out}", "--wrap", "echo $CUDA_VISIBLE_DEVICES"
    )
    assert out.read_text().strip() == "0"
