"""DeepLesion: PNG slices + DL_info.csv -> NIfTI volumes and the pretraining and Task 1 tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from fmcib_core.io import validate_table
from fmcib_core.prepare.deeplesion import recist_seed
from tests.prepare import fixtures
from tests.prepare.checks import assert_seeds_in_lesions
from tests.prepare.fixtures import DeepLesionCase as Case

CASES = [
    Case(patient=1, split=1, kind=-1),
    Case(patient=2, split=1, kind=-1, crossing=False, centre_xy=(20.6, 40.2)),
    Case(patient=3, split=2, kind=3, key=5, slices=(2, 9)),
    Case(patient=4, split=2, kind=8, spacing=(0.8, 0.8, 1.0)),
    Case(patient=5, split=3, kind=1),
    Case(patient=6, split=3, kind=2),
    Case(patient=7, split=3, kind=5),
    Case(patient=8, split=3, kind=6),
    Case(patient=9, split=1, kind=-1, spacing=(0.7, 0.7, 6.0)),  # skipped: spacing
    Case(patient=10, split=2, kind=-1),  # skipped: no label in a labelled split
]


@pytest.fixture
def main(load_script):
    return load_script("prepare_deeplesion").main


@pytest.fixture
def dataset(tmp_path):
    return fixtures.write_deeplesion(tmp_path / "DeepLesion", CASES)


def _run(main, dataset, out, *extra) -> int:
    images = dataset.parent / "Images_png"
    return main(["--dl-info", str(dataset), "--images", str(images), "--out", str(out), *extra])


def test_recist_crossing_and_fallback():
    point, crossed = recist_seed(np.array([0, 0, 4, 4, 0, 4, 4, 0.0]), np.array([0, 0, 4, 4.0]))
    assert crossed and point == pytest.approx((2, 2))
    point, crossed = recist_seed(np.array([0, 0, 1, 1, 3, 4, 4, 3.0]), np.array([0, 0, 6, 8.0]))
    assert not crossed and point == pytest.approx((3, 4))


def test_tables_volumes_and_seeds(tmp_path, dataset, main):
    out = tmp_path / "prepared"
    assert _run(main, dataset, out) == 0
    tables = {n: pd.read_csv(out / f"{n}.csv") for n in ("pretrain", "task1_train", "task1_val",
                                                          "task1_test")}  # fmt: skip
    assert len(tables["pretrain"]) == 2 and len(tables["task1_train"]) == 2
    assert len(tables["task1_val"]) == 2 and len(tables["task1_test"]) == 2
    assert tables["pretrain"]["Coarse_lesion_type"].isna().all()
    by_name = {c.file_name: c for c in CASES}
    for name, table in tables.items():
        labels = [] if name == "pretrain" else ["Coarse_lesion_type"]
        assert_seeds_in_lesions(out / f"{name}.csv", fixtures.LESION_HU, fixtures.BACKGROUND_HU,
                                labels)  # fmt: skip
        assert list(table.columns[:4]) == ["image_path", "coordX", "coordY", "coordZ"]
        assert set(fixtures.DL_COLUMNS) <= set(table.columns)
        for row in table.itertuples():
            case = by_name[row.File_name]
            seed = np.array([row.coordX, row.coordY, row.coordZ])
            if case.crossing:
                assert np.abs(seed - case.expected_world()).max() < 1e-3
            image = sitk.ReadImage(str(out / row.image_path))
            assert image.GetSpacing() == pytest.approx(case.spacing)
            assert image.GetSize() == (64, 64, case.slices[1] - case.slices[0] + 1)
            index = image.TransformPhysicalPointToIndex(seed.tolist())
            assert index[2] == case.key - case.slices[0]
            if case.crossing:
                assert index[:2] == tuple(round(v) for v in case.centre_xy)
            if name != "pretrain":
                assert row.Coarse_lesion_type == case.kind - 1
    val_patients = set(tables["task1_val"]["Patient_index"])
    assert not val_patients & set(tables["task1_test"]["Patient_index"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"]["slice spacing above 5 mm"]["items"] == [CASES[8].file_name]
    reason = "no coarse lesion type in a labelled split (Train_Val_Test 2 or 3)"
    assert summary["skipped"][reason]["items"] == [CASES[9].file_name]
    assert summary["seeds_from_bounding_box"] == {"count": 1, "items": [CASES[1].file_name]}
    assert summary["tables"] == {"pretrain": 2, "task1_train": 2, "task1_val": 2, "task1_test": 2}
    again = tmp_path / "again"
    assert _run(main, dataset, again) == 0
    assert (again / "task1_val.csv").read_text() == (out / "task1_val.csv").read_text()


def test_spacing_limit_is_configurable(tmp_path, dataset, main):
    out = tmp_path / "prepared"
    assert _run(main, dataset, out, "--max-slice-spacing-mm", "1.5") == 0
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert len(skipped["slice spacing above 1.5 mm"]["items"]) == 9
    validate_table(out / "task1_train.csv", ["Coarse_lesion_type"])


def test_missing_columns_and_slices_write_nothing(tmp_path, dataset, main, capsys):
    out = tmp_path / "prepared"
    (dataset.parent / "Images_png" / CASES[0].folder / "003.png").unlink()
    (dataset.parent / "Images_png" / CASES[4].folder / "011.png").unlink()
    assert _run(main, dataset, out) == 1
    err = capsys.readouterr().err
    assert f"{CASES[0].folder}: slice(s) 003.png are missing" in err
    assert f"{CASES[4].folder}: slice(s) 011.png are missing" in err
    assert not out.exists()
    info = pd.read_csv(dataset).drop(columns=["Spacing_mm_px_", "Slice_range"])
    info.to_csv(dataset, index=False)
    assert _run(main, dataset, out) == 1
    err = capsys.readouterr().err
    assert "column 'Spacing_mm_px_' is missing" in err and "column 'Slice_range' is missing" in err
    assert not out.exists()


def test_malformed_field_is_reported_with_its_row(tmp_path, dataset, main, capsys):
    info = pd.read_csv(dataset)
    info.loc[2, "Measurement_coordinates"] = "1, 2, 3"
    info.to_csv(dataset, index=False)
    assert _run(main, dataset, tmp_path / "prepared") == 1
    assert (
        "row 3: column 'Measurement_coordinates': value '1, 2, 3' is not 8"
        in capsys.readouterr().err
    )
