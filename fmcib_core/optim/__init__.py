"""Optimisation of the pretraining: LARS, SGD or AdamW, and the per-step cosine schedule with an
optional linear warm-up (docs/method.md 4)."""

from __future__ import annotations

from fmcib_core.optim.build import OPTIMIZER_OPTIONS, OPTIMIZERS, build_optimizer, optimizer_factory
from fmcib_core.optim.lars import LARS
from fmcib_core.optim.schedule import cosine_per_step, scaled_lr, total_steps

__all__ = [
    "LARS",
    "OPTIMIZERS",
    "OPTIMIZER_OPTIONS",
    "build_optimizer",
    "cosine_per_step",
    "optimizer_factory",
    "scaled_lr",
    "total_steps",
]
