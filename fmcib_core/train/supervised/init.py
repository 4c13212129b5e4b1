"""The three initialisations of fine-tuning (docs/method.md section 5).

``random`` keeps the backbone as built (MONAI's kaiming-normal convolutions), ``supervised`` loads
the backbone of Task 1's random-init model (for the other tasks), ``foundation`` our pretrained
backbone or a published weights file; the head is always new, kaiming normal and seeded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from fmcib_core.io.weights import WeightsFile, load_into, load_weights
from fmcib_core.tasks import Task, paper_task

__all__ = ["INITS", "init_head", "initialise"]

log = logging.getLogger(__name__)

INITS: tuple[str, ...] = ("random", "supervised", "foundation")


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
    task: Task | int,
    init: str,
    weights: str | Path | None,
    seed: int,
) -> WeightsFile | None:
    """Initialise a freshly built model for fine-tuning (docs/method.md section 5).

    The head is always new: kaiming normal (:func:`init_head`). The backbone stays as built
    (MONAI's kaiming-normal convolutions) for ``random``; for ``supervised`` (Tasks 2-3: the
    backbone of the Task 1 random-init model) and ``foundation`` (our pretrained backbone or a
    published file) the file's trunk is loaded strictly and a head in the file is ignored.

    Returns:
        The weights file read, or None for ``random``.

    Raises:
        ValueError: an unknown init, ``supervised`` for a task it does not apply to (Task 1), a
            file given to ``random`` or missing for the others.
        WeightsError: the file cannot be read or its trunk does not fit (the keys are named).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "supervised" and not paper_task(task).supervised_init:
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
