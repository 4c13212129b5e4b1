"""workflow_scripts/extract_features.py, run in-process through main([...])."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from fmcib_core.data.patches import extract_patches
from fmcib_core.eval.features import load_backbone
from fmcib_core.io.features import read_features
from fmcib_core.io.weights import save_fmcib_weights
from fmcib_core.models.backbone import backbone_output_dim, build_backbone
from tests.workflow_scripts import import_script

BACKBONE = "resnet10_w025"
SIZE = 16


@pytest.fixture(scope="module")
def script():
    return import_script("extract_features")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Two small volumes, 4 interleaved lesions (relative paths), and a weights file."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(1)
    images = {}
    for name, origin in (("a.nrrd", (-10.0, 4.0, 20.0)), ("b.nrrd", (30.5, -7.25, -3.0))):
        image = sitk.GetImageFromArray(rng.integers(-1024, 1500, (14, 22, 20), dtype=np.int16))
        image.SetSpacing((1.0, 0.8, 1.5))
        image.SetOrigin(origin)
        sitk.WriteImage(image, str(folder / name))
        images[name] = image
    rows = []
    for i, name in enumerate(("a.nrrd", "b.nrrd", "a.nrrd", "b.nrrd")):
        seed = images[name].TransformContinuousIndexToPhysicalPoint((4.0 + 3 * i, 9.5, 7.0 - i))
        rows.append(dict(zip(("coordX", "coordY", "coordZ"), seed, strict=True)))
        rows[-1].update(image_path=name, case=f"c{i}", malignancy=i % 2)
    table = folder / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    weights = folder / "weights.torch"
    save_fmcib_weights(weights, load_backbone(BACKBONE, seed=5).state_dict())
    return {"folder": folder, "table": table, "weights": weights}


def argv(data, out: Path, *source: str, extra=()) -> list[str]:
    return [
        "--table",
        str(data["table"]),
        *(source or ("--weights", str(data["weights"]))),
        "--backbone",
        BACKBONE,
        "--patch-size",
        str(SIZE),
        "--accelerator",
        "cpu",
        "--seed",
        "3",
        "--batch-size",
        "3",
        "--precision",
        "fp32",
        "--out",
        str(out),
        *extra,
    ]


def test_writes_parquet_and_csv(script, data, tmp_path):
    out, csv = tmp_path / "f" / "train.parquet", tmp_path / "f" / "train.csv"
    assert script.main(argv(data, out, extra=("--csv", str(csv)))) == 0
    table, X, names = read_features(out)
    pd.testing.assert_frame_equal(table, pd.read_csv(data["table"]))
    assert X.dtype == np.float32 and X.shape == (4, backbone_output_dim(BACKBONE))
    patches = extract_patches(data["table"], SIZE)
    with torch.no_grad():
        expected = load_backbone(BACKBONE, data["weights"])(torch.from_numpy(patches)).numpy()
    np.testing.assert_allclose(X, expected, atol=1e-5, rtol=0)
    csv_table, csv_X, csv_names = read_features(csv)
    assert list(pd.read_csv(csv).columns) == list(pd.read_parquet(out).columns)
    np.testing.assert_allclose(csv_X, X, rtol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.csv", "train.parquet"]


def test_channels_last_gives_the_same_features(script, data, tmp_path):
    plain, channels_last = tmp_path / "plain.parquet", tmp_path / "last.parquet"
    assert script.main(argv(data, plain)) == 0
    assert script.main(argv(data, channels_last, extra=("--channels-last",))) == 0
    np.testing.assert_allclose(
        read_features(channels_last)[1], read_features(plain)[1], rtol=1e-4, atol=1e-5
    )


def test_random_init_is_seeded(script, data, tmp_path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        args = argv(data, tmp_path / f"{name}.parquet", "--random-init")
        args[args.index("--seed") + 1] = seed
        assert script.main(args) == 0
    a, b, c = (read_features(tmp_path / f"{n}.parquet")[1] for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def bad_weights(data, tmp_path) -> str:
    path = tmp_path / "resnet10.torch"
    save_fmcib_weights(path, build_backbone("resnet10").state_dict())
    return str(path)


NAN_KEYS = ["conv1.weight", "bn1.weight", "layer1.0.conv1.weight"]


def nan_weights(data, tmp_path) -> str:
    """The test weights with NaN or inf in three tensors (a diverged training run)."""
    state = load_backbone(BACKBONE, seed=5).state_dict()
    for key, value in zip(NAN_KEYS, (float("nan"), float("inf"), float("nan")), strict=True):
        state[key] = state[key].clone()
        state[key].view(-1)[-1] = value
    path = tmp_path / "nan.torch"
    save_fmcib_weights(path, state)
    return str(path)


def empty_weights(data, tmp_path) -> str:
    (tmp_path / "empty.torch").write_bytes(b"")
    return str(tmp_path / "empty.torch")


def outside_table(data, tmp_path) -> str:
    table = pd.read_csv(data["table"])
    table.loc[2, "coordX"] += 400.0
    table["image_path"] = [str(data["folder"] / p) for p in table["image_path"]]
    table.to_csv(tmp_path / "outside.csv", index=False)
    return str(tmp_path / "outside.csv")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_weights", "weights file does not exist"),
        ("bad_weights", r"backbone weights do not fit .* wrong shape: conv1\.weight"),
        ("outside", r"row 2 .*a\.nrrd.*outside the scan's 1 mm grid"),
        ("missing_table", "table does not exist"),
        ("no_gpu", "--accelerator gpu, but torch sees no CUDA device"),
        (
            "nan_weights",
            re.escape(
                f"nan.torch: 3 tensors hold NaN or infinite values ({', '.join(NAN_KEYS)}); "
                "the file is corrupt or the training diverged"
            ),
        ),
        ("empty_weights", r"empty\.torch: empty file \(0 bytes\); it was not written completely"),
    ],
)
def test_bad_inputs_fail_cleanly(script, data, tmp_path, capsys, monkeypatch, case, message):
    out, csv = tmp_path / "out" / "f.parquet", tmp_path / "out" / "f.csv"
    args = argv(data, out, extra=("--csv", str(csv)))
    if case == "missing_weights":
        args[args.index("--weights") + 1] = str(tmp_path / "absent.torch")
    elif case in ("bad_weights", "nan_weights", "empty_weights"):
        make = {"bad_weights": bad_weights, "nan_weights": nan_weights}.get(case, empty_weights)
        args[args.index("--weights") + 1] = make(data, tmp_path)
    elif case == "outside":
        args[args.index("--table") + 1] = outside_table(data, tmp_path)
    elif case == "missing_table":
        args[args.index("--table") + 1] = str(tmp_path / "absent.csv")
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        args[args.index("--accelerator") + 1] = "gpu"
    assert script.main(args) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "nothing was written" in err
    assert not out.exists() and not csv.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_weights_and_random_init_are_exclusive(script, data, tmp_path):
    with pytest.raises(SystemExit):
        script.main(argv(data, tmp_path / "f.parquet", "--weights", "w", "--random-init"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_accelerator(script, data, tmp_path):
    args = argv(data, tmp_path / "gpu.parquet")
    args[args.index("--accelerator") + 1] = "gpu"
    assert script.main(args) == 0
    assert script.main(argv(data, tmp_path / "cpu.parquet")) == 0
    gpu, cpu = (read_features(tmp_path / f"{n}.parquet")[1] for n in ("gpu", "cpu"))
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 1e-2
