"""workflow_scripts cache_volumes.py, pretrain.py and export_weights.py, in-process via main([...]).

The DDP run goes through the command line in a subprocess, as the workflow rule runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from fmcib_core.io.weights import load_into, load_weights
from fmcib_core.models import build_backbone
from fmcib_core.optim import scaled_lr
from tests.ports import free_ports
from tests.train import write_lesion_table
from tests.workflow_scripts import SCRIPTS, import_script, with_schema_defaults
from tests.workflow_scripts import test_write_errors as write_errors

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = "resnet10_w025"
LESIONS = 8
full_disk = write_errors.full_disk  # the fixture: a writer or a rename fails with ENOSPC


@pytest.fixture(scope="module")
def scripts():
    return {name: import_script(name) for name in ("cache_volumes", "pretrain", "export_weights")}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    return write_lesion_table(folder, n_images=2, lesions_per_image=LESIONS // 2)


@pytest.fixture(scope="module")
def cache(scripts, source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "cache"
    assert scripts["cache_volumes"].main(["--table", str(source), "--out", str(out)]) == 0
    return out


def pretrain_args(cache: Path, folder: Path, *extra: str) -> list[str]:
    return [
        "--cache", str(cache), "--work-dir", str(folder / "run"),
        "--out-checkpoint", str(folder / "ssl.ckpt"), "--out-log", str(folder / "log.csv"),
        "--backbone", BACKBONE, "--patch-size", "16", "--accelerator", "cpu", "--seed", "0",
        "--batch-size", "4", "--epochs", "1", "--num-workers", "0", "--devices", "1",
        "--base-lr", "0.3", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(scripts, cache, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    torch.set_num_threads(1)
    assert scripts["pretrain"].main(pretrain_args(cache, folder)) == 0
    return folder


def test_cache_volumes_writes_the_table_and_one_cache_per_image(cache, source):
    table = pd.read_csv(cache / "table.csv")
    assert len(table) == LESIONS and table["cache_path"].nunique() == 2
    assert table["image_path"].tolist() == pd.read_csv(source)["image_path"].tolist()
    assert sorted(p.name for p in cache.parent.iterdir()) == ["cache"]


@pytest.mark.parametrize(
    ("problem", "message"),
    [("missing_table", "table does not exist"), ("missing_image", "nowhere.nii.gz")],
)
def test_cache_volumes_bad_input_exits_1_and_writes_nothing(
    scripts, source, tmp_path, capsys, problem, message
):
    table = tmp_path / "table.csv"
    if problem == "missing_image":
        pd.read_csv(source).assign(image_path="nowhere.nii.gz").to_csv(table, index=False)
    out = tmp_path / "cache"
    assert scripts["cache_volumes"].main(["--table", str(table), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert not out.exists() and not list(tmp_path.glob(".cache*"))


def test_pretrain_writes_the_checkpoint_and_a_per_step_log(pretrained):
    log = pd.read_csv(pretrained / "log.csv")
    assert log.columns.tolist() == ["step", "epoch", "loss", "lr"]
    assert log["step"].tolist() == [0, 1] and log["epoch"].tolist() == [0, 0]
    assert log["lr"].iloc[0] == pytest.approx(scaled_lr(0.3, 4))
    assert log["lr"].iloc[1] == pytest.approx(scaled_lr(0.3, 4) / 2)  # cosine half-way
    assert log["loss"].notna().all()
    checkpoint = torch.load(pretrained / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert {k.split(".")[0] for k in checkpoint["state_dict"]} == {"backbone", "head"}


def test_pretrain_rerun_resumes_and_a_changed_argument_starts_fresh(
    scripts, cache, tmp_path, capsys
):
    args = pretrain_args(cache, tmp_path)
    assert scripts["pretrain"].main(args) == 0
    first = pd.read_csv(tmp_path / "log.csv")
    capsys.readouterr()
    assert scripts["pretrain"].main(args) == 0  # a finished run: resumes, takes no step
    err = capsys.readouterr().err
    assert "resuming the run" in err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "log.csv"), first)
    checkpoint = torch.load(tmp_path / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert scripts["pretrain"].main([*args[:-2], "--base-lr", "0.6"]) == 0
    err = capsys.readouterr().err
    assert "changed: base_lr" in err and "starting fresh" in err
    assert pd.read_csv(tmp_path / "log.csv")["lr"].iloc[0] == pytest.approx(scaled_lr(0.6, 4))


def test_pretrain_with_adamw_and_warmup(scripts, cache, tmp_path):
    args = pretrain_args(cache, tmp_path, "--optimizer", "adamw", "--warmup-steps", "1")
    assert scripts["pretrain"].main(args) == 0
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["lr"].iloc[0] == pytest.approx(scaled_lr(0.3, 4) / 2)  # warm-up: lr * 1 / 2
    assert log["lr"].iloc[1] == pytest.approx(scaled_lr(0.3, 4))  # the cosine's first step
    checkpoint = torch.load(tmp_path / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert "betas" in checkpoint["optimizer_states"][0]["param_groups"][0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--optimizer", "adamw", "--trust-coefficient", "0.001"], "not trust_coefficient"),
        (["--optimizer", "lars", "--nesterov"], "not nesterov"),
        (["--warmup-steps", "2"], "below the run's 2 optimiser steps"),
    ],
)
def test_pretrain_refuses_options_of_another_optimizer(
    scripts, cache, tmp_path, capsys, extra, message
):
    assert scripts["pretrain"].main(pretrain_args(cache, tmp_path, *extra)) == 1
    assert message in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def test_pretrain_refuses_fewer_lesions_than_one_global_batch(scripts, cache, tmp_path, capsys):
    args = pretrain_args(cache, tmp_path, "--batch-size", "5", "--devices", "2")
    assert scripts["pretrain"].main(args) == 1
    err = capsys.readouterr().err
    assert f"{LESIONS} lesion(s), fewer than one global batch of 10" in err
    assert sorted(tmp_path.iterdir()) == []


def test_pretrain_refuses_a_missing_cache(scripts, tmp_path, capsys):
    assert scripts["pretrain"].main(pretrain_args(tmp_path / "nowhere", tmp_path)) == 1
    err = capsys.readouterr().err
    assert "no table.csv; build the cache" in err
    assert sorted(tmp_path.iterdir()) == []


def test_export_writes_the_trained_backbone_in_fmcib_format(scripts, pretrained, tmp_path):
    out = tmp_path / "model_weights.torch"
    checkpoint = str(pretrained / "ssl.ckpt")
    assert (
        scripts["export_weights"].main(
            ["--checkpoint", checkpoint, "--backbone", BACKBONE, "--out", str(out)]
        )
        == 0
    )
    exported = torch.load(out, map_location="cpu", weights_only=True)
    assert list(exported) == ["trunk_state_dict"]
    backbone = build_backbone(BACKBONE)
    load_into(backbone, exported["trunk_state_dict"], what="backbone", source=out)
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, trained[f"backbone.{key}"], rtol=0, atol=0)
    assert load_weights(out).source_format == "fmcib"


def test_export_also_writes_identical_safetensors(scripts, pretrained, tmp_path):
    out, safe = tmp_path / "model_weights.torch", tmp_path / "model_weights.safetensors"
    argv = ["--checkpoint", str(pretrained / "ssl.ckpt"), "--backbone", BACKBONE]
    assert (
        scripts["export_weights"].main([*argv, "--out", str(out), "--out-safetensors", str(safe)])
        == 0
    )
    pickled, safetensors = load_weights(out), load_weights(safe)
    assert list(pickled.trunk) == list(safetensors.trunk) and safetensors.head is None
    for key, value in pickled.trunk.items():
        assert torch.equal(value, safetensors.trunk[key]), key


def test_export_with_the_wrong_backbone_fails_naming_keys(scripts, pretrained, tmp_path, capsys):
    out = tmp_path / "model_weights.torch"
    args = [
        "--checkpoint",
        str(pretrained / "ssl.ckpt"),
        "--backbone",
        "resnet18",
        "--out",
        str(out),
    ]
    assert scripts["export_weights"].main(args) == 1
    err = capsys.readouterr().err
    assert "backbone weights do not fit the model" in err and "layer1.1" in err
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("where", "failing"), [("write", "ssl.ckpt"), ("rename", "ssl.ckpt")])
def test_pretrain_outputs_on_a_full_disk(
    scripts, cache, pretrained, tmp_path, full_disk, capsys, where, failing
):
    shutil.copytree(pretrained / "run", tmp_path / "run")  # resumes a finished run: no step
    if where == "write":
        full_disk(shutil, "copyfile")
    else:
        full_disk(rename=tmp_path / failing)  # renamed after log.csv, which is removed again
    assert scripts["pretrain"].main(pretrain_args(cache, tmp_path)) == 1
    lines = write_errors.error_lines(capsys.readouterr().err)
    assert lines == [f"pretrain: {write_errors.cannot_write(tmp_path / failing)}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_export_on_a_full_disk(scripts, pretrained, tmp_path, monkeypatch, capsys):
    def failing_save(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "model_weights.torch"
    checkpoint = str(pretrained / "ssl.ckpt")
    args = ["--checkpoint", checkpoint, "--backbone", BACKBONE, "--out", str(out)]
    assert scripts["export_weights"].main(args) == 1
    cause = "PytorchStreamWriter failed writing file data/0: file write failed"
    lines = write_errors.error_lines(capsys.readouterr().err)
    assert lines == [f"export_weights: {write_errors.cannot_write(out, cause)}"]
    assert sorted(tmp_path.iterdir()) == []


def _script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "MASTER_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _wait_for_ranks(ranks: list[subprocess.Popen], timeout: float) -> list[int]:
    """Each rank's exit code; once one fails or ``timeout`` s pass, the others are killed (-9).

    A rank left alone waits for a dead peer until DDP's own timeout (30 min).
    """
    deadline = time.monotonic() + timeout
    try:
        while any(rank.poll() is None for rank in ranks) and time.monotonic() < deadline:
            if any(rank.returncode not in (None, 0) for rank in ranks):
                break
            time.sleep(0.2)
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
                rank.wait()
    return [rank.returncode for rank in ranks]


def _ddp_args(cache: Path, folder: Path, *extra: str) -> list[str]:
    args = pretrain_args(cache, folder, "--devices", "2", "--batch-size", "2", *extra)
    args[args.index("--num-workers") + 1] = "1"
    return [sys.executable, str(SCRIPTS / "pretrain.py"), *with_schema_defaults("pretrain", args)]


@pytest.fixture(scope="module")
def ddp_local(cache, tmp_path_factory) -> tuple[Path, str]:
    """A 2-process CPU DDP run that Lightning launches: its folder and its stderr."""
    folder = tmp_path_factory.mktemp("ddp_local")
    # 6 CPUs less 1 DataLoader worker per rank: 2 torch threads per rank (Lightning's launcher
    # would give each rank the node's CPUs / 2)
    result = subprocess.run(
        _ddp_args(cache, folder, "--threads", "6"),
        capture_output=True, encoding="utf-8", errors="replace", cwd=folder, timeout=300,
        env=_script_env(MASTER_PORT=str(free_ports()[0])),  # else Lightning's pick, by bind(0)
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result.stderr


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_through_the_command_line(ddp_local):
    folder, stderr = ddp_local
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in stderr
    assert stderr.count("torch threads: 2 intra-op, 2 inter-op") == 2  # each rank
    assert "rank 1 of 2 (started by Lightning)" in stderr
    log = pd.read_csv(folder / "log.csv")
    assert log["step"].tolist() == [0, 1]  # 8 lesions / (2 per device x 2 devices)
    assert log["lr"].iloc[0] == pytest.approx(scaled_lr(0.3, 4))
    checkpoint = torch.load(folder / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2


@pytest.mark.slow
def test_ranks_that_srun_starts_train_as_lightnings_do(ddp_local, cache, tmp_path):
    # Two processes with the variables srun gives its 2 tasks on one node (SLURM 22.05); 3 CPUs
    # per task less its worker: 2 torch threads, as each of Lightning's ranks has above, so that
    # float sums match. gloo sums the 2 ranks' gradients, a + b = b + a: the same numbers.
    args = _ddp_args(cache, tmp_path, "--threads", "3", "--launcher", "srun")
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
             "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NAME": "pretrain", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(free_ports()[0])}  # fmt: skip
    logs = [tmp_path / f"rank{rank}.err" for rank in (0, 1)]
    ranks = []
    for rank, log_file in enumerate(logs):
        env = _script_env(**slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank))
        with open(log_file, "w") as err:
            ranks.append(subprocess.Popen(args, stderr=err, env=env, cwd=tmp_path))
    codes = _wait_for_ranks(ranks, timeout=300)
    stderr = [log_file.read_text(errors="replace") for log_file in logs]
    tails = [f"rank {i} (exit {codes[i]}):\n{text[-3000:]}" for i, text in enumerate(stderr)]
    assert codes == [0, 0], "\n".join(tails)
    for rank, text in enumerate(stderr):
        assert f"rank {rank} of 2 (SLURM_PROCID {rank})" in text
        assert "torch threads: 2 intra-op, 2 inter-op" in text
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in stderr[1]
    assert "SLURM auto-requeueing enabled" in stderr[0]
    local, _ = ddp_local
    ours, theirs = (pd.read_csv(folder / "log.csv") for folder in (tmp_path, local))
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    ours, theirs = (
        torch.load(folder / "ssl.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        for folder in (tmp_path, local)
    )
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_srun_launch_outside_srun_fails_saying_how_to_start_it(scripts, cache, tmp_path, capsys):
    args = pretrain_args(cache, tmp_path, "--devices", "2", "--batch-size", "2")
    assert scripts["pretrain"].main([*args, "--launcher", "srun", "--nodes", "2"]) == 1
    err = capsys.readouterr().err
    assert "--launcher srun: this process was not started by srun" in err
    assert "srun --nodes=2 --ntasks-per-node=2 python pretrain.py" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_pretrain_augments_on_the_device_when_asked(scripts, cache, tmp_path, capsys):
    args = pretrain_args(cache, tmp_path, "--augment-on", "device")
    assert scripts["pretrain"].main(args) == 0
    assert "views on the device" in capsys.readouterr().err
    log = pd.read_csv(tmp_path / "log.csv")
    assert len(log) == 2 and log["loss"].notna().all()
