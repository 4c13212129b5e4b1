"""fmcib_core.eval.features: batched frozen-backbone features, seeded init, strict loading."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

import fmcib_core
from fmcib_core.data.patches import PatchError, extract_patches
from fmcib_core.data.volume import Volume
from fmcib_core.eval.features import (
    extract_feature_sources,
    extract_features,
    features_of_patches,
    get_features,
    load_backbone,
    prefetch,
)
from fmcib_core.io.features import read_features, write_features
from fmcib_core.io.weights import WeightsError, save_fmcib_weights
from fmcib_core.models.backbone import backbone_output_dim, build_backbone

BACKBONE = "resnet10_w025"
SIZE = 16
# (shape x, y, z), spacing, origin, direction: one LPS-stored and one RAS-stored image.
IMAGES = {
    "a.nii.gz": ((28, 24, 16), (1.1, 0.9, 1.6), (-20.0, 15.5, -30.0), np.eye(3)),
    "b.nii.gz": ((22, 26, 18), (0.8, 1.2, 1.3), (5.0, -10.0, 40.0), np.diag([-1.0, -1.0, 1.0])),
}
# Interleaved rows: (image, continuous voxel index of the seed).
LESIONS = [
    ("a.nii.gz", (14.2, 11.7, 8.1)),
    ("b.nii.gz", (10.5, 12.0, 9.3)),
    ("a.nii.gz", (3.0, 20.4, 2.2)),
    ("b.nii.gz", (1.2, 3.3, 15.8)),
    ("a.nii.gz", (25.6, 2.1, 13.9)),
]


def write_lesion_table(folder: Path) -> Path:
    """Two small random CT volumes and a CSV of 5 interleaved lesions (relative image paths)."""
    rng = np.random.default_rng(0)
    images = {}
    for name, (shape, spacing, origin, direction) in IMAGES.items():
        values = rng.integers(-1024, 1500, size=shape[::-1], dtype=np.int16)
        image = sitk.GetImageFromArray(values)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(tuple(direction.ravel()))
        sitk.WriteImage(image, str(folder / name))
        images[name] = image
    rows = []
    for i, (name, index) in enumerate(LESIONS):
        x, y, z = images[name].TransformContinuousIndexToPhysicalPoint(index)
        rows.append({"image_path": name, "coordX": x, "coordY": y, "coordZ": z, "lesion": f"L{i}"})
    path = folder / "lesions.csv"
    pd.DataFrame(rows).assign(split="train").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("lesions")
    table_path = write_lesion_table(folder)
    weights = folder / "weights.torch"
    save_fmcib_weights(weights, load_backbone(BACKBONE, seed=123).state_dict())
    return {
        "folder": folder,
        "table_path": table_path,
        "table": pd.read_csv(table_path),
        "weights": weights,
    }


@pytest.fixture(scope="module")
def backbone(data) -> torch.nn.Module:
    return load_backbone(BACKBONE, data["weights"])


def features(backbone, data, **kwargs) -> np.ndarray:
    kwargs = {"base_dir": data["folder"], "patch_size": SIZE, **kwargs}
    return extract_features(backbone, data["table"], **kwargs)


def test_equals_the_backbone_on_the_patch_function(backbone, data):
    patches = extract_patches(data["table"], SIZE, base_dir=data["folder"])
    with torch.no_grad():
        expected = backbone.eval()(torch.from_numpy(patches)).numpy()
    got = features(backbone, data, batch_size=2)
    assert got.dtype == np.float32
    assert got.shape == (len(LESIONS), backbone_output_dim(BACKBONE))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_deterministic_and_independent_of_batch_size(backbone, data):
    first = features(backbone, data, batch_size=3)
    np.testing.assert_array_equal(first, features(backbone, data, batch_size=3))
    for batch_size in (1, 2, 16):
        np.testing.assert_allclose(
            features(backbone, data, batch_size=batch_size), first, atol=1e-5, rtol=0
        )


def count_loads(monkeypatch) -> list[str]:
    """The paths every ``Volume.load`` opens from now on, in order (any thread)."""
    loads: list[str] = []
    original = Volume.load

    def load(path):
        loads.append(str(path))
        return original(path)

    monkeypatch.setattr(Volume, "load", staticmethod(load))
    return loads


def patch_stats(patch: np.ndarray) -> np.ndarray:
    return np.array([patch.mean(), patch.std(), patch.max()], dtype=np.float64)


def test_feature_sources_read_each_image_once_and_equal_separate_passes(
    backbone, data, monkeypatch
):
    control = load_backbone(BACKBONE, seed=7)
    common = {"base_dir": data["folder"], "patch_size": SIZE, "batch_size": 2}  # short last
    expected = {name: extract_features(b, data["table"], **common)
                for name, b in (("trained", backbone), ("control", control))}  # fmt: skip
    patches = extract_patches(data["table"], SIZE, base_dir=data["folder"])
    expected["stats"] = np.stack([patch_stats(p) for p in patches]).astype(np.float32)
    loads = count_loads(monkeypatch)
    got = extract_feature_sources(
        {"trained": backbone, "control": control},
        data["table"],
        per_patch={"stats": patch_stats},
        **common,
    )
    assert sorted(loads) == sorted(str(data["folder"] / name) for name in IMAGES)
    assert sorted(got) == sorted(expected)
    for name, values in expected.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], values, err_msg=name)
    only = extract_feature_sources({}, data["table"], per_patch={"stats": patch_stats}, **common)
    np.testing.assert_array_equal(only["stats"], expected["stats"])


def test_feature_sources_bad_arguments(backbone, data):
    common = {"base_dir": data["folder"], "patch_size": SIZE}
    with pytest.raises(ValueError, match="no feature source"):
        extract_feature_sources({}, data["table"], **common)
    with pytest.raises(ValueError, match=r"both of a backbone and .*\['x'\]"):
        extract_feature_sources({"x": backbone}, data["table"], per_patch={"x": patch_stats})
    with pytest.raises(ValueError, match="no rows"):
        extract_feature_sources({"x": backbone}, data["table"].iloc[:0], **common)


def test_rows_follow_the_table_order(backbone, data):
    order = [3, 0, 4, 1, 2]
    shuffled = extract_features(
        backbone, data["table"].iloc[order], base_dir=data["folder"], patch_size=SIZE
    )
    np.testing.assert_allclose(shuffled, features(backbone, data)[order], atol=1e-5, rtol=0)


def test_feature_table_roundtrip(backbone, data, tmp_path):
    X = features(backbone, data)
    write_features(tmp_path / "f.parquet", data["table"], X)
    table, read_X, names = read_features(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(table, data["table"])
    assert read_X.dtype == np.float32 and names[-1] == f"pred_{X.shape[1] - 1}"
    np.testing.assert_array_equal(read_X, X)


def test_random_init_is_seeded_and_leaves_the_global_state_alone(data):
    state = torch.random.get_rng_state()
    same = [features(load_backbone(BACKBONE, seed=7), data) for _ in range(2)]
    other = features(load_backbone(BACKBONE, seed=8), data)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(same[0], other)


def test_weights_are_loaded_not_random(backbone, data):
    trained = load_backbone(BACKBONE, data["weights"])
    for key, value in load_backbone(BACKBONE, seed=123).state_dict().items():
        assert torch.equal(trained.state_dict()[key], value), key
    assert not trained.training


def test_a_trained_backbone_is_built_without_a_random_initialisation(data, monkeypatch):
    """Built on the meta device: every tensor is the file's, none was initialised on the CPU."""
    cpu_inits = []
    original = torch.nn.init.kaiming_normal_

    def counting(tensor, *args, **kwargs):
        cpu_inits.append(tensor.device.type != "meta")
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", counting)
    trained = load_backbone(BACKBONE, data["weights"])
    assert cpu_inits and not any(cpu_inits)
    tensors = [*trained.parameters(), *trained.buffers()]
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(p.requires_grad for p in trained.parameters())
    load_backbone(BACKBONE, seed=1)
    assert any(cpu_inits)  # the random-init control does initialise, on the CPU


def test_prefetch_reads_ahead_keeps_order_and_hands_over_errors():
    started = threading.Event()

    def items():
        started.set()
        yield from range(5)
        raise PatchError("row 5 (x.nii.gz): outside")

    ahead = prefetch(items(), depth=2)
    assert started.wait(5), "the producer starts before the first next()"
    got = []
    with pytest.raises(PatchError, match="row 5"):
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="depth"):
        prefetch(iter([]), depth=0)


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    ahead = prefetch(iter(range(10_000)), depth=1)
    assert next(ahead) == 0
    ahead.close()
    assert not any(t.name == "fmcib-prefetch" and t.is_alive() for t in threading.enumerate())


def test_ill_fitting_weights_name_the_keys(tmp_path):
    wrong = tmp_path / "resnet10.torch"
    save_fmcib_weights(wrong, build_backbone("resnet10").state_dict())
    with pytest.raises(WeightsError, match=r"wrong shape: conv1\.weight"):
        load_backbone(BACKBONE, wrong)
    partial = {k: v for k, v in build_backbone(BACKBONE).state_dict().items() if "layer4" not in k}
    save_fmcib_weights(tmp_path / "partial.torch", partial)
    with pytest.raises(WeightsError, match=r"missing: layer4\.0\.conv1\.weight"):
        load_backbone(BACKBONE, tmp_path / "partial.torch")
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone(BACKBONE, tmp_path / "absent.torch")


