"""fmcib_core.train.ssl: the pretraining LightningModule on the real data pipeline."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from fmcib_core.data.ssl import (
    SSLDataset,
    cache_table_volumes,
    read_cached_table,
    ssl_dataloader,
)
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.losses import build_loss
from fmcib_core.models import backbone_output_dim, build_backbone, projection_head
from fmcib_core.optim import LARS, cosine_per_step
from fmcib_core.train.ssl import NonFiniteLossError, SSLModule, build_ssl_module
from fmcib_core.train.trainer import build_trainer, read_step_metrics, resume_checkpoint
from fmcib_core.transforms import BatchedSSLViews
from fmcib_core.transforms.augment import ssl_view_transform
from tests.train import write_lesion_table

BACKBONE = "resnet10_w025"
SIZE = 16
BATCH = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    source = write_lesion_table(tmp_path_factory.mktemp("images"), n_images=2, lesions_per_image=4)
    table = read_table(source)
    out = tmp_path_factory.mktemp("cache") / "cache"
    return cache_table_volumes(table, resolve_image_paths(table, source), out)


def loader(cache: Path, seed: int = 0) -> torch.utils.data.DataLoader:
    data = SSLDataset(read_cached_table(cache), cache, SIZE, ssl_view_transform(), seed=seed)
    return ssl_dataloader(data, BATCH, num_workers=0)


class Recorder(nn.Module):
    """Wraps a backbone and records the batch sizes it is called with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.inner(x)


class NaNLoss(nn.Module):
    uses_negatives = True

    def forward(self, p1, p2, n1, n2):
        return (p1 * float("nan")).sum()


def module(loss: nn.Module, backbone: nn.Module | None = None) -> SSLModule:
    return SSLModule(
        backbone=backbone or build_backbone(BACKBONE),
        head=projection_head(backbone_output_dim(BACKBONE)),
        loss=loss,
        optimizer_factory=functools.partial(LARS, lr=1.0),
        scheduler_factory=functools.partial(cosine_per_step, total_steps=10),
    )


@pytest.mark.parametrize(("loss", "encoded"), [("neg_mining_infonce", 4), ("ntxent", 2)])
def test_views_go_through_the_backbone_in_one_pass(loss, encoded):
    recorder = Recorder(build_backbone(BACKBONE))
    ssl = module(build_loss(loss), recorder)
    batch = [torch.rand(BATCH, 1, SIZE, SIZE, SIZE) for _ in range(4)]
    value = ssl.compute_loss(batch)
    assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)
    assert recorder.calls == [encoded * BATCH]
    with pytest.raises(ValueError, match="4 tensors"):
        ssl.compute_loss(batch[:2])


def test_module_holds_only_backbone_and_head_weights():
    ssl = build_ssl_module(BACKBONE, lr=0.1, total_steps=5)
    prefixes = {key.split(".")[0] for key in ssl.state_dict()}
    assert prefixes == {"backbone", "head"}
    optimizer = ssl.configure_optimizers()
    assert isinstance(optimizer["optimizer"], LARS)
    assert optimizer["lr_scheduler"]["interval"] == "step"


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_module_builds_the_chosen_optimizer_with_warmup(name, kind):
    options = {"weight_decay": 0.02}
    ssl = build_ssl_module(
        BACKBONE, lr=0.1, optimizer=name, optimizer_options=options, warmup_steps=3, total_steps=9
    )
    parts = ssl.configure_optimizers()
    assert isinstance(parts["optimizer"], kind)
    assert parts["optimizer"].defaults["weight_decay"] == 0.02
    assert parts["optimizer"].param_groups[0]["lr"] == pytest.approx(0.1 / 4)  # warm-up step 0
    with pytest.raises(ValueError, match="not trust_coefficient"):
        build_ssl_module(BACKBONE, lr=0.1, optimizer=name, total_steps=9,
                         optimizer_options={"trust_coefficient": 0.001})  # fmt: skip
    with pytest.raises(ValueError, match="below the run's 9 optimiser steps"):
        build_ssl_module(BACKBONE, lr=0.1, optimizer=name, warmup_steps=9, total_steps=9)


