"""The pretraining optimisers by name: each builds, takes a step, and takes only its own options."""

from __future__ import annotations

import pickle

import pytest
import torch

from fmcib_core.optim import (
    LARS,
    OPTIMIZER_OPTIONS,
    OPTIMIZERS,
    build_optimizer,
    optimizer_factory,
)

KINDS = {"lars": LARS, "sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_and_a_step_lowers_the_loss(name: str) -> None:
    model = _model()
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    lr = {"lars": 1.0, "sgd": 0.05, "adamw": 0.01}[name]  # LARS's trust ratio scales its step
    optimizer = build_optimizer(name, model.parameters(), lr)
    assert type(optimizer) is KINDS[name]
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(2):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.nn.functional.mse_loss(model(x), y).item() < losses[0]


def test_options_reach_the_optimizer() -> None:
    params = list(_model().parameters())
    lars = build_optimizer("lars", params, 0.1, momentum=0.8, trust_coefficient=0.01)
    assert lars.defaults["momentum"] == 0.8 and lars.defaults["trust_coefficient"] == 0.01
    assert lars.defaults["weight_decay"] == OPTIMIZER_OPTIONS["lars"]["weight_decay"] == 1e-6
    sgd = build_optimizer("sgd", params, 0.1, momentum=0.5, weight_decay=1e-4, nesterov=True)
    assert (sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.5, 1e-4)
    assert sgd.defaults["nesterov"] is True
    adamw = build_optimizer("adamw", params, 1e-3, beta1=0.8, beta2=0.99, weight_decay=0.05)
    assert adamw.defaults["betas"] == (0.8, 0.99) and adamw.defaults["weight_decay"] == 0.05
    assert adamw.defaults["lr"] == 1e-3


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "adamw",
            {"trust_coefficient": 0.001},
            "adamw takes beta1, beta2, weight_decay; not trust",
        ),
        ("sgd", {"beta1": 0.9}, "sgd takes momentum, weight_decay, nesterov; not beta1"),
        ("lars", {"nesterov": True}, "not nesterov"),
        ("adam", {}, "unknown optimizer 'adam'"),
        ("sgd", {"momentum": 1.0}, "momentum must be in"),
        ("adamw", {"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ("sgd", {"momentum": 0.0, "nesterov": True}, "nesterov needs momentum"),
    ],
)
def test_bad_options_are_refused_naming_them(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_optimizer(name, _model().parameters(), 0.1, **options)
    with pytest.raises(ValueError, match=message):
        optimizer_factory(name, 0.1, **options)


def test_factory_is_picklable_and_builds() -> None:
    factory = pickle.loads(pickle.dumps(optimizer_factory("adamw", 0.002, beta2=0.98)))
    optimizer = factory(_model().parameters())
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.98)
