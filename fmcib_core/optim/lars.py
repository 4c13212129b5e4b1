"""LARS, layer-wise adaptive rate scaling (You, Gitman and Ginsburg 2017), as FMCIB pretrains.

docs/method.md section 4: applied to every parameter, biases and batch norms included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["LARS"]


class LARS(Optimizer):
    """SGD with momentum whose step is scaled per parameter tensor by its trust ratio.

    For each parameter p with gradient g:
    ``local = trust * |p| / (|g| + wd * |p| + eps)`` if ``|p| > 0`` and ``|g| > 0``, else 1;
    ``d = (g + wd * p) * local``; ``buf = momentum * buf + d`` (``buf = d`` on the first step);
    ``p -= lr * buf``. Norms are Euclidean over the whole tensor. Parameters without a gradient
    are skipped.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (see :func:`fmcib_core.optim.scaled_lr`).
        momentum: momentum factor in [0, 1).
        weight_decay: weight decay wd >= 0, added to the gradient before scaling.
        trust_coefficient: trust > 0.
        eps: eps >= 0 in the trust ratio's denominator.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        checks = {
            "lr": (lr, lr >= 0),
            "momentum": (momentum, 0 <= momentum < 1),
            "weight_decay": (weight_decay, weight_decay >= 0),
            "trust_coefficient": (trust_coefficient, trust_coefficient > 0),
            "eps": (eps, eps >= 0),
        }
        for name, (value, ok) in checks.items():
            if not (ok and math.isfinite(value)):
                raise ValueError(f"LARS: invalid {name} {value!r}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, trust, eps = group["weight_decay"], group["trust_coefficient"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                g = p.grad
                p_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(g)
                # torch.where keeps the ratio on the device: no host sync per parameter.
                local = torch.where(
                    (p_norm > 0) & (g_norm > 0),
                    trust * p_norm / (g_norm + wd * p_norm + eps),
                    torch.ones_like(p_norm),
                )
                d = g.add(p, alpha=wd).mul_(local)
                state = self.state[p]
                if "momentum_buffer" in state:
                    buf = state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                else:
                    buf = state["momentum_buffer"] = d
                p.add_(buf, alpha=-group["lr"])
        return loss
