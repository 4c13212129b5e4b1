"""workflow_scripts/handcrafted_features.py, run in-process through main([...])."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmcib_core.data.patches import extract_patches
from fmcib_core.eval.handcrafted import DESCRIPTOR_NAMES, PATCH_SIZE, lesion_descriptors
from fmcib_core.io.features import read_features
from tests.train import write_lesion_table
from tests.workflow_scripts import import_script


@pytest.fixture(scope="module")
def script():
    return import_script("handcrafted_features")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_lesion_table(tmp_path_factory.mktemp("images"), n_images=2, lesions_per_image=3)


def test_writes_the_descriptor_of_every_lesion_beside_its_columns(script, table, tmp_path):
    out, csv = tmp_path / "f.parquet", tmp_path / "f.csv"
    assert script.main(["--table", str(table), "--out", str(out), "--csv", str(csv)]) == 0
    written, features, names = read_features(out)
    assert names == [f"pred_{i}" for i in range(len(DESCRIPTOR_NAMES))]
    source = pd.read_csv(table)
    pd.testing.assert_frame_equal(written, source, check_dtype=False)
    expected = lesion_descriptors(extract_patches(table, PATCH_SIZE))  # the 50^3 patches
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    np.testing.assert_allclose(read_features(csv)[1], features, rtol=1e-5)


def test_bad_table_exits_1_and_writes_nothing(script, table, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.read_csv(table).assign(image_path="nowhere.nii.gz").to_csv(bad, index=False)
    out = tmp_path / "f.parquet"
    assert script.main(["--table", str(bad), "--out", str(out)]) == 1
    assert "nothing was written" in capsys.readouterr().err
    assert not out.exists()
