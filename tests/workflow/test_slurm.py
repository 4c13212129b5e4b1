"""The workflow through profiles/slurm on a real one-node SLURM cluster that the test starts.

Every job must go through sbatch (the controller lists it as COMPLETED under the run's job name,
with the rule in its comment), and the targets must match a local run of the same config. The
SLURM run extracts each feature table in two shards (``--set-scatter features=2``): two SLURM
jobs per table, gathered into the local, unsharded run's table, byte for byte. A second run
pretrains with ``launcher: srun``: two DDP ranks that srun starts inside one SLURM job, to the
numbers of Lightning's own two ranks in a local run.
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

import pandas as pd
import pytest
import torch
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


def _tiny_config(folder: Path, override: dict | None = None, name: str = "tiny") -> Path:
    config = _merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), TINY)
    config = _merged(config, override or {})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(
    args: list[str], workdir: Path, env: dict[str, str], targets: list[str] = TARGETS
) -> subprocess.CompletedProcess[str]:
    # Targets first: options such as --configfile take every word that follows them.
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S), str(SNAKEMAKE), *targets]
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


# Pretraining on 2 CPU ranks (gloo), 1 DataLoader worker each. Locally the rule's one process
# gets threads 1 x 2 + 1 = 3, capped by --cores 2: Lightning's 2 ranks get max(1, (2 - 2) // 2)
# = 1 torch thread each. With srun each task would get 1 + 1 = 2 CPUs; the test node declares
# the machine's CPUs (2 here), so each task gets 1 (SRUN_THREADS), less its worker: 1 torch
# thread too. Equal thread counts, the same seed, and gloo's sums of 2 ranks' gradients
# (a + b = b + a): the two runs must agree bit for bit, which
# tests/workflow_scripts/test_pretrain.py also finds for 2 ranks started by hand.
DDP = {"pretrain": {"devices": 2, "num_workers": 1}}
SRUN_THREADS = ["--set-threads", "pretrain=1"]
PRETRAIN_OUTPUTS = ["results/pretrain/ssl_log.csv", "results/pretrain/ssl_final.ckpt"]
# What the SLURM run takes from the local run instead of making it again: the demo data, its
# validation reports and the volume cache (copied with their times: up to date), so that
# pretraining is its one SLURM job.
PRETRAIN_INPUTS = ["resources", "results/validation"]
# The requeue signal as README "SLURM" has the profile ask for it (the job ends long before).
SIGNAL = {"set-resources": {"pretrain": {"slurm_extra": "'--signal=SIGUSR1@90'"}}}


def _profile_with(folder: Path, settings: dict) -> Path:
    """A copy of profiles/slurm with ``settings`` added, in ``folder/profile``."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text()) | settings
    (folder / "profile").mkdir()
    (folder / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder / "profile"


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_LIMIT_S + 600)
def test_srun_starts_the_ddp_ranks_inside_one_job(slurm_cluster: SlurmCluster, tmp_path: Path):
    local, on_slurm = tmp_path / "local", tmp_path / "slurm"
    config = _tiny_config(tmp_path, DDP, "ddp")
    local_run = _snakemake(
        ["--cores", "2", "--configfile", str(config)], local, dict(os.environ), PRETRAIN_OUTPUTS
    )
    assert local_run.returncode == 0, f"local run failed:\n{local_run.stderr}\n{_job_logs(local)}"
    assert "rank 1 of 2 (started by Lightning)" in (local / "logs/pretrain.log").read_text()
    for folder in PRETRAIN_INPUTS:
        shutil.copytree(local / folder, on_slurm / folder, symlinks=True)

    srun = _tiny_config(tmp_path, _merged(DDP, {"pretrain": {"launcher": "srun"}}), "srun")
    profile = _profile_with(tmp_path, SIGNAL)
    args = ["--profile", str(profile), "--configfile", str(srun), *SLURM_TEST_ARGS, *SRUN_THREADS]
    slurm_run = _snakemake(args, on_slurm, slurm_cluster.env, PRETRAIN_OUTPUTS)
    output = slurm_run.stdout + slurm_run.stderr
    context = f"{output}\n{_job_logs(on_slurm)}\n{slurm_cluster.logs()}"
    assert slurm_run.returncode == 0, f"SLURM run failed:\n{context}"
    launch = "srun --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --kill-on-bad-exit=1 python "
    assert launch in output, context
    assert "mpi=srun, slurm_extra=--signal=SIGUSR1@90" in output, context  # sbatch took it
    run_id = re.search(r"SLURM run ID: (\S+)", output)
    assert run_id, f"the run did not use the SLURM executor:\n{context}"
    jobs = [job for job in slurm_cluster.jobs() if job["JobName"] == run_id.group(1)]
    assert [_rule_of(job["Comment"]) for job in jobs] == ["pretrain"], context
    (job,) = jobs
    assert job["JobState"] == "COMPLETED", context
    assert (job["NumTasks"], job["NumCPUs"]) == ("2", "2"), job  # 2 tasks x 1 CPU

    log = (on_slurm / "logs/pretrain.log").read_text()
    for rank in (0, 1):  # each rank is an srun task, not a process Lightning started
        assert f"rank {rank} of 2 (SLURM_PROCID {rank})" in log, log[-3000:]
    assert "SLURM auto-requeueing enabled" in log
    steps = pd.read_csv(on_slurm / PRETRAIN_OUTPUTS[0])
    assert len(steps) >= 2, steps  # a step after the first update is compared too
    assert (on_slurm / PRETRAIN_OUTPUTS[0]).read_bytes() == (
        local / PRETRAIN_OUTPUTS[0]
    ).read_bytes()
    ours, theirs = (
        torch.load(folder / PRETRAIN_OUTPUTS[1], map_location="cpu", weights_only=True)
        for folder in (on_slurm, local)
    )
    assert ours["global_step"] == theirs["global_step"] == len(steps)
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, tensor in ours["state_dict"].items():
        assert torch.equal(tensor, theirs["state_dict"][key]), f"{key} differs"

    # A job killed after its last checkpoint and run again (Snakemake's retries): both ranks
    # resume from the work folder's last.ckpt, take no step, and write the same outputs.
    first_log = (on_slurm / PRETRAIN_OUTPUTS[0]).read_bytes()
    for target in PRETRAIN_OUTPUTS:
        (on_slurm / target).unlink()
    rerun = _snakemake(args, on_slurm, slurm_cluster.env, PRETRAIN_OUTPUTS)
    context = f"{rerun.stdout}{rerun.stderr}\n{_job_logs(on_slurm)}\n{slurm_cluster.logs()}"
    assert rerun.returncode == 0, f"SLURM rerun failed:\n{context}"
    log = (on_slurm / "logs/pretrain.log").read_text()
    assert log.count("resuming the run in results/pretrain/run from ") == 2, log[-3000:]
    assert (on_slurm / PRETRAIN_OUTPUTS[0]).read_bytes() == first_log
    resumed = torch.load(on_slurm / PRETRAIN_OUTPUTS[1], map_location="cpu", weights_only=True)
    assert resumed["global_step"] == len(steps)
