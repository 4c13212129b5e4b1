"""The pretraining optimisers by name: LARS (the paper's), SGD with momentum, AdamW.

docs/method.md section 4. Every optimiser is applied to every parameter, biases and batch norms
included, with the learning rate of :func:`fmcib_core.optim.scaled_lr`. Each takes its own
options and no other: an option of another optimiser is an error that names it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from fmcib_core.optim.lars import LARS

__all__ = ["OPTIMIZER_OPTIONS", "OPTIMIZERS", "build_optimizer", "optimizer_factory"]

# Name -> its options and their defaults (LARS's are the paper's; AdamW's betas are torch's).
OPTIMIZER_OPTIONS: dict[str, dict[str, Any]] = {
    "lars": {"momentum": 0.9, "weight_decay": 1e-6, "trust_coefficient": 0.001},
    "sgd": {"momentum": 0.9, "weight_decay": 0.0, "nesterov": False},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01},
}
OPTIMIZERS = tuple(OPTIMIZER_OPTIONS)


def _options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The optimiser's options: its defaults updated by ``options``, which must all be its own."""
    if name not in OPTIMIZER_OPTIONS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    allowed = OPTIMIZER_OPTIONS[name]
    foreign = sorted(set(options) - set(allowed))
    if foreign:
        raise ValueError(f"optimizer {name} takes {', '.join(allowed)}; not {', '.join(foreign)}")
    merged = {**allowed, **options}
    for key, value in merged.items():
        if key == "nesterov":
            if not isinstance(value, bool):
                raise ValueError(f"optimizer {name}: nesterov must be true or false, got {value!r}")
            continue
        if not math.isfinite(float(value)):
            raise ValueError(f"optimizer {name}: {key} must be finite, got {value!r}")
    for key in ("momentum", "beta1", "beta2"):
        if key in merged and not 0 <= merged[key] < 1:
            raise ValueError(f"optimizer {name}: {key} must be in [0, 1), got {merged[key]!r}")
    if merged["weight_decay"] < 0:
        raise ValueError(
            f"optimizer {name}: weight_decay must be >= 0, got {merged['weight_decay']}"
        )
    if name == "sgd" and merged["nesterov"] and merged["momentum"] == 0:
        raise ValueError("optimizer sgd: nesterov needs momentum > 0")
    return merged


def build_optimizer(
    name: str, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float, **options: Any
) -> Optimizer:
    """The optimiser ``name`` (``lars``, ``sgd`` or ``adamw``) over ``params`` at ``lr``.

    ``options`` are that optimiser's own (``OPTIMIZER_OPTIONS[name]``; missing ones take the
    defaults listed there): LARS ``momentum``, ``weight_decay``, ``trust_coefficient``; SGD
    ``momentum``, ``weight_decay``, ``nesterov`` (torch.optim.SGD, weight decay added to the
    gradient); AdamW ``beta1``, ``beta2``, ``weight_decay`` (torch.optim.AdamW, decoupled decay).

    Raises:
        ValueError: an unknown optimiser, an option it does not take, or a value out of range.
    """
    opts = _options(name, options)
    if not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"optimizer {name}: invalid lr {lr!r}")
    if name == "lars":
        return LARS(params, lr=lr, **opts)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **opts)
    return torch.optim.AdamW(
        params, lr=lr, betas=(opts["beta1"], opts["beta2"]), weight_decay=opts["weight_decay"]
    )


def optimizer_factory(
    name: str, lr: float, **options: Any
) -> Callable[[Iterable[torch.Tensor]], Optimizer]:
    """A picklable ``params -> optimiser`` of :func:`build_optimizer`; options checked now."""
    _options(name, options)
    return functools.partial(build_optimizer, name, lr=lr, **options)
