"""workflow_scripts/gather_features.py with extract_features.py --shard, run in-process.

Features extracted in shards and gathered are the unsharded run's features, file for file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from fmcib_core.io.features import read_feature_shard, read_features
from tests.workflow_scripts import import_script

BACKBONE = "resnet10_w025"
# rows' images: a 3 lesions, b 2, c 1, interleaved so that shards are not runs of rows
IMAGES = ["a.nrrd", "b.nrrd", "a.nrrd", "c.nrrd", "b.nrrd", "a.nrrd"]


@pytest.fixture(scope="module")
def scripts():
    return {name: import_script(name) for name in ("extract_features", "gather_features")}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """Three small volumes and six lesions on them (relative paths)."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(2)
    images = {}
    for i, name in enumerate(sorted(set(IMAGES))):
        image = sitk.GetImageFromArray(rng.integers(-1024, 1500, (14, 20, 18), dtype=np.int16))
        image.SetSpacing((1.0, 0.9, 1.25))
        image.SetOrigin((-5.0 * i, 3.0, 10.0 + i))
        sitk.WriteImage(image, str(folder / name))
        images[name] = image
    rows = []
    for i, name in enumerate(IMAGES):
        seed = images[name].TransformContinuousIndexToPhysicalPoint((5.0 + i, 8.5, 6.0))
        rows.append(dict(zip(("coordX", "coordY", "coordZ"), seed, strict=True)))
        rows[-1].update(image_path=name, case=f"c{i}", malignancy=i % 2)
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    return folder / "table.csv"


def extract(scripts, table: Path, out: Path, *extra: str) -> int:
    return scripts["extract_features"].main([
        "--table", str(table), "--random-init", "--backbone", BACKBONE, "--patch-size", "16",
        "--accelerator", "cpu", "--seed", "3", "--batch-size", "2", "--precision", "fp32",
        "--threads", "1", "--out", str(out), *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def unsharded(scripts, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "train.parquet"
    assert extract(scripts, table, out, "--csv", str(out.with_suffix(".csv"))) == 0
    return out


@pytest.mark.parametrize("n_shards", [2, 4])  # 4 shards of 3 images: the last one is empty
def test_gathered_shards_are_the_unsharded_table(scripts, table, unsharded, tmp_path, n_shards):
    shards = [tmp_path / "shards" / f"{i}-of-{n_shards}.parquet" for i in range(1, n_shards + 1)]
    for i, shard in enumerate(shards, start=1):
        assert extract(scripts, table, shard, "--shard", f"{i}-of-{n_shards}") == 0
    owners = {}
    for i, shard in enumerate(shards):
        for row in read_feature_shard(shard)[0]:
            assert owners.setdefault(IMAGES[row], i) == i, "an image read by two shards"
    assert len(read_feature_shard(shards[-1])[0]) == (0 if n_shards == 4 else 3)
    out = tmp_path / "gathered" / "train.parquet"
    argv = ["--table", str(table), "--shards", *map(str, shards[::-1]), "--out", str(out)]
    assert scripts["gather_features"].main([*argv, "--csv", str(out.with_suffix(".csv"))]) == 0
    assert out.read_bytes() == unsharded.read_bytes()
    assert out.with_suffix(".csv").read_bytes() == unsharded.with_suffix(".csv").read_bytes()
    assert pq.read_schema(out).equals(pq.read_schema(unsharded), check_metadata=True)
    gathered, whole = read_features(out), read_features(unsharded)
    pd.testing.assert_frame_equal(gathered[0], whole[0])
    np.testing.assert_array_equal(gathered[1], whole[1])
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.csv", "train.parquet"]


@pytest.fixture
def two_shards(scripts, table, tmp_path) -> list[Path]:
    shards = [tmp_path / f"{i}-of-2.parquet" for i in (1, 2)]
    for i, shard in enumerate(shards, start=1):
        assert extract(scripts, table, shard, "--shard", f"{i}-of-2") == 0
    return shards


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_shard", r"rows in no shard: \[1, 3, 4\]"),
        ("twice", r"rows in more than one shard: \[0, 2, 5\]"),
        ("other_table", r"not the shards of a table of 7 rows; rows in no shard: \[6\]"),
        ("absent", r"absent\.parquet: feature table does not exist"),
    ],
)
def test_bad_shards_fail_and_write_nothing(
    scripts, table, two_shards, tmp_path, capsys, case, message
):
    shards = {
        "missing_shard": two_shards[:1],
        "twice": [*two_shards, two_shards[0]],
        "other_table": two_shards,
        "absent": [*two_shards, tmp_path / "absent.parquet"],
    }[case]
    if case == "other_table":
        longer = pd.read_csv(table)
        longer = pd.concat([longer, longer.iloc[:1]])
        longer["image_path"] = [str(table.parent / p) for p in longer["image_path"]]
        table = tmp_path / "longer.csv"
        longer.to_csv(table, index=False)
    out = tmp_path / "out" / "train.parquet"
    argv = ["--table", str(table), "--shards", *map(str, shards), "--out", str(out)]
    assert scripts["gather_features"].main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "nothing was written" in err
    assert not out.parent.exists()


@pytest.mark.parametrize("extra", [["--shard", "3-of-2"], ["--shard", "0-of-2"], ["--shard", "2"],
                                   ["--shard", "1-of-2", "--csv", "x.csv"]])  # fmt: skip
def test_bad_shard_options_are_usage_errors(scripts, table, tmp_path, extra):
    with pytest.raises(SystemExit) as exit_:
        extract(scripts, table, tmp_path / "s.parquet", *extra)
    assert exit_.value.code == 2
    assert not list(tmp_path.iterdir())
