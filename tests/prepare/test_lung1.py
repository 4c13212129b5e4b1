"""LUNG1: DICOM CT + RTSTRUCT in any folder layout + clinical CSV -> Task 3's tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmcib_core.io import validate_table
from tests.prepare import fixtures
from tests.prepare.checks import assert_seeds_in_lesions, rasterised_independently, world_centroid

SHAPE = (10, 24, 26)
SPACING = (0.9, 0.8, 2.0)
# patient -> (survival days, event); LUNG1-004 is censored before 730 days.
CLINICAL = {
    "LUNG1-001": (1200, 1),
    "LUNG1-002": (300, 1),
    "LUNG1-003": (800, 0),
    "LUNG1-004": (400, 0),
    "LUNG1-005": (100, 1),
    "LUNG1-006": (2000, 1),
    "LUNG1-007": (500, 1),
    "LUNG1-008": (900, 1),
}


@pytest.fixture
def main(load_script):
    return load_script("prepare_lung1").main


def _patient(root: Path, number: int, layout: str, roi_name: str = "GTV-1"):
    patient = f"LUNG1-{number:03d}"
    origin = (-10.0 * number, 5.0 * number, -100.0 + number)
    centre = tuple(origin[i] + SPACING[i] * (c + 0.2 * number) for i, c in enumerate((12, 11, 4)))
    hu = fixtures.lesion_volume(SHAPE, SPACING, origin, centre, 5.0)
    if layout == "flat":  # CT and RTSTRUCT side by side, names that say nothing
        ct_dir = rt_dir = root / f"dump{number}"
    else:  # TCIA-like, but the folder names lie: the "seg" folder holds the CT
        ct_dir, rt_dir = root / patient / "study" / "seg", root / patient / "study" / "ct"
    series = fixtures.write_ct_series(ct_dir, hu, SPACING, origin, patient_id=patient)
    gtv = fixtures.circle_contours(series, centre, 5.0)
    body = fixtures.circle_contours(series, centre, 9.0)
    fixtures.write_rtstruct(rt_dir / "1-1.dcm", series, {"Body": body, roi_name: gtv})
    return patient, series, gtv


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "NSCLC-Radiomics"
    patients = {}
    for number in range(1, 8):
        layout = "flat" if number == 3 else "tcia"
        patients[f"LUNG1-{number:03d}"] = _patient(root, number, layout)[1:]
    (root / "README.txt").write_text("not DICOM\n")
    clinical = pd.DataFrame(
        [{"PatientID": p, "age": 60, "Survival.time": t, "deadstatus.event": e}
         for p, (t, e) in CLINICAL.items()]
    )  # fmt: skip
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    return root, tmp_path / "clinical.csv", patients


def _args(root, clinical, out, *extra):
    return ["--dicom", str(root), "--clinical", str(clinical), "--out", str(out), *extra]


def test_tables_labels_and_seeds(tmp_path, dataset, main):
    root, clinical, patients = dataset
    out = tmp_path / "prepared"
    assert main(_args(root, clinical, out, "--split", "0.5", "0.25", "0.25")) == 0
    table = pd.read_csv(out / "lung1.csv")
    assert table["PatientID"].tolist() == sorted(patients)
    assert list(table.columns[:11]) == [
        "image_path", "coordX", "coordY", "coordZ", "PatientID", "series_uid", "roi_name",
        "mask_volume_mm3", "survival", "survival_time", "event",
    ]  # fmt: skip
    assert_seeds_in_lesions(out / "lung1.csv", fixtures.LESION_HU, fixtures.BACKGROUND_HU)
    for row in table.itertuples():
        series, gtv = patients[row.PatientID]
        expected = world_centroid(rasterised_independently(gtv, series), series.origin, SPACING)
        assert np.abs(np.array([row.coordX, row.coordY, row.coordZ]) - expected).max() < 1e-3
        days, event = CLINICAL[row.PatientID]
        assert row.survival_time == days and row.event == event and row.roi_name == "GTV-1"
        assert (row.survival == 1) if days > 730 else (row.survival == 0) == bool(event)
        if row.PatientID == "LUNG1-003":  # shares its folder with the RTSTRUCT: written out
            assert row.image_path == "images/LUNG1-003.nii.gz"
        else:
            assert Path(row.image_path) == series.folder.resolve()
    assert pd.isna(table.set_index("PatientID").loc["LUNG1-004", "survival"])
    splits = {s: pd.read_csv(out / f"task3_{s}.csv") for s in ("train", "val", "test")}
    assert sum(len(t) for t in splits.values()) == 6
    for split in splits:
        validate_table(out / f"task3_{split}.csv", ["survival"])
    summary = json.loads((out / "summary.json").read_text())
    skipped = {reason: v["items"] for reason, v in summary["skipped"].items()}
    assert skipped["no CT series under the DICOM folder"] == ["LUNG1-008"]
    assert [v for k, v in skipped.items() if k.startswith("censored")] == [["LUNG1-004"]]
    assert summary["files_ignored"] == 1


def test_missing_roi_is_an_error_unless_skipped(tmp_path, dataset, main, capsys):
    root, clinical, _ = dataset
    _patient(root, 8, "tcia", roi_name="GTV-2")
    out = tmp_path / "prepared"
    assert main(_args(root, clinical, out)) == 1
    err = capsys.readouterr().err
    assert "no ROI matches '^gtv-1$' (ROIs: 'Body', 'GTV-2')" in err and "--skip-missing-roi" in err
    assert not out.exists()
    assert main(_args(root, clinical, out, "--skip-missing-roi")) == 0
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert skipped["no ROI matches '^gtv-1$'"]["items"] == ["LUNG1-008"]
    assert main(_args(root, clinical, tmp_path / "gtv_n", "--roi", r"^gtv-\d$")) == 0
    assert len(pd.read_csv(tmp_path / "gtv_n" / "lung1.csv")) == 8
    capsys.readouterr()
    assert main(_args(root, clinical, tmp_path / "any", "--roi", ".")) == 1
    assert "2 ROIs match '.' ('Body', 'GTV-1'); make --roi stricter" in capsys.readouterr().err
    assert not (tmp_path / "any").exists()


def test_unreadable_dicom_and_bad_clinical_write_nothing(tmp_path, dataset, main, capsys):
    root, clinical, _ = dataset
    (root / "LUNG1-002" / "study" / "seg" / "slice_004.dcm").write_bytes(b"\0" * 64)
    table = pd.read_csv(clinical).drop(columns=["deadstatus.event"])
    table.to_csv(clinical, index=False)
    _patient(root, 8, "tcia", roi_name="GTV-2")
    out = tmp_path / "prepared"
    assert main(_args(root, clinical, out)) == 1
    err = capsys.readouterr().err
    assert "slice_004.dcm: unreadable DICOM" in err
    assert "column 'deadstatus.event' is missing" in err
    assert "no ROI matches '^gtv-1$' (ROIs: 'Body', 'GTV-2')" in err  # reported together
    assert not out.exists()
