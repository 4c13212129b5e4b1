"""Augmentations of normalised CT patches: per-item MONAI transforms and their batched twin."""

from __future__ import annotations

from fmcib_core.transforms.augment import (
    RandResizedCrop3d,
    ssl_view_transform,
    supervised_train_transform,
)
from fmcib_core.transforms.batched import BatchedSSLViews, ViewParams, apply_view_params

__all__ = [
    "BatchedSSLViews",
    "RandResizedCrop3d",
    "ViewParams",
    "apply_view_params",
    "ssl_view_transform",
    "supervised_train_transform",
]
