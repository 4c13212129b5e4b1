"""Contrastive losses of FMCIB pretraining (docs/method.md section 4).

Pai et al. 2024 ("Foundation model for cancer imaging biomarkers") modify SimCLR (Chen et al.
2020) with explicit negatives: for every lesion, a patch from a random position of the same scan.
Each loss takes the projections of one device's batch, shape (B, E), not yet normalised: the
lesion views ``p1``, ``p2`` and the negative-patch views ``n1``, ``n2`` (row i of each belongs to
sample i). It returns a scalar, the mean over the device's 2B anchors (both lesion views of every
local sample).

Under ``torch.distributed`` (initialised, world size W > 1) the embeddings of all ranks are
gathered, in rank order, with gradients flowing back to the rank that produced them: every rank
must pass the same B. The anchors stay local; positives and negatives come from the global batch
of G = W * B samples. Because the backward of the gather sums the gradients that every rank's loss
sends to an embedding, and DDP averages parameter gradients over ranks, W ranks with B samples each
compute exactly the gradients of one process with the W * B samples.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSSES",
    "NTXent",
    "NTXentMined",
    "NegMiningInfoNCE",
    "build_loss",
    "neg_mining_infonce",
    "ntxent",
    "ntxent_mined",
]


def neg_mining_infonce(
    p1: torch.Tensor,
    p2: torch.Tensor,
    n1: torch.Tensor,
    n2: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """InfoNCE with mined negatives, the paper's loss.

    For an anchor a (either lesion view of local sample i) the positive p is the other view of
    sample i; the negatives are the negative-patch embeddings (both views) of every sample of the
    global batch except sample i; lesion views of other samples are not negatives:
    ``loss_a = -log(e^{a.p/tau} / (e^{a.p/tau} + sum_n e^{a.n/tau}))`` on L2-normalised embeddings,
    averaged over the 2B local anchors. With every embedding equal it is ln(2G - 1).

    Args:
        p1, p2: projections of the two lesion views, (B, E).
        n1, n2: projections of the two negative-patch views, (B, E).
        temperature: tau, finite and > 0.

    Returns:
        Scalar loss.
    """
    p1, p2, n1, n2 = _prepare(temperature, p1, p2, n1, n2)
    rank, world = _rank_and_world()
    b = p1.shape[0]
    negatives = torch.cat([_gather(n1), _gather(n2)])  # rows j and G + j belong to sample j
    anchors = torch.cat([p1, p2])
    positive = (anchors * torch.cat([p2, p1])).sum(dim=1, keepdim=True)
    own = rank * b + torch.arange(b, device=p1.device).repeat(2)
    owner = torch.arange(world * b, device=p1.device).repeat(2)
    negative = (anchors @ negatives.T).masked_fill(own[:, None] == owner[None, :], -math.inf)
    return _cross_entropy(torch.cat([positive, negative], dim=1), temperature)


def ntxent_mined(
    p1: torch.Tensor,
    p2: torch.Tensor,
    n1: torch.Tensor,
    n2: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """NT-Xent over mined negatives, one negative view per anchor view.

    Anchor ``p1_i`` has logits ``[p1_i.p2_i, p1_i.n1_j for every sample j of the global batch,
    including i] / tau``; anchor ``p2_i`` the same with ``p1_i`` and ``n2_j``; cross-entropy with
    target 0, averaged over the 2B local anchors. With every embedding equal it is ln(G + 1).

    Args:
        p1, p2: projections of the two lesion views, (B, E).
        n1, n2: projections of the two negative-patch views, (B, E).
        temperature: tau, finite and > 0.

    Returns:
        Scalar loss.
    """
    p1, p2, n1, n2 = _prepare(temperature, p1, p2, n1, n2)
    positive = (p1 * p2).sum(dim=1, keepdim=True)
    logits1 = torch.cat([positive, p1 @ _gather(n1).T], dim=1)
    logits2 = torch.cat([positive, p2 @ _gather(n2).T], dim=1)
    return _cross_entropy(torch.cat([logits1, logits2]), temperature)


def ntxent(p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Plain SimCLR NT-Xent (the ablation without explicit negatives).

    For an anchor (either lesion view of local sample i) the logits are its similarities to all
    2G lesion views of the global batch except itself, divided by tau; the target is the other
    view of sample i; the mean over the 2B local anchors. With every embedding equal it is
    ln(2G - 1).

    Args:
        p1, p2: projections of the two lesion views, (B, E).
        temperature: tau, finite and > 0.

    Returns:
        Scalar loss.
    """
    p1, p2 = _prepare(temperature, p1, p2)
    rank, world = _rank_and_world()
    b, g = p1.shape[0], world * p1.shape[0]
    views = torch.cat([_gather(p1), _gather(p2)])  # rows j and G + j: the views of sample j
    local = rank * b + torch.arange(b, device=p1.device)
    self_column = torch.cat([local, g + local])
    positive_column = torch.cat([g + local, local])
    columns = torch.arange(2 * g, device=p1.device)
    logits = (torch.cat([p1, p2]) @ views.T).masked_fill(
        self_column[:, None] == columns[None, :], -math.inf
    )
    return _cross_entropy(logits, temperature, target=positive_column)


