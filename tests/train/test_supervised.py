"""fmcib_core.train.supervised: parts, initialisations and training of the Task 1-3 models."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fmcib_core.io import WeightsError, load_weights, save_fmcib_weights
from fmcib_core.models import backbone_output_dim, build_backbone, task_head
from fmcib_core.tasks import TASKS
from fmcib_core.train import supervised as sv

BACKBONE = "resnet10_w025"
WIDTH = backbone_output_dim(BACKBONE)
SIZE = 8


def parts(task: int, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return build_backbone(BACKBONE), task_head(task, WIDTH)


def module(task: int, lr: float = 1e-3, seed: int = 0) -> sv.SupervisedModule:
    backbone, head = parts(task, seed)
    sv.init_head(head, seed)
    return sv.SupervisedModule(backbone, head, sv.task_loss(task), sv.adam(lr), sv.step_lr())


def easy_set(task: int, n: int = 16, seed: int = 0) -> TensorDataset:
    """Patches whose brightness is the label: any model should learn it in a few steps."""
    g = torch.Generator().manual_seed(seed)
    multiclass = TASKS[task].multiclass
    y = torch.arange(n) % TASKS[task].n_classes
    x = 0.1 * torch.rand(n, 1, SIZE, SIZE, SIZE, generator=g) + 0.2 * y.view(-1, 1, 1, 1, 1)
    return TensorDataset(x, y if multiclass else y.float())


def trainer(tmp_path: Path, epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=L.pytorch.loggers.CSVLogger(tmp_path / "logs", name="csv"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("task", "loss_type", "n_out", "label_dtype"),
    [
        (1, nn.CrossEntropyLoss, 8, torch.int64),
        (2, nn.BCEWithLogitsLoss, 1, torch.float32),
        (3, nn.BCEWithLogitsLoss, 1, torch.float32),
    ],
)
def test_heads_losses_and_probabilities(task, loss_type, n_out, label_dtype) -> None:
    model = module(task)
    multiclass = TASKS[task].multiclass
    assert isinstance(model.loss, loss_type) and model.multiclass == multiclass
    x, y = easy_set(task, n=4)[:]
    assert y.dtype == label_dtype
    logits = model(x)
    assert logits.shape == (4, n_out)
    loss = model._loss(logits, y)
    assert loss.shape == () and torch.isfinite(loss)
    proba = model.predict_step((x, y), 0)
    assert proba.shape == (4, n_out) and bool(((proba >= 0) & (proba <= 1)).all())
    if multiclass:
        torch.testing.assert_close(proba.sum(dim=1), torch.ones(4))
    else:
        torch.testing.assert_close(proba, torch.sigmoid(logits))
    probabilities, classes = sv.class_probabilities([proba[:2], proba[2:]], model.multiclass)
    assert probabilities.shape == (4, 8 if multiclass else 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert classes.tolist() == (list(range(8)) if multiclass else [0, 1])


def test_state_dict_holds_backbone_and_head_only() -> None:
    model = module(3)
    prefixes = {key.split(".")[0] for key in model.state_dict()}
    assert prefixes == {"backbone", "head"}
    with pytest.raises(ValueError, match="no parameters or buffers"):
        sv.SupervisedModule(*parts(1), nn.CrossEntropyLoss(weight=torch.ones(8)), sv.adam())
    with pytest.raises(ValueError, match="CrossEntropyLoss or BCEWithLogitsLoss"):
        sv.SupervisedModule(*parts(2), nn.MSELoss(), sv.adam())


def test_nothing_is_frozen() -> None:
    model = module(1)
    x, y = easy_set(1, n=4)[:]
    model._loss(model(x), y).backward()
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad, name
        assert parameter.grad is not None, name
    assert sum(int(p.grad.abs().sum() > 0) for p in model.parameters()) == len(
        list(model.parameters())
    )


def test_optimiser_and_schedule_follow_the_paper() -> None:
    model = module(2)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and config["lr_scheduler"]["interval"] == "epoch"
    assert optimizer.defaults["lr"] == 1e-3 and optimizer.defaults["weight_decay"] == 0.0
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))
    rates = []
    for _ in range(65):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[29] == 1e-3
    assert math.isclose(rates[30], 1e-4) and math.isclose(rates[59], 1e-4)
    assert math.isclose(rates[60], 1e-5)
    with pytest.raises(ValueError):
        sv.adam(0.0)
    with pytest.raises(ValueError):
        sv.step_lr(0)


def test_head_init_is_seeded_kaiming_normal() -> None:
    head = task_head(1, 4096)
    sv.init_head(head, seed=5)
    first = head[0]
    assert torch.count_nonzero(first.bias) == 0
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 4096), rel=0.02)
    again = task_head(1, 4096)
    sv.init_head(again, seed=5)
    assert all(
        torch.equal(a, b) for a, b in zip(head.parameters(), again.parameters(), strict=True)
    )
    sv.init_head(again, seed=6)
    assert not torch.equal(head[0].weight, again[0].weight)


def test_random_init_loads_nothing() -> None:
    backbone, head = parts(2)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    assert sv.initialise(backbone, head, task=2, init="random", weights=None, seed=0) is None
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_foundation_init_loads_the_trunk_and_ignores_the_head(tmp_path: Path) -> None:
    source, source_head = parts(1, seed=1)
    path = save_fmcib_weights(tmp_path / "w.torch", source.state_dict(), source_head.state_dict())
    backbone, head = parts(2, seed=2)
    loaded = sv.initialise(backbone, head, task=2, init="foundation", weights=path, seed=0)
    assert loaded is not None and loaded.head is not None
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
    fresh = task_head(2, WIDTH)
    sv.init_head(fresh, 0)
    assert all(
        torch.equal(a, b) for a, b in zip(head.parameters(), fresh.parameters(), strict=True)
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.update({"extra.weight": torch.zeros(1)}), "1 key unexpected: extra.weight"),
        (lambda sd: sd.pop("layer4.0.bn2.running_var"), "1 key missing: layer4.0.bn2.running_var"),
    ],
)
def test_foundation_init_is_strict(tmp_path: Path, edit, message: str) -> None:
    trunk = build_backbone(BACKBONE).state_dict()
    edit(trunk)
    path = save_fmcib_weights(tmp_path / "w.torch", trunk)
    with pytest.raises(WeightsError, match=message):
        sv.initialise(*parts(2), task=2, init="foundation", weights=path, seed=0)


def test_supervised_init_takes_task_1s_backbone(tmp_path: Path) -> None:
    task1 = module(1, seed=3)
    path = save_fmcib_weights(
        tmp_path / "task1.torch", task1.backbone.state_dict(), task1.head.state_dict()
    )
    for task in (2, 3):
        backbone, head = parts(task, seed=4)
        sv.initialise(backbone, head, task=task, init="supervised", weights=path, seed=0)
        for key, value in task1.backbone.state_dict().items():
            assert torch.equal(backbone.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("task", "init", "weights", "message"),
    [
        (1, "supervised", "w.torch", "Tasks 2 and 3 only"),
        (2, "random", "w.torch", "takes no weights file"),
        (2, "foundation", None, "needs a weights file"),
        (2, "imagenet", None, "unknown init"),
    ],
)
def test_init_misuse_is_an_error(task, init, weights, message) -> None:
    with pytest.raises(ValueError, match=message):
        sv.initialise(*parts(task), task=task, init=init, weights=weights, seed=0)


def test_build_supervised_puts_the_parts_together() -> None:
    model = sv.build_supervised(1, BACKBONE, init="random", seed=0, lr=0.01, step_size=5)
    config = model.configure_optimizers()
    assert config["optimizer"].defaults["lr"] == 0.01
    assert config["lr_scheduler"]["scheduler"].step_size == 5
    assert model.head[-1].out_features == 8 and model.multiclass


def test_the_loss_falls_and_the_epoch_log_has_every_column(tmp_path: Path) -> None:
    L.seed_everything(0)
    model = module(2, lr=3e-3)
    loader = DataLoader(easy_set(2, n=16), batch_size=8, shuffle=True)
    val = DataLoader(easy_set(2, n=8, seed=1), batch_size=8)
    run = trainer(tmp_path, epochs=5, num_sanity_val_steps=0)
    run.fit(model, loader, val)
    history = sv.epoch_log(tmp_path)
    assert list(history.columns) == list(sv.EPOCH_LOG_COLUMNS)
    assert history["epoch"].tolist() == list(range(5))
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history[["val_loss", "val_score", "lr"]].notna().all().all()
    assert (history["lr"] == 1e-3 * 3).all()


def test_epoch_log_merges_restarts(tmp_path: Path) -> None:
    first = tmp_path / "logs" / "csv" / "version_0"
    second = tmp_path / "logs" / "csv" / "version_1"
    for folder in (first, second):
        folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 1],
            "step": [0, 1, 2, 3, 3],
            "train_loss_step": [1.0, 0.9, 0.8, 0.7, np.nan],
            "train_loss_epoch": [np.nan, 0.95, np.nan, np.nan, np.nan],
            "lr": [np.nan, 0.1, np.nan, np.nan, np.nan],
        }
    ).to_csv(first / "metrics.csv", index=False)
    pd.DataFrame(
        {"epoch": [1, 1], "step": [2, 3], "train_loss_epoch": [np.nan, 0.6], "lr": [np.nan, 0.1]}
    ).to_csv(second / "metrics.csv", index=False)
    history = sv.epoch_log(tmp_path)
    assert history["epoch"].tolist() == [0, 1]
    assert history["train_loss"].tolist() == [0.95, 0.6]
    assert history["val_score"].isna().all()
    with pytest.raises(FileNotFoundError):
        sv.epoch_log(tmp_path / "nothing")


def fit(model: sv.SupervisedModule, work_dir: Path, *, val: bool = True, **options) -> sv.FitResult:
    train = DataLoader(easy_set(2, n=12), batch_size=4, shuffle=True)
    validation = DataLoader(easy_set(2, n=6, seed=1), batch_size=6) if val else None
    options = {"signature": {"a": 1}, "max_epochs": 2, **options}
    return sv.fit_supervised(model, train, validation, work_dir=work_dir, **options)


def test_same_seed_same_first_epoch(tmp_path: Path) -> None:
    scores = []
    for attempt in range(2):
        L.seed_everything(0)
        result = fit(module(2, seed=0), tmp_path / str(attempt), max_epochs=1)
        scores.append(result.history[["train_loss", "val_loss", "val_score"]].iloc[0].tolist())
    assert scores[0] == scores[1]


def test_fit_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    L.seed_everything(0)
    model = module(2)
    result = fit(model, tmp_path)
    history = result.history.set_index("epoch")
    assert result.selection == "best_val_score" and result.checkpoint.name == "best.ckpt"
    assert result.best_epoch == int(np.argmax(history["val_score"].to_numpy()))
    assert result.val_metrics == {
        "val_score": pytest.approx(history["val_score"].max()),
        "val_loss": pytest.approx(history.loc[result.best_epoch, "val_loss"]),
    }
    weights = load_weights(result.checkpoint)
    assert weights.source_format == "lightning" and weights.head is not None
    val = DataLoader(easy_set(2, n=6, seed=1), batch_size=4)
    proba, classes = sv.predict_proba(result.trainer, model, val, result.checkpoint)
    assert proba.shape == (6, 2) and classes.tolist() == [0, 1]
    for key, value in weights.trunk.items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_fit_resumes_a_finished_run_and_runs_without_validation(tmp_path: Path) -> None:
    first = fit(module(2), tmp_path)
    again = fit(module(2, seed=9), tmp_path)  # the same signature, finished: no training
    assert again.best_epoch == first.best_epoch
    pd.testing.assert_frame_equal(again.history, first.history)
    no_val = fit(module(2), tmp_path, val=False, signature={"a": 2})
    assert no_val.selection == "last_epoch" and no_val.val_metrics is None
    assert no_val.best_epoch == 1 and no_val.checkpoint.name == "last.ckpt"
    assert no_val.history["val_score"].isna().all()
