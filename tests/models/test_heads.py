"""Heads: layer sizes of docs/method.md sections 4-5, ReLU placement, the full model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmcib_core.models import (
    FMCIBModel,
    build_backbone,
    mlp_head,
    projection_head,
    task_head,
)


def _sizes(head: nn.Sequential) -> list[int]:
    linears = [m for m in head if isinstance(m, nn.Linear)]
    return [linears[0].in_features] + [m.out_features for m in linears]


def _kinds(head: nn.Sequential) -> list[str]:
    return [type(m).__name__ for m in head]


@pytest.mark.parametrize(
    ("task", "in_dim", "sizes"),
    [
        (1, 4096, [4096, 2048, 8]),
        (2, 4096, [4096, 2048, 1]),
        (3, 4096, [4096, 2048, 512, 256, 1]),
        (1, 128, [128, 2048, 8]),
        (3, 512, [512, 2048, 512, 256, 1]),
    ],
)
def test_task_head_sizes(task: int, in_dim: int, sizes: list[int]) -> None:
    head = task_head(task, in_dim)
    assert _sizes(head) == sizes
    assert head(torch.randn(2, in_dim)).shape == (2, sizes[-1])


def test_projection_head() -> None:
    head = projection_head()
    assert _sizes(head) == [4096, 2048, 128]
    assert _kinds(head) == ["Linear", "ReLU", "Linear"]
    assert _sizes(projection_head(128)) == [128, 2048, 128]


def test_relu_between_layers_only() -> None:
    assert _kinds(mlp_head([4, 5, 6, 7])) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert _kinds(mlp_head([4, 2])) == ["Linear"]


@pytest.mark.parametrize("dims", [[4], [], [4, 0]])
def test_mlp_head_rejects_bad_sizes(dims: list[int]) -> None:
    with pytest.raises(ValueError, match="at least two positive layer sizes"):
        mlp_head(dims)


def test_unknown_task_has_no_head() -> None:
    with pytest.raises(ValueError, match="unknown task 4"):
        task_head(4)


def test_fmcib_model_forward_and_keys() -> None:
    torch.manual_seed(0)
    model = FMCIBModel(build_backbone("resnet10_w025"), task_head(1, 128))
    assert model(torch.randn(2, 1, 20, 20, 20)).shape == (2, 8)
    prefixes = {k.split(".", 1)[0] for k in model.state_dict()}
    assert prefixes == {"backbone", "head"}
