"""fmcib_core.data.labelled: the patch cache, label checks and the labelled dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from fmcib_core.data import labelled
from fmcib_core.data.labelled import (
    LabelError,
    LabelledPatches,
    cache_patches,
    labelled_loader,
    read_labels,
)
from fmcib_core.data.patches import PatchError, extract_patches
from fmcib_core.transforms.augment import supervised_train_transform

SIZE = 12


@pytest.fixture
def table(tmp_path: Path, make_image) -> pd.DataFrame:
    """Five lesions in two small images, absolute paths, a binary and a multiclass label."""
    paths = []
    for i, spacing in enumerate([(0.8, 0.9, 2.0), (1.1, 0.7, 1.5)]):
        path = tmp_path / f"img{i}.nii.gz"
        sitk.WriteImage(make_image((30, 28, 14), spacing, (1.0, -2.0, 3.0), seed=i), str(path))
        paths.append(str(path))
    return pd.DataFrame(
        {
            "image_path": [paths[0], paths[1], paths[0], paths[1], paths[0]],
            "coordX": [10.0, 12.0, 14.5, 8.0, 20.0],
            "coordY": [5.0, 9.0, 12.0, 4.0, 15.0],
            "coordZ": [10.0, 8.0, 12.0, 14.0, 9.0],
            "malignancy": [0, 1, 0, 1, 1],
            "Coarse_lesion_type": [0, 7, 3, 3, 1],
        }
    )


def test_cache_holds_the_patches_of_extract_patches(table: pd.DataFrame, tmp_path: Path) -> None:
    path = cache_patches(table, tmp_path / "cache", SIZE, name="train")
    assert path.name.startswith("train-") and path.suffix == ".npy"
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
    assert mapped.shape == (5, 1, SIZE, SIZE, SIZE)
    np.testing.assert_array_equal(mapped, extract_patches(table, SIZE))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_cache_is_reused_and_keyed_by_its_inputs(
    table: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cache_patches(table, tmp_path, SIZE)

    def fail(*args, **kwargs):
        raise AssertionError("patches were sampled again")

    with monkeypatch.context() as patch:
        patch.setattr(labelled, "iter_patches", fail)
        assert cache_patches(table, tmp_path, SIZE) == first
    moved = table.assign(coordX=table["coordX"] + 1.0)
    assert cache_patches(moved, tmp_path, SIZE) != first
    assert cache_patches(table, tmp_path, SIZE + 2) != first


def test_failed_cache_leaves_nothing(table: pd.DataFrame, tmp_path: Path) -> None:
    bad = table.assign(coordZ=[10.0, 8.0, 500.0, 14.0, 9.0])
    with pytest.raises(PatchError, match="row 2"):
        cache_patches(bad, tmp_path / "cache", SIZE)
    assert list((tmp_path / "cache").iterdir()) == []


def test_read_labels_returns_int64(table: pd.DataFrame) -> None:
    y = read_labels(table, "Coarse_lesion_type", source="t.csv")
    assert y.dtype == np.int64 and y.tolist() == [0, 7, 3, 3, 1]


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        ({"drop": "malignancy"}, "malignancy", "t.csv: label column 'malignancy' is missing"),
        ({"malignancy": [0, 1, np.nan, 1, 0]}, "malignancy", r"1 empty or invalid .*rows \[3\]"),
        ({"malignancy": [0, 1, 2, 1, 0]}, "malignancy", "must be 0 or 1"),
        ({"Coarse_lesion_type": [0, 1, 8, 1, 0]}, "Coarse_lesion_type", "integer 0..7"),
        (
            {"malignancy": [1, 1, 1, 1, 1]},
            "malignancy",
            r"holds 1 class\(es\) \[1\]; need at least 2",
        ),
    ],
)
def test_bad_labels_are_named(table: pd.DataFrame, change: dict, column: str, message: str) -> None:
    if "drop" in change:
        table = table.drop(columns=change["drop"])
    else:
        table = table.assign(**change)
    with pytest.raises(LabelError, match=message):
        read_labels(table, column, source="t.csv")


def test_only_class_labels_are_read(table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="'survival_time' is not a class label"):
        read_labels(table.assign(survival_time=1.0), "survival_time", source="t")


def test_single_class_allowed_when_asked(table: pd.DataFrame) -> None:
    y = read_labels(table.assign(malignancy=1), "malignancy", source="t", min_classes=1)
    assert y.tolist() == [1] * 5


@pytest.fixture
def cache(table: pd.DataFrame, tmp_path: Path) -> Path:
    return cache_patches(table, tmp_path, SIZE)


def test_items_are_patch_and_label(cache: Path) -> None:
    patches = np.load(cache)
    ints = LabelledPatches(cache, np.array([0, 1, 0, 1, 1]))
    x, y = ints[3]
    assert x.dtype == torch.float32 and x.shape == (1, SIZE, SIZE, SIZE)
    np.testing.assert_array_equal(x.numpy(), patches[3])
    assert y.dtype == torch.int64 and y.shape == () and int(y) == 1
    floats = LabelledPatches(cache, np.array([0, 1, 0, 1, 1]), float_labels=True)
    assert floats[1][1].dtype == torch.float32 and len(floats) == 5


def test_transform_is_seeded_by_reseed(cache: Path) -> None:
    labels = np.zeros(5, dtype=np.int64)

    def draws(seed: int) -> list[torch.Tensor]:
        dataset = LabelledPatches(cache, labels, supervised_train_transform(2), seed=seed)
        return [dataset[i][0] for i in range(5)]

    a, b, c = draws(3), draws(3), draws(4)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))
    dataset = LabelledPatches(cache, labels, supervised_train_transform(2), seed=0)
    dataset.reseed(3)
    assert all(torch.equal(dataset[i][0], a[i]) for i in range(5))


def test_dataset_pickles_without_its_open_map(cache: Path) -> None:
    dataset = LabelledPatches(cache, np.arange(5) % 2, supervised_train_transform(2))
    dataset[0]
    assert dataset._array is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._array is None
    np.testing.assert_array_equal(clone[2][1].numpy(), dataset[2][1].numpy())


def test_label_count_must_match(cache: Path) -> None:
    with pytest.raises(ValueError, match="5 patches for labels"):
        LabelledPatches(cache, np.zeros(4))


def test_fingerprint_names_patches_and_labels(cache: Path) -> None:
    a = LabelledPatches(cache, np.array([0, 1, 0, 1, 1]))
    same = LabelledPatches(cache, np.array([0, 1, 0, 1, 1]), supervised_train_transform(2))
    other = LabelledPatches(cache, np.array([1, 1, 0, 1, 1]))
    assert a.fingerprint() == same.fingerprint() != other.fingerprint()
    assert a.fingerprint().startswith(cache.name)


@pytest.mark.parametrize(
    ("batch_size", "train", "batches"),
    [(2, True, [2, 2]), (4, True, [4]), (3, True, [3, 2]), (2, False, [2, 2, 1]), (5, True, [5])],
)
def test_loader_drops_only_a_lone_training_patch(cache, batch_size, train, batches) -> None:
    dataset = LabelledPatches(cache, np.arange(5))
    loader = labelled_loader(dataset, batch_size, train=train)
    assert [len(y) for _, y in loader] == batches
    if not train:
        assert torch.cat([y for _, y in loader]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="batch_size"):
        labelled_loader(dataset, 0, train=True)
