"""Contrastive losses of the self-supervised pretraining (docs/method.md section 4)."""

from __future__ import annotations

from fmcib_core.losses.contrastive import (
    LOSSES,
    NegMiningInfoNCE,
    NTXent,
    NTXentMined,
    build_loss,
    neg_mining_infonce,
    ntxent,
    ntxent_mined,
)

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
