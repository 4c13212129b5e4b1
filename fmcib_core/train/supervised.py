"""Supervised training of Tasks 1-3 (METHOD.md section 5; Pai et al. 2024, fine-tuning).

:class:`SupervisedModule` trains a backbone and a task head end to end, nothing frozen. It is
handed its parts (backbone, head, loss, optimizer and scheduler factories) and holds no other
parameters or buffers, so its checkpoints hold ``backbone.*`` and ``head.*`` keys only, the
prefixes :mod:`fmcib_core.io.weights` strips. The helpers around it build those parts: the task's
loss, Adam (lr 1e-3, no weight decay), step decay (x0.1 every 30 epochs) and the three
initialisations ``random``, ``supervised`` and ``foundation``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader

from fmcib_core.io.weights import WeightsFile, load_into, load_weights
from fmcib_core.models.backbone import backbone_output_dim, build_backbone
from fmcib_core.models.heads import TASKS, task_head
from fmcib_core.train.trainer import (
    CHECKPOINT_DIR,
    LOG_DIR,
    build_trainer,
    last_checkpoint,
    resume_checkpoint,
)

__all__ = [
    "BEST_CHECKPOINT",
    "EPOCH_LOG_COLUMNS",
    "INITS",
    "VAL_METRICS",
    "FitResult",
    "SupervisedModule",
    "adam",
    "best_checkpoint",
    "build_supervised",
    "checkpoint_epoch",
    "class_probabilities",
    "epoch_log",
    "fit_supervised",
    "init_head",
    "initialise",
    "predict_proba",
    "probability_table",
    "selection_score",
    "step_lr",
    "task_loss",
]

log = logging.getLogger(__name__)

INITS: tuple[str, ...] = ("random", "supervised", "foundation")
BEST_CHECKPOINT = "best"
EPOCH_LOG_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "val_loss", "val_score", "lr")
VAL_METRICS: tuple[str, ...] = ("val_score", "val_loss")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def task_loss(task: int) -> nn.Module:
    """Task 1: ``CrossEntropyLoss`` on (B, 8) logits; Tasks 2-3: ``BCEWithLogitsLoss`` on (B, 1)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    return nn.CrossEntropyLoss() if TASKS[task].loss == "ce" else nn.BCEWithLogitsLoss()


def adam(lr: float = 1e-3) -> OptimizerFactory:
    """Factory of Adam with learning rate ``lr`` and no weight decay (picklable)."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return functools.partial(torch.optim.Adam, lr=lr, weight_decay=0.0)


def step_lr(step_size: int = 30, gamma: float = 0.1) -> SchedulerFactory:
    """Factory of step decay: the learning rate times ``gamma`` every ``step_size`` epochs."""
    if step_size < 1 or not 0 < gamma <= 1:
        raise ValueError(f"need step_size >= 1 and 0 < gamma <= 1, got {step_size}, {gamma}")
    return functools.partial(torch.optim.lr_scheduler.StepLR, step_size=step_size, gamma=gamma)


def init_head(head: nn.Module, seed: int) -> None:
    """Kaiming-normal weights (fan in, ReLU gain) and zero biases for every Linear of ``head``.

    Drawn from a generator seeded with ``seed``, so the head does not depend on global RNG state.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in head.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


def initialise(
    backbone: nn.Module,
    head: nn.Module,
    *,
    task: int,
    init: str,
    weights: str | Path | None,
    seed: int,
) -> WeightsFile | None:
    """Initialise a freshly built model for fine-tuning (METHOD.md section 5).

    The head is always new: kaiming normal (:func:`init_head`). The backbone stays as built
    (MONAI's kaiming-normal convolutions) for ``random``; for ``supervised`` (Tasks 2-3: the
    backbone of the Task 1 random-init model) and ``foundation`` (our pretrained backbone or a
    published file) the file's trunk is loaded strictly and a head in the file is ignored.

    Returns:
        The weights file read, or None for ``random``.

    Raises:
        ValueError: an unknown init, ``supervised`` for Task 1, a file given to ``random`` or
            missing for the others.
        WeightsError: the file cannot be read or its trunk does not fit (the keys are named).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "supervised" and task == 1:
        raise ValueError(
            "init 'supervised' is the Task 1 model's backbone, so it exists for Tasks 2 and 3 only"
        )
    if (init == "random") != (weights is None):
        need = "takes no weights file" if init == "random" else "needs a weights file"
        raise ValueError(f"init '{init}' {need}")
    init_head(head, seed)
    if weights is None:
        return None
    loaded = load_weights(weights)
    load_into(backbone, loaded.trunk, what="backbone", source=loaded.path)
    log.info("backbone from %s (%s format)", loaded.path, loaded.source_format)
    return loaded


def selection_score(y: np.ndarray, proba: np.ndarray, multiclass: bool) -> float:
    """The validation metric that picks the checkpoint; NaN when it is undefined.

    Multiclass: macro one-vs-rest average precision over the classes present in ``y`` (mAP),
    ``proba`` (N, K) with column k for class k. Binary: ROC-AUC of ``proba`` (N,) or (N, 1).
    """
    y = np.asarray(y).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if multiclass:
        return float(np.mean([average_precision_score(y == c, proba[:, c]) for c in present]))
    return float(roc_auc_score(y, proba.reshape(-1)))


def class_probabilities(
    batches: Sequence[torch.Tensor], multiclass: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``predict_step`` outputs into (N, K) class probabilities and their (K,) classes.

    A binary head's (B, 1) probabilities of class 1 become the columns ``[1 - p, p]`` for
    classes ``[0, 1]``; a multiclass head's (B, K) columns are classes ``0 .. K-1``.
    """
    proba = torch.cat([b.detach().float().cpu() for b in batches]).numpy().astype(np.float64)
    if multiclass:
        return proba, np.arange(proba.shape[1])
    positive = proba.reshape(-1)
    return np.column_stack([1.0 - positive, positive]), np.array([0, 1])


