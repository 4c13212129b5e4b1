"""Learning rate and its schedule for pretraining, computed in code (docs/method.md section 4)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["cosine_per_step", "scaled_lr", "total_steps"]


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """Linear scaling rule: ``base_lr * global_batch / 256`` (0.075 for 2 devices x 32)."""
    if base_lr <= 0 or global_batch < 1:
        raise ValueError(f"need base_lr > 0 and global_batch >= 1, got {base_lr}, {global_batch}")
    return base_lr * global_batch / 256


def total_steps(
    n_items: int, batch_per_device: int, devices: int, epochs: int, drop_last: bool = True
) -> int:
    """Optimiser steps of a run, as Lightning's DDP data loading makes them.

    Each device gets ``ceil(n_items / devices)`` items per epoch (the distributed sampler pads by
    repeating items), split into batches of ``batch_per_device``; ``drop_last`` drops a last
    short batch.

    Raises:
        ValueError: a non-positive argument, or a run of zero steps.
    """
    if min(n_items, batch_per_device, devices, epochs) < 1:
        raise ValueError(
            "n_items, batch_per_device, devices and epochs must be >= 1, got "
            f"{n_items}, {batch_per_device}, {devices}, {epochs}"
        )
    per_device = math.ceil(n_items / devices)
    per_epoch = (
        per_device // batch_per_device if drop_last else math.ceil(per_device / batch_per_device)
    )
    if per_epoch == 0:
        raise ValueError(
            f"{n_items} items on {devices} devices make no full batch of {batch_per_device} "
            "with drop_last: the run would take no step"
        )
    return per_epoch * epochs


class _CosineFactor:
    """Factor of the initial lr at a step: 1 at step 0, 0 at ``total`` and after.

    A class rather than a lambda so that the scheduler's state dict keeps it.
    """

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))


class _WarmupCosineFactor:
    """Linear warm-up, then cosine: ``(step + 1) / (warmup + 1)`` for the first ``warmup``
    steps, then the cosine of :class:`_CosineFactor` over the remaining ``total - warmup``.
    """

    def __init__(self, total: int, warmup: int) -> None:
        self.total = total
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        done = min(step - self.warmup, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * done / (self.total - self.warmup)))


def cosine_per_step(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Cosine annealing from the optimiser's lr to 0 over ``total_steps``, after a warm-up.

    With ``warmup_steps = W > 0`` the lr rises linearly first: step s < W gets
    ``lr * (s + 1) / (W + 1)``; from step W the cosine runs from ``lr`` to 0 over the remaining
    ``total_steps - W`` steps. ``W = 0`` (the paper's) is the plain cosine. Call
    ``scheduler.step()`` after every optimiser step (Lightning: ``interval="step"``).

    Raises:
        ValueError: ``total_steps < 1``, or ``warmup_steps`` negative or not below ``total_steps``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be >= 0 and below the run's {total_steps} optimiser steps, "
            f"got {warmup_steps}"
        )
    if warmup_steps == 0:
        return LambdaLR(optimizer, _CosineFactor(total_steps))
    return LambdaLR(optimizer, _WarmupCosineFactor(total_steps, warmup_steps))
