"""Learning-rate scaling, run length and the per-step cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from fmcib_core.optim import LARS, cosine_per_step, scaled_lr, total_steps


@pytest.mark.parametrize(
    ("base", "batch", "lr"),
    [(0.3, 64, 0.075), (0.3, 256, 0.3), (0.3, 8, 0.009375), (1.0, 512, 2.0)],
)
def test_scaled_lr(base: float, batch: int, lr: float) -> None:
    assert scaled_lr(base, batch) == pytest.approx(lr)


def test_scaled_lr_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="base_lr > 0 and global_batch >= 1"):
        scaled_lr(0.3, 0)


@pytest.mark.parametrize(
    ("n", "batch", "devices", "epochs", "drop_last", "steps"),
    [
        (100, 32, 1, 10, True, 30),
        (100, 32, 1, 10, False, 40),
        (100, 32, 2, 100, True, 100),  # 50 per device: one full batch
        (129, 32, 2, 1, True, 2),  # the sampler pads to 65 per device
        (64, 32, 2, 1, True, 1),
        (10, 4, 3, 2, False, 2),  # 4 per device: one batch
    ],
)
def test_total_steps(
    n: int, batch: int, devices: int, epochs: int, drop_last: bool, steps: int
) -> None:
    assert total_steps(n, batch, devices, epochs, drop_last=drop_last) == steps


def test_total_steps_rejects_runs_without_steps() -> None:
    with pytest.raises(ValueError, match="no full batch of 32 with drop_last"):
        total_steps(40, 32, 2, 100)
    with pytest.raises(ValueError, match="must be >= 1"):
        total_steps(100, 32, 0, 100)


def _lrs(total: int, steps: int, lr: float = 0.075) -> list[float]:
    optimizer = LARS([torch.nn.Parameter(torch.ones(1))], lr=lr)
    scheduler = cosine_per_step(optimizer, total)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs + [optimizer.param_groups[0]["lr"]]


def test_cosine_values() -> None:
    lrs = _lrs(total=10, steps=12)
    assert lrs[0] == pytest.approx(0.075)
    assert lrs[5] == pytest.approx(0.0375)
    assert lrs[10] == pytest.approx(0.0, abs=1e-15)
    assert lrs[12] == pytest.approx(0.0, abs=1e-15)  # stays at 0 past the end
    assert lrs[3] == pytest.approx(0.075 * 0.5 * (1 + math.cos(math.pi * 3 / 10)))
    assert all(a >= b for a, b in zip(lrs[:-1], lrs[1:], strict=True))  # no warm-up


def test_scheduler_state_round_trip() -> None:
    optimizer = LARS([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    scheduler = cosine_per_step(optimizer, 7)
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{"total": 7}]
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        cosine_per_step(optimizer, 0)


def _warmup_lrs(total: int, warmup: int, lr: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=lr)
    scheduler = cosine_per_step(optimizer, total, warmup_steps=warmup)
    lrs = []
    for _ in range(total + 2):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_rises_linearly_then_the_cosine_runs_over_the_rest() -> None:
    lrs = _warmup_lrs(total=10, warmup=4)
    assert lrs[:4] == pytest.approx([0.02, 0.04, 0.06, 0.08])  # lr * (s + 1) / (W + 1)
    assert lrs[4] == pytest.approx(0.1)  # the cosine starts at the full lr
    assert lrs[7] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lrs[10] == pytest.approx(0.0, abs=1e-15)
    assert lrs[11] == pytest.approx(0.0, abs=1e-15)  # stays at 0 past the end
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5], strict=True))
    assert all(a >= b for a, b in zip(lrs[4:-1], lrs[5:], strict=True))


def test_zero_warmup_is_the_plain_cosine() -> None:
    assert _warmup_lrs(total=10, warmup=0)[:11] == pytest.approx(_lrs(total=10, steps=10, lr=0.1))


@pytest.mark.parametrize("warmup", [-1, 10, 11])
def test_warmup_must_be_shorter_than_the_run(warmup: int) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="below the run's 10 optimiser steps"):
        cosine_per_step(optimizer, 10, warmup_steps=warmup)


def test_warmup_scheduler_state_round_trip() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    state = cosine_per_step(optimizer, 7, warmup_steps=2).state_dict()
    assert state["lr_lambdas"] == [{"total": 7, "warmup": 2}]
