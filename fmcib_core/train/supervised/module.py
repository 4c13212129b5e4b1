"""The fine-tuning LightningModule and its parts (docs/method.md section 5; Pai et al. 2024).

:class:`SupervisedModule` trains a backbone and a task head end to end, nothing frozen. It is
handed its parts (backbone, head, loss, optimizer and scheduler factories) and holds no other
parameters or buffers, so its checkpoints hold ``backbone.*`` and ``head.*`` keys only, the
prefixes :mod:`fmcib_core.io.weights` strips. The helpers here build those parts: the task's
loss, Adam (lr 1e-3, no weight decay) and step decay (x0.1 every 30 epochs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from fmcib_core.metrics.evaluate import selection_score
from fmcib_core.models.backbone import backbone_output_dim, build_backbone
from fmcib_core.models.heads import task_head
from fmcib_core.tasks import Task, paper_task
from fmcib_core.train.supervised.init import initialise

__all__ = [
    "SupervisedModule",
    "adam",
    "build_supervised",
    "class_probabilities",
    "step_lr",
    "task_loss",
]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def task_loss(task: Task | int) -> nn.Module:
    """Multiclass: ``CrossEntropyLoss`` on (B, K) logits; binary: ``BCEWithLogitsLoss`` on (B, 1).

    Raises:
        ValueError: unknown task.
    """
    return nn.CrossEntropyLoss() if paper_task(task).loss == "ce" else nn.BCEWithLogitsLoss()


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


class SupervisedModule(L.LightningModule):
    """A backbone and a task head trained end to end, nothing frozen (docs/method.md section 5).

    Batches are ``(x, y)``: patches (B, 1, D, H, W), axes (z, y, x), and labels (B,), int64 class
    indices for ``CrossEntropyLoss`` or 0/1 floats for ``BCEWithLogitsLoss`` (whose logits are
    (B, 1)). Logs ``train_loss`` per step and epoch, ``lr`` per epoch, and per validation epoch
    ``val_loss`` and ``val_score`` (:func:`~fmcib_core.metrics.selection_score` on the epoch's
    gathered predictions: mAP for multiclass, ROC-AUC for binary). ``predict_step`` returns class
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
    task: Task | int,
    backbone: str,
    *,
    init: str,
    weights: str | Path | None = None,
    seed: int = 0,
    lr: float = 1e-3,
    step_size: int = 30,
    gamma: float = 0.1,
) -> SupervisedModule:
    """The paper's fine-tuning setup for ``task`` (a Task or a paper task's number): backbone
    ``backbone`` + task head, initialised.

    Adam (``lr``, no weight decay) with step decay (``gamma`` every ``step_size`` epochs), the
    task's loss, and :func:`initialise` with ``init`` and ``weights``. Seed the global generators
    first: a random backbone is drawn from them (the head from ``seed``).
    """
    trunk = build_backbone(backbone)
    head = task_head(task, backbone_output_dim(backbone))
    initialise(trunk, head, task=task, init=init, weights=weights, seed=seed)
    return SupervisedModule(trunk, head, task_loss(task), adam(lr), step_lr(step_size, gamma))