def best_checkpoint(work_dir: str | Path) -> ModelCheckpoint:
    """The callback keeping ``work_dir/checkpoints/best.ckpt``: the epoch of highest ``val_score``.

    Ties keep the earlier epoch; a NaN score counts as the worst.
    """
    return ModelCheckpoint(
        dirpath=Path(work_dir) / CHECKPOINT_DIR,
        filename=BEST_CHECKPOINT,
        monitor="val_score",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )


def checkpoint_epoch(path: str | Path) -> int:
    """The (0-based) epoch after which a Lightning checkpoint was saved."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state["epoch"])


def epoch_log(work_dir: str | Path) -> pd.DataFrame:
    """One row per epoch of a run's CSV logs (all restarts): :data:`EPOCH_LOG_COLUMNS`.

    ``train_loss`` is the epoch mean of the step losses; a metric never logged (no validation
    set) is an empty column. When a restarted run logged an epoch again, the later value wins.

    Raises:
        FileNotFoundError: the run has no CSV metrics.
    """
    root = Path(work_dir) / LOG_DIR
    files = sorted(root.glob("*/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not files:
        raise FileNotFoundError(f"{root}: no metrics.csv; did the run finish an epoch?")
    raw = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    raw = raw.rename(columns={"train_loss_epoch": "train_loss"}).dropna(subset=["epoch"])
    columns = [c for c in EPOCH_LOG_COLUMNS[1:] if c in raw.columns]
    table = raw.groupby("epoch", sort=True)[columns].last().reset_index()
    table = table.dropna(how="all", subset=columns).reindex(columns=list(EPOCH_LOG_COLUMNS))
    return table.astype({"epoch": np.int64})


def probability_table(
    table: pd.DataFrame, proba: np.ndarray, classes: np.ndarray, multiclass: bool
) -> pd.DataFrame:
    """The table's columns followed by the predicted probabilities, one row per table row.

    Binary tasks add ``prob`` (probability of label 1); multiclass ``prob_<class>`` per class, the
    convention of linear evaluation's predictions.

    Raises:
        ValueError: the row counts differ or a probability column name is already taken.
    """
    names = [f"prob_{c}" for c in classes.tolist()] if multiclass else ["prob"]
    block = proba if multiclass else proba[:, 1:]
    taken = [n for n in names if n in table.columns]
    if taken or len(table) != len(block):
        raise ValueError(
            f"cannot add predictions ({len(block)} rows for {len(table)}; "
            f"columns already present: {taken})"
        )
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(block, columns=names)], axis=1)


class SupervisedModule(L.LightningModule):
    """A backbone and a task head trained end to end, nothing frozen (METHOD.md section 5).

    Batches are ``(x, y)``: patches (B, 1, D, H, W), axes (z, y, x), and labels (B,), int64 class
    indices for ``CrossEntropyLoss`` or 0/1 floats for ``BCEWithLogitsLoss`` (whose logits are
    (B, 1)). Logs ``train_loss`` per step and epoch, ``lr`` per epoch, and per validation epoch
    ``val_loss`` and ``val_score`` (:func:`selection_score` on the epoch's gathered
    predictions: mAP for multiclass, ROC-AUC for binary). ``predict_step`` returns class
    probabilities: softmax (B, K) or sigmoid (B, 1).

    Args:
        backbone: patches (B, 1, D, H, W) -> features (B, F).
        head: features (B, F) -> logits (B, K) or (B, 1).
        loss: ``nn.CrossEntropyLoss`` (multiclass) or ``nn.BCEWithLogitsLoss`` (binary), without
            parameters.
        optimizer: builds the optimizer from all parameters (e.g. :func:`adam`).
        scheduler: builds the per-epoch learning-rate scheduler (e.g. :func:`step_lr`), or None.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(loss, nn.CrossEntropyLoss | nn.BCEWithLogitsLoss):
            raise ValueError(f"loss must be CrossEntropyLoss or BCEWithLogitsLoss, got {loss}")
        if any(True for _ in loss.parameters()) or any(b is not None for b in loss.buffers()):
            raise ValueError("the loss must hold no parameters or buffers (class weights)")
        self.backbone = backbone
        self.head = head
        self.loss = loss
        self.multiclass = isinstance(loss, nn.CrossEntropyLoss)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._val_proba: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patches (B, 1, D, H, W) -> logits (B, K) or (B, 1)."""
        return self.head(self.backbone(x))

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multiclass:
            return self.loss(logits.float(), y.long())
        return self.loss(logits.float(), y.float().reshape(logits.shape))

    def _proba(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits.softmax(dim=1) if self.multiclass else logits.sigmoid()

    def _exact(self, value: float) -> torch.Tensor:
        # Lightning would store a Python float as float32 and log 0.0010000000474974 for 1e-3.
        return torch.tensor(value, dtype=torch.float64, device=self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = self._loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_epoch_start(self) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", self._exact(lr), on_step=False, on_epoch=True)

    def on_validation_epoch_start(self) -> None:
        self._val_proba, self._val_labels = [], []

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self._loss(logits, y), on_epoch=True, batch_size=len(y))
        self._val_proba.append(self._proba(logits).detach())
        self._val_labels.append(y.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_labels:
            return
        proba = self.all_gather(torch.cat(self._val_proba))
        labels = self.all_gather(torch.cat(self._val_labels))
        proba = proba.reshape(-1, proba.shape[-1]).cpu().numpy()
        score = selection_score(labels.reshape(-1).cpu().numpy(), proba, self.multiclass)
        # every rank gathered the same predictions, so every rank logs the same score
        self.log("val_score", self._exact(score), prog_bar=True)
        self._val_proba, self._val_labels = [], []

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Class probabilities of the batch's patches: (B, K) softmax or (B, 1) sigmoid."""
        return self._proba(self(batch[0]))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def build_supervised(
    task: int,
    backbone: str,
    *,
    init: str,
    weights: str | Path | None = None,
    seed: int = 0,
    lr: float = 1e-3,
    step_size: int = 30,
    gamma: float = 0.1,
) -> SupervisedModule:
    """The paper's fine-tuning setup for ``task``: backbone ``backbone`` + task head, initialised.

    Adam (``lr``, no weight decay) with step decay (``gamma`` every ``step_size`` epochs), the
    task's loss, and :func:`initialise` with ``init`` and ``weights``. Seed the global generators
    first: a random backbone is drawn from them (the head from ``seed``).
    """
    trunk = build_backbone(backbone)
    head = task_head(task, backbone_output_dim(backbone))
    initialise(trunk, head, task=task, init=init, weights=weights, seed=seed)
    return SupervisedModule(trunk, head, task_loss(task), adam(lr), step_lr(step_size, gamma))


@dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`fit_supervised` kept.

    Attributes:
        trainer: the Trainer that ran the fit (reuse it to predict).
        checkpoint: the checkpoint kept: best ``val_score``, or the last epoch without validation.
        selection: ``"best_val_score"`` or ``"last_epoch"``.
        best_epoch: the kept checkpoint's epoch (0-based).
        history: the per-epoch log (:func:`epoch_log`).
        val_metrics: ``{"val_score", "val_loss"}`` of the kept epoch (None without validation;
            a NaN score becomes None).
    """

    trainer: L.Trainer
    checkpoint: Path
    selection: str
    best_epoch: int
    history: pd.DataFrame
    val_metrics: dict[str, float | None] | None


def fit_supervised(
    module: SupervisedModule,
    train: DataLoader,
    val: DataLoader | None,
    *,
    work_dir: str | Path,
    signature: Mapping[str, Any],
    max_epochs: int,
    accelerator: str = "cpu",
    precision: str = "32-true",
    progress_bar: bool = False,
) -> FitResult:
    """Train ``module`` with ``build_trainer`` on one device, resuming when possible.

    A run in ``work_dir`` with the same ``signature`` resumes from its last epoch (a finished
    run is not trained again); another signature starts afresh. With ``val`` the checkpoint of
    best ``val_score`` is kept (:func:`best_checkpoint`), else the last epoch's.
    """
    best = [best_checkpoint(work_dir)] if val is not None else []
    trainer = build_trainer(
        work_dir,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        callbacks=best,
        progress_bar=progress_bar,
    )
    trainer.fit(module, train, val, ckpt_path=resume_checkpoint(work_dir, signature))
    checkpoint = Path(best[0].best_model_path) if best else last_checkpoint(work_dir)
    history, epoch = epoch_log(work_dir), checkpoint_epoch(checkpoint)
    val_metrics = None
    if best:
        row = history.set_index("epoch").loc[epoch]
        val_metrics = {k: float(row[k]) if np.isfinite(row[k]) else None for k in VAL_METRICS}
    selection = "best_val_score" if best else "last_epoch"
    return FitResult(trainer, checkpoint, selection, epoch, history, val_metrics)


def predict_proba(
    trainer: L.Trainer, module: SupervisedModule, loader: DataLoader, checkpoint: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, K) of ``loader``'s rows with ``checkpoint``'s weights, and classes.

    The checkpoint's weights are loaded into ``module`` (strictly) and stay there.
    """
    batches = trainer.predict(module, loader, ckpt_path=checkpoint)
    return class_probabilities(batches, module.multiclass)
