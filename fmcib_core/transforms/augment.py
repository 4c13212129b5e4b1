"""Augmentations of normalised CT patches, built from MONAI array transforms.

All transforms act on one patch shaped (1, D, H, W) (channel first, axes z, y, x) in normalised
units ``(HU + 1024) / 3072``, so 0 is -1024 HU (air) and every step commutes with the linear
normalisation. Everything here is a module-level class or a MONAI transform: picklable, so that
DataLoader workers started with ``spawn`` (the default on macOS) receive them intact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureType,
    RandAffine,
    RandAxisFlip,
    RandGaussianSmooth,
    RandHistogramShift,
    RandomizableTransform,
    RandRotate90,
    Resize,
    ThresholdIntensity,
)

__all__ = ["RandResizedCrop3d", "ssl_view_transform", "supervised_train_transform"]

SMOOTH_SIGMA = (0.25, 1.5)


class RandResizedCrop3d(RandomizableTransform):
    """Crop a random cube-shaped sub-box and resize it back to the input's shape (trilinear).

    The side fraction ``s ~ U(scale)`` is the same on every axis (docs/method.md section 4), the
    position is uniform among the positions where the box fits. Always applied.

    Args:
        scale: the (low, high) range of the kept fraction of every side.
    """

    def __init__(self, scale: tuple[float, float] = (0.5, 1.0)) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        RandomizableTransform.__init__(self, prob=1.0)
        self.scale = scale
        self._start: tuple[int, ...] = ()
        self._size: tuple[int, ...] = ()

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        super().randomize(None)
        frac = self.R.uniform(*self.scale)
        self._size = tuple(max(1, int(round(frac * n))) for n in spatial_shape)
        self._start = tuple(
            int(self.R.randint(0, n - s + 1))
            for n, s in zip(spatial_shape, self._size, strict=True)
        )

    def __call__(self, img: torch.Tensor | np.ndarray, randomize: bool = True) -> torch.Tensor:
        """(C, D, H, W) -> (C, D, H, W)."""
        shape = tuple(img.shape[1:])
        if randomize:
            self.randomize(shape)
        box = (slice(None),) + tuple(
            slice(a, a + s) for a, s in zip(self._start, self._size, strict=True)
        )
        return Resize(shape, mode="trilinear", align_corners=False)(img[box])


def ssl_view_transform() -> Compose:
    """One augmented view for self-supervised pretraining (docs/method.md section 4).

    Random resized crop (always), flip along one random axis (p 0.5), histogram shift with 10
    control points (p 0.5), Gaussian smoothing with sigma per axis ~ U(0.25, 1.5) voxels (p 0.5),
    then clipping below at 0 (-1024 HU). (1, D, H, W) in, float32 tensor of the same shape out.
    """
    return Compose(
        [
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
            RandResizedCrop3d((0.5, 1.0)),
            RandAxisFlip(prob=0.5),
            RandHistogramShift(num_control_points=10, prob=0.5),
            RandGaussianSmooth(SMOOTH_SIGMA, SMOOTH_SIGMA, SMOOTH_SIGMA, prob=0.5),
            ThresholdIntensity(threshold=0.0, above=True, cval=0.0),
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )


def supervised_train_transform(max_shift: int = 10) -> Compose:
    """Training augmentation of the supervised tasks (docs/method.md section 5).

    Gaussian smoothing (p 0.5, sigma ~ U(0.25, 1.5)), translation up to ``max_shift`` voxels per
    axis filled with 0 (p 0.5), flip along one random axis (p 0.5), rotation by a random multiple
    of 90 degrees in the (z, y) plane (p 0.5). (1, D, H, W) in, float32 tensor out.
    """
    return Compose(
        [
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
            RandGaussianSmooth(SMOOTH_SIGMA, SMOOTH_SIGMA, SMOOTH_SIGMA, prob=0.5),
            RandAffine(
                prob=0.5,
                translate_range=(max_shift,) * 3,
                mode="bilinear",
                padding_mode="zeros",
            ),
            RandAxisFlip(prob=0.5),
            RandRotate90(prob=0.5, max_k=3, spatial_axes=(0, 1)),
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )
