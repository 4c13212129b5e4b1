"""fmcib_core.data.ssl (volume cache of a table, SSLDataset) and fmcib_core.data.seeding."""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fmcib_core.data.grid import is_grid_cache
from fmcib_core.data.patches import sample_patch
from fmcib_core.data.seeding import derive_seed, worker_init_fn
from fmcib_core.data.ssl import (
    CACHE_PATH_COLUMN,
    SSLDataset,
    cache_table_volumes,
    read_cached_table,
    ssl_dataloader,
)
from fmcib_core.data.volume import Volume
from fmcib_core.io.tables import COORD_COLUMNS, read_table, resolve_image_paths
from fmcib_core.transforms.augment import ssl_view_transform
from tests.train import write_lesion_table

SIZE = 16
INT16_TOLERANCE = 0.5 / 3072 + 1e-6  # the grid cache stores HU rounded to integers


def identity(patch: np.ndarray) -> np.ndarray:
    """A view transform that changes nothing (module level: picklable)."""
    return patch


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_lesion_table(tmp_path_factory.mktemp("images"), n_images=2, lesions_per_image=3)


@pytest.fixture(scope="module")
def cache(source, tmp_path_factory) -> Path:
    table = read_table(source)
    out = tmp_path_factory.mktemp("cache") / "cache"
    return cache_table_volumes(table, resolve_image_paths(table, source), out)


def dataset(cache: Path, transform=identity, seed: int = 0, **kwargs) -> SSLDataset:
    return SSLDataset(read_cached_table(cache), cache, SIZE, transform, seed=seed, **kwargs)


def test_cache_holds_every_distinct_image_once_and_the_table(source, cache):
    table = read_cached_table(cache)
    original = read_table(source)
    pd.testing.assert_frame_equal(table.drop(columns=CACHE_PATH_COLUMN), original)
    assert table[CACHE_PATH_COLUMN].tolist() == ["volumes/0"] * 3 + ["volumes/1"] * 3
    assert sorted(p.name for p in (cache / "volumes").iterdir()) == ["0", "1"]
    assert all(is_grid_cache(cache / p) for p in table[CACHE_PATH_COLUMN])
    assert [p.name for p in cache.parent.iterdir()] == ["cache"]  # no temporary left


def test_cache_refuses_to_replace_a_folder_that_is_not_a_cache(source, tmp_path):
    (tmp_path / "precious").mkdir()
    table = read_table(source)
    with pytest.raises(FileExistsError, match="not a volume cache"):
        cache_table_volumes(table, resolve_image_paths(table, source), tmp_path / "precious")


