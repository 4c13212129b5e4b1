"""Heads on top of the backbone: the pretraining projection head and the Task 1-3 heads.

METHOD.md sections 4 and 5: every head is a stack of Linear layers with a ReLU between two layers
and none after the last (no batch norm, no dropout). Only the input size follows the backbone; the
hidden sizes are the paper's whatever the backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TASKS", "FMCIBModel", "TaskSpec", "mlp_head", "projection_head", "task_head"]


@dataclass(frozen=True)
class TaskSpec:
    """One supervised task: where its label is and how its head and loss look.

    Attributes:
        label_column: column of the lesion table that holds the label.
        n_outputs: logits the head outputs (classes for ``ce``, 1 for ``bce``).
        loss: ``"ce"`` (cross-entropy over classes) or ``"bce"`` (BCE with logits).
        hidden: sizes of the hidden layers between the features and the logits.
    """

    label_column: str
    n_outputs: int
    loss: str
    hidden: tuple[int, ...]

    def dims(self, in_dim: int) -> list[int]:
        """Layer sizes of this task's head for features of size ``in_dim``."""
        return [in_dim, *self.hidden, self.n_outputs]


TASKS: dict[int, TaskSpec] = {
    1: TaskSpec("Coarse_lesion_type", 8, "ce", (2048,)),
    2: TaskSpec("malignancy", 1, "bce", (2048,)),
    3: TaskSpec("survival", 1, "bce", (2048, 512, 256)),
}
"""Task number -> :class:`TaskSpec` (METHOD.md section 5)."""

PROJECTION_DIMS: tuple[int, int] = (2048, 128)


def mlp_head(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ... -> dims[-1]`` with a ReLU between two of them.

    Maps (B, dims[0]) to (B, dims[-1]).

    Raises:
        ValueError: fewer than two sizes, or a size below 1.
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"a head needs at least two positive layer sizes, got {dims}")
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if i > 0:
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def projection_head(in_dim: int = 4096) -> nn.Sequential:
    """SimCLR projection head ``[in_dim, 2048, 128]``: (B, in_dim) -> (B, 128)."""
    return mlp_head([in_dim, *PROJECTION_DIMS])


def task_head(task: int, in_dim: int = 4096) -> nn.Sequential:
    """Head of Task ``task`` (1, 2 or 3) on features of size ``in_dim``: (B, in_dim) -> logits.

    Task 1 ``[in_dim, 2048, 8]``, Task 2 ``[in_dim, 2048, 1]``,
    Task 3 ``[in_dim, 2048, 512, 256, 1]``.

    Raises:
        ValueError: unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    return mlp_head(TASKS[task].dims(in_dim))


class FMCIBModel(nn.Module):
    """Backbone followed by a head; nothing frozen (Pai et al. 2024, fine-tuning).

    The children are named ``backbone`` and ``head``, so that the state dict keys carry the
    prefixes that :mod:`fmcib_core.io.weights` strips from checkpoints.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patches (B, 1, D, H, W) -> logits (B, n_outputs)."""
        return self.head(self.backbone(x))
