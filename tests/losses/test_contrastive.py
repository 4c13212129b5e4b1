"""Contrastive losses against their formulas in docs/method.md, analytic values, DDP equivalence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fmcib_core.losses import (
    LOSSES,
    NegMiningInfoNCE,
    NTXent,
    NTXentMined,
    build_loss,
    neg_mining_infonce,
    ntxent,
    ntxent_mined,
)

WITH_NEGATIVES = {"neg_mining_infonce": neg_mining_infonce, "ntxent_mined": ntxent_mined}


def _views(b: int, e: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, e, generator=g, dtype=torch.float64) for _ in range(4)]


def _unit(x: torch.Tensor) -> list[list[float]]:
    return [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in x.tolist()]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def naive_neg_mining_infonce(p1, p2, n1, n2, tau: float) -> float:
    p1, p2, n1, n2 = (_unit(x) for x in (p1, p2, n1, n2))
    b, total = len(p1), 0.0
    for i in range(b):
        for a, p in ((p1[i], p2[i]), (p2[i], p1[i])):
            pos = math.exp(_dot(a, p) / tau)
            neg = sum(
                math.exp(_dot(a, n) / tau) for j in range(b) if j != i for n in (n1[j], n2[j])
            )
            total += -math.log(pos / (pos + neg))
    return total / (2 * b)


def naive_ntxent_mined(p1, p2, n1, n2, tau: float) -> float:
    p1, p2, n1, n2 = (_unit(x) for x in (p1, p2, n1, n2))
    b, total = len(p1), 0.0
    for i in range(b):
        for a, p, negatives in ((p1[i], p2[i], n1), (p2[i], p1[i], n2)):
            logits = [_dot(a, p) / tau] + [_dot(a, n) / tau for n in negatives]
            total += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * b)


def naive_ntxent(p1, p2, tau: float) -> float:
    z = _unit(p1) + _unit(p2)
    n, b, total = len(z), len(p1), 0.0
    for k in range(n):
        pos = math.exp(_dot(z[k], z[(k + b) % n]) / tau)
        denominator = sum(math.exp(_dot(z[k], z[m]) / tau) for m in range(n) if m != k)
        total += -math.log(pos / denominator)
    return total / n


@pytest.mark.parametrize(("b", "e", "tau"), [(1, 3, 0.1), (2, 5, 0.5), (5, 8, 0.1), (7, 4, 1.3)])
def test_against_naive_loops(b: int, e: int, tau: float) -> None:
    p1, p2, n1, n2 = _views(b, e, seed=b * 100 + e)
    assert neg_mining_infonce(p1, p2, n1, n2, tau).item() == pytest.approx(
        naive_neg_mining_infonce(p1, p2, n1, n2, tau), rel=1e-10, abs=1e-12
    )
    assert ntxent_mined(p1, p2, n1, n2, tau).item() == pytest.approx(
        naive_ntxent_mined(p1, p2, n1, n2, tau), rel=1e-10
    )
    assert ntxent(p1, p2, tau).item() == pytest.approx(naive_ntxent(p1, p2, tau), rel=1e-10)


@pytest.mark.parametrize("b", [1, 2, 8])
def test_identical_embeddings(b: int) -> None:
    # Every similarity is 1, so every logit is equal: the loss is ln(number of candidates).
    p1, p2, n1, n2 = (torch.ones(b, 6, dtype=torch.float64) for _ in range(4))
    assert neg_mining_infonce(p1, p2, n1, n2).item() == pytest.approx(math.log(2 * b - 1))
    assert ntxent_mined(p1, p2, n1, n2).item() == pytest.approx(math.log(b + 1))
    assert ntxent(p1, p2).item() == pytest.approx(math.log(2 * b - 1))


def test_own_negatives_and_other_lesions_are_not_negatives() -> None:
    # Sample 1's negative patches equal sample 0's lesion, sample 0's own negatives are far away
    # and sample 1's lesion views equal sample 0's lesion: with only sample 0's views and own
    # negatives as candidates no logit but the positive would be large.
    e = torch.eye(3, dtype=torch.float64)
    p1 = torch.stack([e[0], e[0]])
    p2 = p1.clone()
    n1 = torch.stack([-e[0], e[0]])
    n2 = n1.clone()
    tau = 0.1
    loss = neg_mining_infonce(p1, p2, n1, n2, tau).item()
    # Anchor of sample 0: positive 1, negatives n1_1, n2_1 (similarity 1); own -e0 excluded.
    # Anchor of sample 1: positive 1, negatives n1_0, n2_0 (similarity -1).
    sample0 = math.log(3)
    sample1 = math.log(1 + 2 * math.exp(-2 / tau))
    assert loss == pytest.approx((sample0 + sample1) / 2, rel=1e-12)


def test_scale_invariant_and_module_forms() -> None:
    views = _views(4, 6)
    scaled = [3.0 * v for v in views]
    for name, fn in WITH_NEGATIVES.items():
        assert fn(*scaled, temperature=0.2).item() == pytest.approx(fn(*views, 0.2).item())
        assert build_loss(name, 0.2)(*views).item() == fn(*views, 0.2).item()
    assert NTXent(0.2)(*views).item() == ntxent(views[0], views[1], 0.2).item()
    assert NTXent(0.2)(views[0], views[1]).item() == ntxent(views[0], views[1], 0.2).item()
    assert NegMiningInfoNCE().temperature == NTXentMined().temperature == 0.1
    assert [LOSSES[n].uses_negatives for n in LOSSES] == [True, True, False]
    assert "temperature=0.2" in repr(build_loss("ntxent", 0.2))


def test_single_sample_has_finite_gradient() -> None:
    # B = 1 on one device: neg_mining_infonce has no negative at all; the loss is 0, not NaN.
    views = [v.requires_grad_() for v in _views(1, 4)]
    loss = neg_mining_infonce(*views)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(v.grad).all() for v in views)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_falls(name: str) -> None:
    torch.manual_seed(0)
    inputs = torch.randn(4, 8, 16)
    proj = torch.nn.Linear(16, 8)
    loss_fn = build_loss(name, 0.5)
    optimizer = torch.optim.SGD(proj.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(*proj(inputs))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("tau", [0, -0.1, math.inf, math.nan, "0.1", True, None])
def test_temperature_validated(tau: object) -> None:
    for cls in LOSSES.values():
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            cls(tau)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        neg_mining_infonce(*_views(2, 3), temperature=tau)


def test_bad_names_and_shapes() -> None:
    with pytest.raises(ValueError, match="unknown loss 'simclr'; choose one of neg_mining_infonce"):
        build_loss("simclr")
    p1, p2, n1, n2 = _views(3, 4)
    with pytest.raises(ValueError, match=r"same shape \(B, E\).*\(3, 4\), \(2, 4\)"):
        neg_mining_infonce(p1, p2[:2], n1, n2)
    with pytest.raises(ValueError, match="same shape"):
        ntxent(p1[0], p2[0])
    with pytest.raises(ValueError, match="same shape"):
        ntxent_mined(p1[:0], p2[:0], n1[:0], n2[:0])


# DDP: W processes with B rows each must equal one process with the W * B rows.

_FUNCTIONS = {"ntxent": ntxent, **WITH_NEGATIVES}


def _loss_and_grads(name: str, views: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    fn = _FUNCTIONS[name]
    leaves = [v.detach().clone().requires_grad_() for v in views]
    used = leaves[:2] if name == "ntxent" else leaves
    loss = fn(*used, temperature=0.2)
    loss.backward()
    return loss.item(), [v.grad for v in used]


def _ddp_worker(rank: int, world: int, init_file: str, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        views = torch.load(Path(folder) / "views.pt")
        b = views[0].shape[0] // world
        local = [v[rank * b : (rank + 1) * b] for v in views]
        out = {name: _loss_and_grads(name, local) for name in _FUNCTIONS}
        ones = [torch.ones(b, 3, dtype=torch.float64) for _ in range(4)]
        out["identical"] = [
            _FUNCTIONS[n](*(ones[:2] if n == "ntxent" else ones)).item()
            for n in ("neg_mining_infonce", "ntxent_mined", "ntxent")
        ]
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)  # a rank that dies must not leave the other waiting
def test_ddp_matches_one_process(tmp_path: Path) -> None:
    world, b = 2, 3
    views = _views(world * b, 5, seed=42)
    torch.save(views, tmp_path / "views.pt")
    mp.spawn(
        _ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    g = world * b
    assert ranks[0]["identical"] == pytest.approx(
        [math.log(2 * g - 1), math.log(g + 1), math.log(2 * g - 1)]
    )
    for name in _FUNCTIONS:
        loss, grads = _loss_and_grads(name, views)
        # The logged loss is the mean over ranks; DDP averages gradients over ranks.
        assert sum(r[name][0] for r in ranks) / world == pytest.approx(loss, rel=1e-12)
        for v, grad in enumerate(grads):
            for r in range(world):
                torch.testing.assert_close(
                    ranks[r][name][1][v] / world, grad[r * b : (r + 1) * b], rtol=1e-10, atol=1e-12
                )
