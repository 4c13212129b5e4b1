"""Augmentations of normalised CT patches (MONAI array transforms)."""

from __future__ import annotations

from fmcib_core.transforms.augment import (
    RandResizedCrop3d,
    ssl_view_transform,
    supervised_train_transform,
)

__all__ = ["RandResizedCrop3d", "ssl_view_transform", "supervised_train_transform"]