def test_read_cached_table_reports_a_missing_cache_and_a_missing_volume(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="no table.csv; build the cache"):
        read_cached_table(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    read_cached_table(cache).assign(cache_path="volumes/9").to_csv(broken / "table.csv")
    with pytest.raises(FileNotFoundError, match=r"1 cached volume\(s\) missing.*volumes/9"):
        read_cached_table(broken)


@pytest.mark.parametrize(("dtype", "tolerance"), [("int16", INT16_TOLERANCE), ("float32", 1e-6)])
def test_patches_from_the_cache_equal_patches_from_the_original_files(
    source, tmp_path, dtype, tolerance
):
    table = read_table(source)
    paths = resolve_image_paths(table, source)
    cache = cache_table_volumes(table, paths, tmp_path / "cache", dtype=dtype)
    data = dataset(cache)
    for i in range(len(table)):
        seed = table.loc[i, list(COORD_COLUMNS)].to_numpy(float)
        expected = sample_patch(Volume.load(paths[i]), seed, SIZE)
        p1, p2, n1, n2 = data[i]
        np.testing.assert_allclose(p1.numpy(), expected, rtol=0, atol=tolerance)
        np.testing.assert_array_equal(p2.numpy(), p1.numpy())
        np.testing.assert_array_equal(n1.numpy(), n2.numpy())  # one negative, viewed twice


def test_without_a_view_transform_items_are_the_two_windows(cache):
    lesion, negative = dataset(cache, None, seed=5)[2]
    p1, _, n1, _ = dataset(cache, identity, seed=5)[2]
    assert lesion.shape == negative.shape == (1, SIZE, SIZE, SIZE)
    assert torch.equal(lesion, p1) and torch.equal(negative, n1)
    batch = next(iter(ssl_dataloader(dataset(cache, None), 2, 0)))
    assert [tuple(b.shape) for b in batch] == [(2, 1, SIZE, SIZE, SIZE)] * 2


def test_items_are_four_float32_views_of_the_patch_shape(cache):
    views = dataset(cache, ssl_view_transform())[0]
    assert len(views) == 4
    for view in views:
        assert type(view) is torch.Tensor
        assert view.shape == (1, SIZE, SIZE, SIZE) and view.dtype == torch.float32
    assert not torch.equal(views[0], views[1])  # two independent augmentations


def test_same_seed_same_items_other_seed_other_items(cache):
    first = [dataset(cache, ssl_view_transform(), seed=3)[i] for i in (0, 4)]
    again = [dataset(cache, ssl_view_transform(), seed=3)[i] for i in (0, 4)]
    other = [dataset(cache, ssl_view_transform(), seed=4)[i] for i in (0, 4)]
    for a, b, c in zip(first, again, other, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert not torch.equal(a[0], c[0])
    data = dataset(cache, ssl_view_transform(), seed=3)
    data[1]
    data.reseed(3)  # reseeding restarts every stream
    assert all(torch.equal(x, y) for x, y in zip(data[0], first[0], strict=True))


def test_negatives_keep_their_distance_or_fail_clearly(cache):
    near = dataset(cache, seed=1)
    far = dataset(cache, seed=1, negative_min_distance_mm=12.0)
    assert not all(torch.equal(a[2], b[2]) for a, b in zip(near, far, strict=False))
    with pytest.raises(ValueError, match=r"item 0 .*no negative window .* 1000.0 mm"):
        dataset(cache, negative_min_distance_mm=1000.0)[0]


def test_volumes_are_opened_lazily_kept_in_a_small_lru_and_never_pickled(cache):
    data = dataset(cache, max_open=1)
    assert len(pickle.dumps(data)) < 20_000
    data[0], data[3]
    assert list(data._volumes) == [str(cache / "volumes/1")]
    assert isinstance(data._volumes[str(cache / "volumes/1")].array, np.memmap)
    clone = pickle.loads(pickle.dumps(data))
    assert not clone._volumes
    assert torch.equal(clone[2][0], dataset(cache)[2][0])


def test_bad_arguments_are_refused(cache):
    with pytest.raises(ValueError, match="patch_size"):
        SSLDataset(read_cached_table(cache), cache, 0, identity, seed=0)
    with pytest.raises(ValueError, match="negative_min_distance_mm"):
        dataset(cache, negative_min_distance_mm=-1.0)


def test_derive_seed_is_32_bit_deterministic_and_mixes_all_inputs():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, 0), derive_seed(0, 1), derive_seed(1, 0), derive_seed(2**40)}) == 4
    assert 0 <= derive_seed(12345, 7) < 2**32


def first_items_per_worker(cache: Path, torch_seed: int) -> list[tuple[torch.Tensor, ...]]:
    """Batch-1 items of a table whose rows are all the same lesion, from 2 workers."""
    table = read_cached_table(cache).iloc[[0] * 4]
    data = SSLDataset(table, cache, SIZE, ssl_view_transform(), seed=0)
    loader = torch.utils.data.DataLoader(
        data, batch_size=1, num_workers=2, worker_init_fn=worker_init_fn
    )
    torch.manual_seed(torch_seed)  # what seed_everything does to the workers' base seed
    return [tuple(v[0] for v in batch) for batch in loader]


def test_workers_draw_different_augmentations_reproducibly(cache):
    items = first_items_per_worker(cache, torch_seed=0)
    # Items 0 and 1 come from workers 0 and 1 (round robin), same lesion, other draws.
    assert not torch.equal(items[0][0], items[1][0])
    assert not torch.equal(items[0][2], items[1][2])
    again = first_items_per_worker(cache, torch_seed=0)
    assert all(
        torch.equal(torch.stack(x), torch.stack(y)) for x, y in zip(items, again, strict=True)
    )
    other = first_items_per_worker(cache, torch_seed=1)
    assert not torch.equal(items[0][0], other[0][0])


def test_worker_init_fn_is_a_no_op_outside_workers_and_needs_reseed(monkeypatch):
    worker_init_fn(0)  # main process: nothing to do
    worker = types.SimpleNamespace(dataset=torch.utils.data.TensorDataset(torch.zeros(1)))
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: worker)
    with pytest.raises(TypeError, match="worker 0: dataset TensorDataset has no reseed"):
        worker_init_fn(0)


def test_ssl_dataloader_batches_shuffled_views_and_drops_the_last_short_batch(cache):
    loader = ssl_dataloader(dataset(cache, ssl_view_transform()), batch_size=4, num_workers=0)
    batches = list(loader)
    assert len(batches) == 1 and loader.drop_last
    assert [tuple(v.shape) for v in batches[0]] == [(4, 1, SIZE, SIZE, SIZE)] * 4