def test_the_loss_falls_on_a_fixed_small_dataset(cache):
    torch.manual_seed(0)
    batches = list(loader(cache))  # two batches of augmented views, cycled
    ssl = build_ssl_module(BACKBONE, lr=1.0, total_steps=20)
    parts = ssl.configure_optimizers()
    optimizer, scheduler = parts["optimizer"], parts["lr_scheduler"]["scheduler"]
    losses = []
    for step in range(20):
        loss = ssl.compute_loss(batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def first_step_loss(cache: Path, work_dir: Path, seed: int) -> float:
    L.seed_everything(seed, workers=True)
    ssl = build_ssl_module(BACKBONE, lr=0.1, total_steps=1)
    trainer = build_trainer(work_dir, max_epochs=1, limit_train_batches=1, progress_bar=False)
    trainer.fit(ssl, loader(cache, seed))
    return trainer.callback_metrics["loss"].item()


def test_same_seed_same_first_step_loss(cache, tmp_path):
    first = first_step_loss(cache, tmp_path / "a", seed=1)
    assert first_step_loss(cache, tmp_path / "b", seed=1) == first
    assert first_step_loss(cache, tmp_path / "c", seed=2) != first


def test_a_nan_loss_stops_the_run_with_step_and_epoch(cache, tmp_path):
    trainer = build_trainer(tmp_path, max_epochs=1, progress_bar=False)
    with pytest.raises(NonFiniteLossError, match=r"SSL loss is nan at step 0 \(epoch 0, batch 0"):
        trainer.fit(module(NaNLoss()), loader(cache))


def test_on_device_augmentation_turns_two_windows_into_four_views(cache, tmp_path):
    """augment_on device: the loader yields (lesion, negative); the module augments each twice
    after the transfer, with the same views the batched module draws for that seed."""
    raw = SSLDataset(read_cached_table(cache), cache, SIZE, None, seed=0)
    lesion, negative = next(iter(ssl_dataloader(raw, BATCH, num_workers=0)))
    ssl = build_ssl_module(BACKBONE, lr=0.1, total_steps=2, augment=BatchedSSLViews(5))
    views = ssl.on_after_batch_transfer([lesion, negative], 0)
    expected = BatchedSSLViews(5)
    assert [tuple(v.shape) for v in views] == [(BATCH, 1, SIZE, SIZE, SIZE)] * 4
    for view, source in zip(views, (lesion, lesion, negative, negative), strict=True):
        torch.testing.assert_close(view, expected(source), rtol=0, atol=0)
    assert not torch.equal(views[0], views[1])  # two independent views of one lesion
    with pytest.raises(ValueError, match="2 tensors"):
        ssl.on_after_batch_transfer(views, 0)
    assert module(build_loss("ntxent", 0.1)).on_after_batch_transfer(views, 0) is views
    trainer = build_trainer(tmp_path, max_epochs=1, limit_train_batches=2, progress_bar=False)
    trainer.fit(ssl, ssl_dataloader(raw, BATCH, num_workers=0))
    assert np.isfinite(trainer.callback_metrics["loss"].item())


class Killed(RuntimeError):
    """The job's end (a requeue) in the middle of a run."""


class RequeueSignal(L.Callback):
    """At optimiser step ``at``, what SLURM's requeue signal makes Lightning do: save a
    checkpoint in the middle of the step (the step then runs on and is logged); the job ends
    as the next step starts."""

    def __init__(self, at: int, path: Path) -> None:
        self.at, self.path = at, path

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if trainer.global_step == self.at:
            trainer.save_checkpoint(self.path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at + 1:
            raise Killed


def test_a_run_resumed_from_a_mid_step_checkpoint_logs_each_step_once(cache, tmp_path):
    def fit(work_dir: Path, *callbacks: L.Callback) -> L.Trainer:
        L.seed_everything(0, workers=True)
        ssl = build_ssl_module(BACKBONE, lr=0.1, total_steps=4)  # 2 epochs of 2 steps
        resume = resume_checkpoint(work_dir, {"run": 1})
        trainer = build_trainer(work_dir, max_epochs=2, callbacks=callbacks, progress_bar=False)
        trainer.fit(ssl, loader(cache), ckpt_path=resume)
        return trainer

    whole = read_step_metrics(fit(tmp_path / "whole").default_root_dir, ["loss", "lr"])
    run = tmp_path / "requeued"
    with pytest.raises(Killed):  # the first step of the second epoch, like the SLURM test's
        fit(run, RequeueSignal(at=2, path=run / "hpc_ckpt_1.ckpt"))
    assert resume_checkpoint(run, {"run": 1}) == run / "hpc_ckpt_1.ckpt"  # newer than last.ckpt
    assert fit(run).global_step == 4
    metrics = read_step_metrics(run, ["loss", "lr"])
    # Lightning's own step counter would log the resumed steps as 3 and 4, after a step 2 whose
    # update the checkpoint does not hold: 5 rows for 4 steps
    assert metrics["step"].tolist() == [0, 1, 2, 3]
    assert metrics["epoch"].tolist() == [0, 0, 1, 1]
    assert metrics["lr"].tolist() == pytest.approx(whole["lr"].tolist())
