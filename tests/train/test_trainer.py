"""fmcib_core.train.trainer: the shared Trainer, resuming by signature, per-step metrics."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero_only
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from torch import nn

from fmcib_core.optim import cosine_per_step
from fmcib_core.train.trainer import (
    _default_sync,
    build_trainer,
    last_checkpoint,
    read_step_metrics,
    resume_checkpoint,
)

STEPS_PER_EPOCH = 4
SIGNATURE = {"lr": 0.1, "epochs": 2, "name": "tiny"}


class Tiny(L.LightningModule):
    """Linear regression with children named like ours; SGD with momentum, per-step cosine."""

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)
        self.total_steps = total_steps
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.head(self.backbone(x)), y)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.lrs.append(lr)
        self.log("loss", loss)
        self.log("lr", lr)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        scheduler = functools.partial(cosine_per_step, total_steps=self.total_steps)(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS_PER_EPOCH * 2, 3, generator=generator)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=2)


def fit(work_dir: Path, max_epochs: int, signature=SIGNATURE) -> tuple[L.Trainer, Tiny]:
    """Seed, build, resume if the signature allows, train; the schedule spans 2 epochs."""
    torch.manual_seed(0)
    module = Tiny(total_steps=2 * STEPS_PER_EPOCH)
    resume = resume_checkpoint(work_dir, signature)
    trainer = build_trainer(work_dir, max_epochs=max_epochs, progress_bar=False)
    trainer.fit(module, loader(), ckpt_path=resume)
    return trainer, module


def test_build_trainer_checkpoints_logs_and_picks_ddp_for_several_devices(tmp_path):
    extra = ModelCheckpoint(monitor="loss", filename="best")
    trainer = build_trainer(tmp_path, max_epochs=3, callbacks=[extra], progress_bar=False)
    assert trainer.max_epochs == 3 and trainer.log_every_n_steps == 1
    assert trainer.checkpoint_callback is extra  # extra ModelCheckpoints come first
    assert [c.dirpath for c in trainer.checkpoint_callbacks][1] == str(tmp_path / "checkpoints")
    assert any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks)
    assert [type(x) for x in trainer.loggers] == [CSVLogger, TensorBoardLogger]
    assert trainer.loggers[0].log_dir.startswith(str(tmp_path / "logs"))
    ddp = build_trainer(tmp_path, max_epochs=1, devices=2, progress_bar=False)
    assert type(ddp.strategy).__name__ == "DDPStrategy"
    assert ddp.strategy._process_group_backend in (None, "gloo")
    assert ddp._accelerator_connector._layer_sync is None  # SyncBatchNorm needs GPUs
    assert _default_sync(None, "gpu", 2) and not _default_sync(None, "gpu", 1)
    synced = build_trainer(tmp_path, max_epochs=1, devices=2, sync_batchnorm=True)
    assert synced._accelerator_connector._layer_sync is not None
    with pytest.raises(ValueError, match="max_epochs"):
        build_trainer(tmp_path, max_epochs=0)


# What srun gives the second of 2 tasks on one node (SLURM 22.05, --ntasks-per-node=2).
SRUN_TASK_1 = {
    "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0", "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
    "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "fmcib",
}  # fmt: skip
# What the SLURM executor's job step (srun -n1) gives the one process of a job.
JOB_STEP = {**SRUN_TASK_1, "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
del JOB_STEP["SLURM_NTASKS_PER_NODE"]


def test_inside_a_slurm_job_step_lightning_still_starts_the_ranks(tmp_path, monkeypatch):
    # Left to itself Lightning takes the step's one task for the world: devices=2 would train as
    # one process on half of the data.
    for key, value in JOB_STEP.items():
        monkeypatch.setenv(key, value)
    trainer = build_trainer(tmp_path, max_epochs=1, devices=2, progress_bar=False)
    assert type(trainer._accelerator_connector.cluster_environment) is LightningEnvironment
    assert trainer.world_size == 2 and trainer.global_rank == 0
    with pytest.raises(ValueError, match="num_nodes=2 needs srun=True"):
        build_trainer(tmp_path, max_epochs=1, num_nodes=2)


def test_under_srun_slurm_gives_the_ranks_and_its_signal_requeues(tmp_path, monkeypatch):
    for key, value in SRUN_TASK_1.items():
        monkeypatch.setenv(key, value)
    # Building the DDP strategy sets the process's rank for rank-zero-only code: restored after.
    for rank_zero_only in (fabric_rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    trainer = build_trainer(tmp_path, max_epochs=1, devices=2, srun=True, progress_bar=False)
    environment = trainer._accelerator_connector.cluster_environment
    assert type(environment) is SLURMEnvironment and environment.auto_requeue
    assert environment.requeue_signal == signal.SIGUSR1
    assert (trainer.global_rank, trainer.local_rank, trainer.world_size) == (1, 1, 2)
    before = signal.getsignal(signal.SIGUSR1)
    trainer._signal_connector.register_signal_handlers()  # what fit does first
    try:
        assert signal.getsignal(signal.SIGUSR1) is not before  # Lightning's requeue handler
    finally:
        trainer._signal_connector.teardown()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_resume_checkpoint_records_the_signature_and_resumes_only_a_same_run(tmp_path, caplog):
    assert resume_checkpoint(tmp_path, SIGNATURE) is None
    assert json.loads((tmp_path / "run.json").read_text()) == SIGNATURE
    assert resume_checkpoint(tmp_path, SIGNATURE) is None  # same run, no checkpoint yet
    last_checkpoint(tmp_path).parent.mkdir()
    last_checkpoint(tmp_path).write_bytes(b"ckpt")
    (tmp_path / "logs").mkdir()
    assert resume_checkpoint(tmp_path, dict(reversed(SIGNATURE.items()))) == last_checkpoint(
        tmp_path
    )
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path, {**SIGNATURE, "lr": 0.2}) is None
    assert "changed: lr" in caplog.text and "starting fresh" in caplog.text
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "logs").exists()
    assert json.loads((tmp_path / "run.json").read_text())["lr"] == 0.2


def _touch(path: Path, mtime_ns: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.name.encode())
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_resume_takes_the_newest_of_last_and_the_requeue_checkpoints(tmp_path, caplog):
    assert resume_checkpoint(tmp_path, SIGNATURE) is None
    last = _touch(last_checkpoint(tmp_path), 2_000_000_000)
    old = _touch(tmp_path / "hpc_ckpt_1.ckpt", 1_000_000_000)  # before the last epoch's end
    assert resume_checkpoint(tmp_path, SIGNATURE) == last
    assert not old.exists()  # an earlier state of the same run
    hpc = _touch(tmp_path / "hpc_ckpt_2.ckpt", 3_000_000_000)  # SLURM's signal, mid-epoch
    assert resume_checkpoint(tmp_path, SIGNATURE, rank=1) == hpc  # another rank deletes nothing
    assert resume_checkpoint(tmp_path, SIGNATURE) == hpc
    assert last.exists()  # rewritten at the next epoch's end
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path, {**SIGNATURE, "lr": 0.5}) is None
    assert "hpc_ckpt_2.ckpt" in caplog.text  # another run's requeue state is never resumed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_other_ranks_wait_for_rank_0s_signature(tmp_path):
    with pytest.raises(TimeoutError, match="rank 1: .*run.json did not get this run's signature"):
        resume_checkpoint(tmp_path, SIGNATURE, rank=1, wait_s=0.3)
    assert not (tmp_path / "run.json").exists()  # only rank 0 writes
    _touch(last_checkpoint(tmp_path), 1_000_000_000)
    (tmp_path / "run.json").write_text(json.dumps({**SIGNATURE, "lr": 9}))  # an older run's
    found = []
    waiting = threading.Thread(
        target=lambda: found.append(resume_checkpoint(tmp_path, SIGNATURE, rank=1))
    )
    waiting.start()
    time.sleep(0.5)
    assert not found  # still waiting: rank 0 has not cleaned up the older run yet
    assert resume_checkpoint(tmp_path, SIGNATURE) is None  # rank 0 deletes it, starts fresh
    waiting.join(timeout=10)
    assert found == [None]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    _, whole = fit(tmp_path / "whole", max_epochs=2)
    first, part1 = fit(tmp_path / "split", max_epochs=1)  # "interrupted" after epoch 1
    assert first.global_step == STEPS_PER_EPOCH
    second, part2 = fit(tmp_path / "split", max_epochs=2)
    assert second.global_step == 2 * STEPS_PER_EPOCH
    assert len(part2.lrs) == STEPS_PER_EPOCH  # only the second epoch ran
    assert part1.lrs + part2.lrs == pytest.approx(whole.lrs)  # optimiser and schedule restored
    for a, b in zip(part2.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    metrics = read_step_metrics(tmp_path / "split", ["loss", "lr"])
    assert metrics["step"].tolist() == list(range(2 * STEPS_PER_EPOCH))
    assert metrics["epoch"].tolist() == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
    assert metrics["lr"].tolist() == pytest.approx(whole.lrs)


def test_a_changed_signature_starts_fresh(tmp_path):
    fit(tmp_path, max_epochs=1)
    trainer, module = fit(tmp_path, max_epochs=1, signature={**SIGNATURE, "name": "other"})
    assert trainer.global_step == STEPS_PER_EPOCH and len(module.lrs) == STEPS_PER_EPOCH
    assert sorted(p.name for p in (tmp_path / "logs" / "csv").iterdir()) == ["version_0"]


def test_read_step_metrics_keeps_the_latest_row_of_a_relogged_step(tmp_path):
    for version, rows in enumerate([[(0, 0, 1.0), (1, 0, 2.0)], [(1, 0, 3.0), (2, 1, 4.0)]]):
        folder = tmp_path / "logs" / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        pd.DataFrame(rows, columns=["step", "epoch", "loss"]).to_csv(folder / "metrics.csv")
    metrics = read_step_metrics(tmp_path, ["loss"])
    assert metrics.to_dict("list") == {"step": [0, 1, 2], "epoch": [0, 0, 1], "loss": [1, 3, 4]}
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        read_step_metrics(tmp_path / "nothing", ["loss"])