class _ContrastiveLoss(nn.Module):
    """Shared constructor: the temperature is the only hyperparameter, checked at once."""

    uses_negatives: bool = True
    """Whether ``forward`` needs the negative-patch projections ``n1``, ``n2``."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class NegMiningInfoNCE(_ContrastiveLoss):
    """Module form of :func:`neg_mining_infonce`, the loss of Pai et al. 2024."""

    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor
    ) -> torch.Tensor:
        """Projections (B, E) each -> scalar loss."""
        return neg_mining_infonce(p1, p2, n1, n2, self.temperature)


class NTXentMined(_ContrastiveLoss):
    """Module form of :func:`ntxent_mined` (SimCLR's NT-Xent with Pai et al.'s mined negatives)."""

    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor
    ) -> torch.Tensor:
        """Projections (B, E) each -> scalar loss."""
        return ntxent_mined(p1, p2, n1, n2, self.temperature)


class NTXent(_ContrastiveLoss):
    """Module form of :func:`ntxent`, SimCLR's loss (Chen et al. 2020)."""

    uses_negatives = False

    def forward(
        self,
        p1: torch.Tensor,
        p2: torch.Tensor,
        n1: torch.Tensor | None = None,
        n2: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Lesion projections (B, E) each -> scalar loss; ``n1``, ``n2`` are accepted and unused."""
        return ntxent(p1, p2, self.temperature)


LOSSES: dict[str, type[_ContrastiveLoss]] = {
    "neg_mining_infonce": NegMiningInfoNCE,
    "ntxent_mined": NTXentMined,
    "ntxent": NTXent,
}
"""Config name -> loss module class."""


def build_loss(name: str, temperature: float = 0.1) -> _ContrastiveLoss:
    """The loss module named ``name`` (a key of :data:`LOSSES`) with temperature ``temperature``.

    Raises:
        ValueError: unknown name or invalid temperature.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](temperature)


def _check_temperature(temperature: float) -> None:
    valid = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if not (valid and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def _prepare(temperature: float, *views: torch.Tensor) -> list[torch.Tensor]:
    _check_temperature(temperature)
    shape = views[0].shape
    if len(shape) != 2 or shape[0] < 1 or any(v.shape != shape for v in views):
        shapes = ", ".join(str(tuple(v.shape)) for v in views)
        raise ValueError(f"projections must all have the same shape (B, E) with B >= 1: {shapes}")
    return [F.normalize(v, dim=1) for v in views]


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(x: torch.Tensor) -> torch.Tensor:
    """(B, E) on every rank -> (W * B, E), rank order; the backward sums gradients over ranks."""
    if _rank_and_world()[1] == 1:
        return x
    return torch.cat(dist_nn.all_gather(x))


def _cross_entropy(
    similarities: torch.Tensor, temperature: float, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over rows of -log softmax(similarities / tau)[target]; no target: column 0."""
    if target is None:
        target = torch.zeros(similarities.shape[0], dtype=torch.long, device=similarities.device)
    return F.cross_entropy(similarities / temperature, target)
