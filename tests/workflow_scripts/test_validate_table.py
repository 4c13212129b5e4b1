"""workflow_scripts/validate_table.py, run in-process through ``main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from tests.workflow_scripts import SCRIPTS


@pytest.fixture
def main(load_script):
    """The script's ``main``."""
    return load_script("validate_table").main


@pytest.fixture
def table(tmp_path):
    """Factory: a CT volume ``ct.nii.gz`` and a table with one lesion per given seed."""
    image = sitk.GetImageFromArray(np.zeros((10, 20, 20), np.int16))
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-50.0, 30.0, 100.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    centre = image.TransformContinuousIndexToPhysicalPoint((9.5, 9.5, 4.5))

    def write(seeds=(centre,), **labels) -> Path:
        rows = pd.DataFrame(seeds, columns=["coordX", "coordY", "coordZ"])
        rows.insert(0, "image_path", "ct.nii.gz")
        path = tmp_path / "lesions.csv"
        rows.assign(**labels).to_csv(path, index=False)
        return path

    write.centre = centre
    return write


def test_valid_table_writes_the_report(main, table, tmp_path, capsys):
    path = table(malignancy=[1])
    out = tmp_path / "reports" / "lesions.json"
    assert main([str(path), "--labels", "malignancy", "--report", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_rows"] == 1 and report["n_images"] == 1
    assert report["label_counts"] == {"malignancy": {"1": 1}}
    assert "1 rows, 1 images" in capsys.readouterr().err
    assert [p.name for p in out.parent.iterdir()] == ["lesions.json"]


def test_report_is_optional(main, table):
    assert main([str(table())]) == 0


def _no_coord_z(table, tmp_path):
    table().write_text("image_path,coordX,coordY\nct.nii.gz,1,2\n")


def _no_rows(table, tmp_path):
    table().write_text("image_path,coordX,coordY,coordZ\n")


def _seed_outside(table, tmp_path):
    x, y, _ = table.centre
    table([(x, y, 900.0)])


def _seed_in_ras(table, tmp_path):
    x, y, z = table.centre
    table([(-x, -y, z)])


def _bad_label(table, tmp_path):
    table(malignancy=[2])


def _no_label(table, tmp_path):
    table()


def _missing_image(table, tmp_path):
    table()
    (tmp_path / "ct.nii.gz").unlink()


def _repeated_column(table, tmp_path):
    x, y, z = table.centre
    table().write_text(f"image_path,coordX,coordY,coordZ,coordX\nct.nii.gz,{x},{y},{z},0\n")


def _table_is_a_folder(table, tmp_path):
    (tmp_path / "lesions.csv").mkdir()


BAD_INPUTS = [
    (_no_coord_z, [], "column 'coordZ': required column is missing; add it"),
    (_no_rows, [], "table has no rows; add at least one lesion"),
    (_seed_outside, [], "column 'coordZ': seed"),
    (_seed_in_ras, [], "this looks like RAS coordinates; negate coordX and coordY"),
    (_bad_label, ["--labels", "malignancy"], "value 2 is out of range"),
    (_no_label, ["--labels", "survival"], "label column is missing"),
    (_missing_image, [], "ct.nii.gz' does not exist; check image_path"),
    (_repeated_column, [], "column 'coordX' appears 2 times; give every column a unique name"),
    (_table_is_a_folder, [], "is a folder, not a table file; give the path of a .csv or .parquet"),
]


@pytest.mark.parametrize(("make", "extra", "expected"), BAD_INPUTS)
def test_bad_input_fails_and_leaves_no_report(main, table, tmp_path, capsys, make, extra, expected):
    make(table, tmp_path)
    path = tmp_path / "lesions.csv"
    out = tmp_path / "lesions.json"
    out.write_text("{}")  # a stale report from an earlier run
    assert main([str(path), *extra, "--report", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if expected in line]
    assert lines and all(" ERROR " in line and f"{path}: " in line for line in lines)
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"ct.nii.gz", "lesions.csv"}


def test_missing_table_fails(main, tmp_path, capsys):
    assert main([str(tmp_path / "nope.csv")]) == 1
    assert "table does not exist" in capsys.readouterr().err


def test_unknown_label_is_a_usage_error(main, table):
    with pytest.raises(SystemExit) as info:
        main([str(table()), "--labels", "size"])
    assert info.value.code == 2


def test_runs_as_a_script(table, tmp_path):
    out = tmp_path / "report.json"
    command = [
        sys.executable,
        str(SCRIPTS / "validate_table.py"),
        str(table()),
        "--report",
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, encoding="utf-8", errors="replace", timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["n_rows"] == 1
