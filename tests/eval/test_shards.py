"""fmcib_core.eval.shards: the split of a table into shards by image, and the gather back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmcib_core.eval.shards import full_batches, gather_shards, shard_rows

# images of the rows, shards -> each shard's rows
CASES = [
    (["a", "b", "a", "c", "b", "a"], 1, [[0, 1, 2, 3, 4, 5]]),
    # a (3 lesions) first, then b (2) to the emptier shard, then c (1) to the emptier again
    (["a", "b", "a", "c", "b", "a"], 2, [[0, 2, 5], [1, 3, 4]]),
    (["a", "b", "a", "c", "b", "a"], 3, [[0, 2, 5], [1, 4], [3]]),
    # more shards than images: the last ones are empty
    (["a", "b", "a", "c", "b", "a"], 5, [[0, 2, 5], [1, 4], [3], [], []]),
    # ties: the image that appears first goes first, to the lowest shard
    (["y", "x", "x", "y"], 2, [[0, 3], [1, 2]]),
    # the big image alone, the small ones together
    (["s1", "big", "s2", "big", "big", "s1", "big", "s3"], 2, [[1, 3, 4, 6], [0, 2, 5, 7]]),
]


@pytest.mark.parametrize(("images", "n_shards", "expected"), CASES)
def test_table_driven_cases(images, n_shards, expected):
    shards = shard_rows(images, n_shards)
    assert [s.tolist() for s in shards] == expected
    assert all(s.dtype == np.int64 for s in shards)


def _random_images(seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(1, 30))
    lesions = rng.integers(1, 12, n_images)
    images = np.repeat([f"scan{i}.nii.gz" for i in range(n_images)], lesions)
    return rng.permutation(images).tolist()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 40])
def test_every_row_once_every_image_in_one_shard_and_balanced(seed, n_shards):
    images = _random_images(seed)
    shards = shard_rows(images, n_shards)
    assert len(shards) == n_shards
    rows = np.concatenate(shards)
    assert sorted(rows.tolist()) == list(range(len(images)))
    assert all((np.diff(s) > 0).all() for s in shards)  # table order within a shard
    owner = {}
    for shard, positions in enumerate(shards):
        for row in positions:
            assert owner.setdefault(images[row], shard) == shard, "an image in two shards"
    loads = [len(s) for s in shards]
    largest = max(images.count(image) for image in set(images))
    assert max(loads) - min(loads) <= largest
    # no shard is empty while another holds two images
    if min(loads) == 0:
        assert all(len({images[r] for r in s}) <= 1 for s in shards)


def test_same_input_same_split_whatever_the_container():
    images = _random_images(3)
    first = shard_rows(images, 4)
    again = shard_rows(pd.Series(images, index=np.arange(len(images)) * 7 + 3), 4)
    assert [s.tolist() for s in first] == [s.tolist() for s in again]


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1; got 0"):
        shard_rows(["a"], 0)
    with pytest.raises(ValueError, match="row 1 has no image"):
        shard_rows(["a", None, "b"], 2)


def _shards_of(features: np.ndarray, images: list[str], n_shards: int) -> list:
    return [(rows, features[rows]) for rows in shard_rows(images, n_shards)]


@pytest.mark.parametrize("n_shards", [1, 2, 5, 30])
def test_gather_puts_every_row_back(n_shards):
    images = _random_images(5)
    features = np.random.default_rng(0).normal(size=(len(images), 6)).astype(np.float32)
    shards = _shards_of(features, images, n_shards)
    # empty shards as read from file: no feature columns
    shards = [(r, f if len(r) else np.empty((0, 0), np.float32)) for r, f in shards]
    gathered = gather_shards(shards[::-1], len(images))  # shard order does not matter
    assert gathered.dtype == np.float32
    np.testing.assert_array_equal(gathered, features)


def test_gather_refuses_shards_that_are_not_the_tables():
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    shards = _shards_of(features, ["a", "b", "a", "c", "b", "a"], 3)
    with pytest.raises(ValueError, match=r"rows in no shard: \[3\]"):
        gather_shards(shards[:2], 6)
    with pytest.raises(ValueError, match=r"more than one shard: \[3\]"):
        gather_shards([*shards, shards[2]], 6)
    with pytest.raises(ValueError, match=r"of 5 rows; rows past the table's end: \[5\]$"):
        gather_shards(shards, 5)
    with pytest.raises(ValueError, match=r"differ in width: \[2, 3\]"):
        gather_shards([shards[0], (shards[1][0], np.ones((2, 3))), shards[2]], 6)
    with pytest.raises(ValueError, match=r"shard 1: \(2,\) row positions for features"):
        gather_shards([shards[0], (shards[1][0], np.ones((3, 2))), shards[2]], 6)
    with pytest.raises(ValueError, match="no rows"):
        gather_shards([(np.empty(0, np.int64), np.empty((0, 0)))], 0)


@pytest.mark.parametrize(
    ("n", "batch_size", "padded"), [(6, 4, 8), (8, 4, 8), (1, 16, 16), (5, 1, 5)]
)
def test_full_batches_repeat_the_last_row(n, batch_size, padded):
    table = pd.DataFrame({"image_path": [f"s{i // 2}" for i in range(n)], "x": range(n)},
                         index=np.arange(n) + 100)  # fmt: skip
    out = full_batches(table, batch_size)
    assert len(out) == padded and out.index.tolist() == list(range(padded))
    pd.testing.assert_frame_equal(out.iloc[:n], table.reset_index(drop=True))
    assert (out.iloc[n:] == table.iloc[-1].to_numpy()).all().all()
    assert set(out["image_path"]) == set(table["image_path"])


def test_full_batches_bad_arguments():
    with pytest.raises(ValueError, match="at least 1; got 0"):
        full_batches(pd.DataFrame({"x": [1]}), 0)
    with pytest.raises(ValueError, match="no rows"):
        full_batches(pd.DataFrame({"x": []}), 4)
