"""LARS against docs/method.md section 4's update rule written out step by step."""

from __future__ import annotations

import math

import pytest
import torch

from fmcib_core.optim import LARS

LR, MOMENTUM, WD, TRUST, EPS = 0.3, 0.9, 1e-6, 0.001, 1e-8


def _norm(x: list[float]) -> float:
    return math.sqrt(sum(v * v for v in x))


def naive_lars(
    p: list[float], grads: list[list[float]], lr: float = LR, wd: float = WD
) -> list[float]:
    """Apply one LARS step per gradient in ``grads`` to the flat parameter ``p``."""
    buf = None
    for g in grads:
        p_norm, g_norm = _norm(p), _norm(g)
        local = TRUST * p_norm / (g_norm + wd * p_norm + EPS) if p_norm > 0 and g_norm > 0 else 1.0
        d = [(gi + wd * pi) * local for gi, pi in zip(g, p, strict=True)]
        buf = d if buf is None else [MOMENTUM * b + di for b, di in zip(buf, d, strict=True)]
        p = [pi - lr * b for pi, b in zip(p, buf, strict=True)]
    return p


def _run(start: torch.Tensor, grads: list[torch.Tensor], **kwargs: float) -> torch.Tensor:
    param = torch.nn.Parameter(start.clone())
    optimizer = LARS([param], lr=kwargs.pop("lr", LR), **kwargs)
    for g in grads:
        param.grad = g.to(start.dtype)
        optimizer.step()
    return param.detach()


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 1, 3, 3, 3)])
def test_matches_formula(steps: int, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(steps)
    start = torch.randn(shape, generator=gen, dtype=torch.float64)
    grads = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(steps)]
    got = _run(start, grads)
    want = naive_lars(start.flatten().tolist(), [g.flatten().tolist() for g in grads])
    torch.testing.assert_close(got.flatten(), torch.tensor(want, dtype=torch.float64))


def test_large_weight_decay_matches_formula() -> None:
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(6, generator=gen, dtype=torch.float64)
    grads = [torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(3)]
    got = _run(start, grads, lr=0.05, weight_decay=0.1)
    want = naive_lars(start.tolist(), [g.tolist() for g in grads], lr=0.05, wd=0.1)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_first_step_by_hand() -> None:
    # |p| = 5, |g| = 2, wd = 0: local = 0.001 * 5 / (2 + 1e-8), p -= 0.3 * g * local.
    got = _run(
        torch.tensor([3.0, 4.0], dtype=torch.float64), [torch.tensor([0.0, 2.0])], weight_decay=0
    )
    local = 0.001 * 5 / (2 + 1e-8)
    torch.testing.assert_close(got, torch.tensor([3.0, 4.0 - 0.3 * 2 * local], dtype=torch.float64))


def test_zero_norms_use_ratio_one() -> None:
    # A zero parameter (a fresh bias) steps by the raw gradient; a zero gradient moves p only by
    # weight decay, unscaled.
    zero_param = _run(torch.zeros(3, dtype=torch.float64), [torch.tensor([1.0, -2.0, 0.5])])
    torch.testing.assert_close(zero_param, torch.tensor([-0.3, 0.6, -0.15], dtype=torch.float64))
    p = torch.tensor([1.0, 2.0], dtype=torch.float64)
    zero_grad = _run(p, [torch.zeros(2, dtype=torch.float64)])
    torch.testing.assert_close(zero_grad, p - LR * WD * p)


def test_parameters_without_gradient_are_skipped() -> None:
    used, unused = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = LARS([used, unused], lr=LR)
    used.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(2))
    assert unused not in optimizer.state
    assert not torch.equal(used.detach(), torch.ones(2))


def test_closure_and_param_groups() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = LARS([{"params": [a]}, {"params": [b], "lr": 0.0}], lr=LR)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (a * a).sum() + (b * b).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 4.0
    assert torch.equal(b.detach(), torch.ones(2))
    assert (a.detach() < 1).all()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "weight_decay": -1e-6}, "weight_decay"),
        ({"lr": 0.1, "trust_coefficient": 0.0}, "trust_coefficient"),
        ({"lr": 0.1, "eps": -1.0}, "eps"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"LARS: invalid {name}"):
        LARS([torch.nn.Parameter(torch.ones(1))], **kwargs)


def test_loss_falls() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    optimizer = LARS(model.parameters(), lr=50.0)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
