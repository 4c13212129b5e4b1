"""Optimisation of the pretraining: LARS and the per-step cosine schedule (docs/method.md 4)."""

from __future__ import annotations

from fmcib_core.optim.lars import LARS
from fmcib_core.optim.schedule import cosine_per_step, scaled_lr, total_steps

__all__ = ["LARS", "cosine_per_step", "scaled_lr", "total_steps"]