def test_bf16_is_close_to_fp32(backbone, data):
    fp32 = features(backbone, data)
    bf16 = features(backbone, data, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    relative = np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32)
    assert relative < 1e-2


def test_get_features_returns_the_table_with_features(backbone, data):
    frame = get_features(
        data["table_path"], data["weights"], backbone=BACKBONE, patch_size=SIZE, progress=False
    )
    names = [f"pred_{i}" for i in range(backbone_output_dim(BACKBONE))]
    assert list(frame.columns) == [*data["table"].columns, *names]
    assert (frame[names].dtypes == np.float32).all()
    pd.testing.assert_frame_equal(frame[list(data["table"].columns)], data["table"])
    np.testing.assert_allclose(frame[names].to_numpy(), features(backbone, data), atol=1e-5)
    assert fmcib_core.get_features is get_features


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "precision must be one of"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_bad_arguments(backbone, data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        features(backbone, data, **kwargs)


def test_bad_tables(backbone, data):
    with pytest.raises(ValueError, match="no rows"):
        extract_features(backbone, data["table"].iloc[:0], base_dir=data["folder"])
    outside = data["table"].assign(coordZ=data["table"]["coordZ"] + [0, 0, 500.0, 0, 0])
    with pytest.raises(PatchError, match=r"row 2 .*a\.nii\.gz.*outside"):
        extract_features(backbone, outside, base_dir=data["folder"], patch_size=SIZE)
    with pytest.raises(ValueError, match="random-init backbone needs a seed"):
        load_backbone(BACKBONE)
    with pytest.raises(ValueError, match="feature-like columns"):
        get_features(data["table"].assign(pred_0=1.0), data["weights"], backbone=BACKBONE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_matches_cpu(data, precision):
    cpu = features(load_backbone(BACKBONE, data["weights"]), data)
    cuda = features(
        load_backbone(BACKBONE, data["weights"]), data, device="cuda", precision=precision
    )
    # cuDNN convolutions may use TF32, and bf16 rounds further: compare norm-wise.
    assert np.linalg.norm(cuda - cpu) / np.linalg.norm(cpu) < 1e-2


def test_features_of_patches_in_channels_last_equal_the_default_layout(backbone, data):
    table = data["table"].assign(
        image_path=lambda t: [str(data["folder"] / p) for p in t.image_path]
    )
    patches = extract_patches(table, SIZE)
    pairs = [(row, patch) for row, patch in enumerate(patches)][::-1]  # any order of rows
    common = {"patch_size": SIZE, "batch_size": 2}
    channels_last = features_of_patches(
        backbone, iter(pairs), len(table), channels_last=True, **common
    )
    np.testing.assert_allclose(channels_last, features(backbone, data), rtol=1e-4, atol=1e-5)
