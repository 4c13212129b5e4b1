"""Patch augmentations: shapes, ranges, determinism, picklability (spawned DataLoader workers)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fmcib_core.transforms import (
    RandResizedCrop3d,
    ssl_view_transform,
    supervised_train_transform,
)


def _patch(seed: int = 0, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size, size), dtype=np.float32)


@pytest.mark.parametrize("factory", [ssl_view_transform, supervised_train_transform])
@pytest.mark.parametrize("size", [16, 24, 50])
def test_shape_and_dtype_kept(factory, size: int) -> None:
    transform = factory()
    transform.set_random_state(0)
    out = transform(_patch(size=size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, size, size, size) and out.dtype == torch.float32


@pytest.mark.parametrize("factory", [ssl_view_transform, supervised_train_transform])
def test_same_seed_same_view_different_seed_different_view(factory) -> None:
    a, b, c = factory(), factory(), factory()
    a.set_random_state(3)
    b.set_random_state(3)
    c.set_random_state(4)
    x = _patch()
    views_a = [a(x) for _ in range(4)]
    views_b = [b(x) for _ in range(4)]
    views_c = [c(x) for _ in range(4)]
    for va, vb in zip(views_a, views_b, strict=True):
        torch.testing.assert_close(va, vb)
    assert any(not torch.equal(va, vc) for va, vc in zip(views_a, views_c, strict=True))


def test_ssl_view_clips_below_air() -> None:
    transform = ssl_view_transform()
    transform.set_random_state(0)
    x = _patch() - 0.5  # half the voxels below -1024 HU
    for _ in range(5):
        assert float(transform(x).min()) >= 0.0


def test_resized_crop_uses_one_scale_on_every_axis() -> None:
    crop = RandResizedCrop3d((0.5, 1.0))
    crop.set_random_state(7)
    for _ in range(20):
        crop.randomize((40, 40, 40))
        assert len(set(crop._size)) == 1
        assert 20 <= crop._size[0] <= 40
        assert all(0 <= a <= 40 - s for a, s in zip(crop._start, crop._size, strict=True))


def test_resized_crop_full_scale_is_identity() -> None:
    crop = RandResizedCrop3d((1.0, 1.0))
    x = torch.from_numpy(_patch())
    torch.testing.assert_close(crop(x), x, atol=1e-6, rtol=0)


def test_resized_crop_rejects_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        RandResizedCrop3d((0.0, 1.0))


def test_translation_fills_with_air() -> None:
    transform = supervised_train_transform(max_shift=10)
    transform.set_random_state(0)
    ones = np.ones((1, 24, 24, 24), dtype=np.float32)
    minima = [float(transform(ones).min()) for _ in range(12)]
    assert min(minima) == pytest.approx(0.0, abs=1e-6)  # some draw shifted air (0) in
    assert max(minima) == pytest.approx(1.0, abs=1e-6)  # some draw did not translate


class _Views(Dataset):
    def __init__(self) -> None:
        self.transform = ssl_view_transform()

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(_patch(i, 16))


def test_transforms_pickle_and_run_in_spawned_workers() -> None:
    pickle.loads(pickle.dumps(ssl_view_transform()))
    pickle.loads(pickle.dumps(supervised_train_transform()))
    loader = DataLoader(_Views(), batch_size=2, num_workers=1, multiprocessing_context="spawn")
    (batch,) = list(loader)
    assert batch.shape == (2, 1, 16, 16, 16)
