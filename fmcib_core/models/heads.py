"""Heads on top of the backbone: the pretraining projection head and the task heads.

docs/method.md sections 4 and 5: every head is a stack of Linear layers with a ReLU between two
layers and none after the last (no batch norm, no dropout). Only the input size follows the
backbone; the hidden sizes are the paper's whatever the backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fmcib_core.tasks import Task, paper_task

__all__ = ["FMCIBModel", "mlp_head", "projection_head", "task_head"]


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


def task_head(task: Task | int, in_dim: int = 4096) -> nn.Sequential:
    """Head of ``task`` (a Task or a paper task's number) on features of size ``in_dim``.

    Maps (B, in_dim) to logits (B, n_outputs): the paper's Task 1 ``[in_dim, 2048, 8]``,
    Task 2 ``[in_dim, 2048, 1]``, Task 3 ``[in_dim, 2048, 512, 256, 1]``.

    Raises:
        ValueError: unknown task.
    """
    return mlp_head(paper_task(task).head_dims(in_dim))


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
