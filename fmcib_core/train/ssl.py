"""Self-supervised pretraining as a LightningModule: modified SimCLR with explicit negatives.

Pai et al., "Foundation model for cancer imaging biomarkers", Nature Machine Intelligence 2024
(docs/method.md section 4), building on SimCLR (Chen et al. 2020). The module is handed its parts
(backbone, projection head, loss, optimiser and scheduler factories) and holds no configuration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from fmcib_core.losses import build_loss
from fmcib_core.models import backbone_output_dim, build_backbone, projection_head
from fmcib_core.optim import cosine_per_step, optimizer_factory

__all__ = ["NonFiniteLossError", "SSLModule", "build_ssl_module"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


class SSLModule(L.LightningModule):
    """Backbone + projection head trained with a contrastive loss on (p1, p2, n1, n2) batches.

    The children are named ``backbone`` and ``head`` and the module holds no other parameters or
    buffers, so its checkpoints load with ``fmcib_core.io.load_weights`` (``backbone.`` -> trunk).

    With ``augment`` (``augment_on: device``), batches arrive as the unaugmented windows
    ``(lesion, negative)`` and are turned into ``(p1, p2, n1, n2)`` on the training device right
    after the transfer (``on_after_batch_transfer``): two independent views of each. The
    augmentation's random stream is not part of a checkpoint, so a resumed run draws other views
    than an uninterrupted one would (the same distribution).

    Batch norm: the views of a batch go through the backbone in **one** forward pass, concatenated
    as (p1, p2, n1, n2) along the batch axis, so every batch-norm layer normalises all 4B patches
    with the same statistics (synchronised across devices under DDP with ``sync_batchnorm``). This
    is how SimCLR feeds its views: separate passes would give each view its own statistics,
    which the loss could exploit to tell the views apart instead of learning content. With a loss
    that ignores negatives (``uses_negatives = False``) only (p1, p2) are encoded.

    Args:
        backbone: (N, 1, D, H, W) -> (N, F) features.
        head: projection head, (N, F) -> (N, E).
        loss: contrastive loss module, ``loss(p1, p2, n1, n2)`` with (B, E) projections ->
            scalar; its ``uses_negatives`` says whether it reads ``n1``, ``n2``.
        optimizer_factory: builds the optimiser from the parameters (e.g.
            ``fmcib_core.optim.optimizer_factory("lars", lr)``).
        scheduler_factory: builds the learning-rate scheduler from the optimiser; stepped after
            every optimiser step.
        augment: (B, 1, D, H, W) -> one augmented view of each sample, same shape (e.g.
            ``fmcib_core.transforms.BatchedSSLViews``, whose ``views_of`` is then given the four
            batches at once); None: batches are already augmented.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        loss: nn.Module,
        optimizer_factory: OptimizerFactory,
        scheduler_factory: SchedulerFactory,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.loss = loss
        self.optimizer_factory = optimizer_factory
        self.scheduler_factory = scheduler_factory
        self.augment = augment

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``(lesion, negative)`` -> ``(p1, p2, n1, n2)`` with ``augment``; else unchanged."""
        if self.augment is None:
            return batch
        if len(batch) != 2:
            raise ValueError(
                f"with on-device augmentation a batch holds 2 tensors (lesion, negative); "
                f"got {len(batch)}"
            )
        lesion, negative = batch
        sources = [lesion, lesion, negative, negative]
        with torch.no_grad():
            # BatchedSSLViews computes the four in one pass (the same views as four calls).
            views_of = getattr(self.augment, "views_of", None)
            if views_of is not None:
                return views_of(sources)
            return [self.augment(source) for source in sources]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patches (N, 1, D, H, W) -> projections (N, E)."""
        return self.head(self.backbone(x))

    def compute_loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss of one batch ``(p1, p2, n1, n2)``, each (B, 1, D, H, W); scalar float32."""
        if len(batch) != 4:
            raise ValueError(f"an SSL batch holds 4 tensors (p1, p2, n1, n2); got {len(batch)}")
        uses_negatives = getattr(self.loss, "uses_negatives", True)
        views = list(batch) if uses_negatives else list(batch[:2])
        # Projections in float32: the loss exponentiates similarities / tau.
        projections = self(torch.cat(views)).float().chunk(len(views))
        return self.loss(*projections)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimiser step's loss; logs ``loss`` (mean over devices), ``lr`` and the step.

        Raises:
            NonFiniteLossError: the loss is NaN or infinite on some device (every device raises).
        """
        loss = self.compute_loss(batch)
        not_finite = self.trainer.strategy.reduce_boolean_decision(
            not bool(torch.isfinite(loss)), all=False
        )
        if not_finite:
            raise NonFiniteLossError(
                f"SSL loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); stopping. Lower the learning rate, "
                "use 32-bit precision, or check the input patches for NaN"
            )
        batch_size = batch[0].shape[0]
        self.log("loss", loss, on_step=True, prog_bar=True, sync_dist=True, batch_size=batch_size)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", lr, on_step=True, prog_bar=True, batch_size=batch_size)
        # The logs' step: the optimiser steps taken before this one. Lightning's own counter
        # runs one ahead in a run resumed from a checkpoint saved mid-step (on SLURM's requeue
        # signal), which would log every resumed step one place late. A logged step replaces
        # Lightning's, which then leaves out the epoch it adds otherwise.
        self.log("step", float(self.global_step), on_step=True, batch_size=batch_size)
        self.log("epoch", float(self.current_epoch), on_step=True, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> dict:
        """The optimiser over all parameters and its per-step scheduler."""
        optimizer = self.optimizer_factory(self.parameters())
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }


def build_ssl_module(
    backbone: str,
    *,
    loss: str = "neg_mining_infonce",
    temperature: float = 0.1,
    lr: float,
    optimizer: str = "lars",
    optimizer_options: Mapping[str, Any] | None = None,
    warmup_steps: int = 0,
    total_steps: int,
    augment: nn.Module | None = None,
) -> SSLModule:
    """The pretraining module: named backbone, projection head, optimiser, per-step cosine.

    The defaults are the paper's: LARS (momentum 0.9, weight decay 1e-6, trust coefficient
    0.001) and the cosine without warm-up.

    Args:
        backbone: a name of ``fmcib_core.models.BACKBONES`` (randomly initialised).
        loss: a name of ``fmcib_core.losses.LOSSES``.
        temperature: the loss's temperature tau.
        lr: the optimiser's initial learning rate (already scaled, see
            ``fmcib_core.optim.scaled_lr``).
        optimizer: ``lars``, ``sgd`` or ``adamw`` (``fmcib_core.optim.OPTIMIZERS``).
        optimizer_options: that optimiser's own options (``fmcib_core.optim.OPTIMIZER_OPTIONS``);
            missing ones take their defaults.
        warmup_steps: optimiser steps of linear warm-up before the cosine (0: none).
        total_steps: optimiser steps of the whole run; the cosine reaches 0 there.
        augment: the on-device view augmentation (see :class:`SSLModule`), or None.

    Raises:
        ValueError: an unknown optimiser, an option it does not take, or a warm-up that is not
            shorter than the run.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be >= 0 and below the run's {total_steps} optimiser steps, "
            f"got {warmup_steps}"
        )
    return SSLModule(
        backbone=build_backbone(backbone),
        head=projection_head(backbone_output_dim(backbone)),
        loss=build_loss(loss, temperature),
        optimizer_factory=optimizer_factory(optimizer, lr, **(optimizer_options or {})),
        scheduler_factory=functools.partial(
            cosine_per_step, total_steps=total_steps, warmup_steps=warmup_steps
        ),
        augment=augment,
    )
