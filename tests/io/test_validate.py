"""Lesion-table validation: every kind of bad input gives its own message line."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import fmcib_core.io.validate as validate_module
from fmcib_core.io import TableError, ValidationReport, validate_table
from fmcib_core.io.images import ImageReadError
from fmcib_core.io.validate import check_nifti_complete


def write_table(folder: Path, rows: list[dict], name: str = "lesions.csv") -> Path:
    path = folder / name
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def row(image: str, seed, **extra) -> dict:
    return {"image_path": image, "coordX": seed[0], "coordY": seed[1], "coordZ": seed[2], **extra}


def problems(path: Path, labels=()) -> list[str]:
    """The lines of the TableError that validating ``path`` raises."""
    with pytest.raises(TableError) as info:
        validate_table(path, labels)
    return str(info.value).splitlines()


@pytest.fixture
def seed(make_volume, centre):
    return centre(make_volume())


def test_valid_table_gives_a_report(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    volume_file("sub/b.nrrd")
    rows = [row("a.nii.gz", seed, malignancy=1), row("sub/b.nrrd", seed, malignancy=0)]
    rows.append(row(str(tmp_path / "a.nii.gz"), seed, malignancy=1))
    path = write_table(tmp_path, rows)
    report = validate_table(path, ["malignancy"])
    assert report == ValidationReport(
        table=str(path),
        n_rows=3,
        n_images=2,
        labels=["malignancy"],
        label_counts={"malignancy": {"0": 1, "1": 2}},
        warnings=[],
    )
    assert json.loads(json.dumps(report.to_dict()))["n_images"] == 2


def test_parquet_table_and_progress_bar(tmp_path, volume_file, seed, capsys):
    volume_file("a.mha")
    path = write_table(tmp_path, [row("a.mha", seed)], name="lesions.parquet")
    assert validate_table(path, progress=True).n_rows == 1
    assert "images" in capsys.readouterr().err


def test_each_image_is_read_once(tmp_path, volume_file, seed, monkeypatch):
    volume_file("a.nii.gz")
    volume_file("b.nii.gz")
    calls = []

    def counting_read(p):
        calls.append(Path(p).name)
        return sitk.ReadImage(str(p))

    monkeypatch.setattr(validate_module, "read_image", counting_read)
    rows = [row(name, seed) for name in ("a.nii.gz", "b.nii.gz", "a.nii.gz", "a.nii.gz")]
    validate_table(write_table(tmp_path, rows))
    assert sorted(calls) == ["a.nii.gz", "b.nii.gz"]


def test_dicom_series_folder_is_an_image(tmp_path, make_volume, write_dicom_series, centre):
    image = make_volume(size=(6, 6, 4))
    write_dicom_series(tmp_path / "dicom", image, "1.2.826.0.1.3680043.2.1125.7")
    report = validate_table(write_table(tmp_path, [row("dicom", centre(image))]))
    assert report.n_images == 1


def test_dicom_folder_with_two_series(tmp_path, make_volume, write_dicom_series, centre):
    image = make_volume(size=(4, 4, 3))
    write_dicom_series(tmp_path / "mixed", image, "1.2.826.0.1.3680043.2.1125.1")
    write_dicom_series(tmp_path / "mixed", image, "1.2.826.0.1.3680043.2.1125.2")
    path = write_table(tmp_path, [row("mixed", centre(image))])
    (line,) = problems(path)
    assert line.startswith(f"{path}: row 1: column 'image_path': {tmp_path / 'mixed'}: folder ")
    assert "holds 2 DICOM series" in line and line.endswith("move each series into its own folder")


@pytest.mark.parametrize("missing", ["image_path", "coordY"])
def test_missing_required_column(tmp_path, seed, missing):
    rows = [row("a.nii.gz", seed)]
    path = write_table(tmp_path, [{k: v for k, v in rows[0].items() if k != missing}])
    assert f"{path}: column '{missing}': required column is missing; add it" in problems(path)


def test_empty_table(tmp_path):
    path = tmp_path / "lesions.csv"
    path.write_text("image_path,coordX,coordY,coordZ\n")
    assert problems(path) == [f"{path}: table has no rows; add at least one lesion"]


def test_bad_coordinates(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    rows = [row("a.nii.gz", seed), row("a.nii.gz", ("abc", seed[1], seed[2]))]
    rows.append(row("a.nii.gz", (seed[0], seed[1], None)))
    path = write_table(tmp_path, rows)
    rule = "write the seed point in world millimetres (LPS)"
    assert problems(path) == [
        f"{path}: row 2: column 'coordX': value 'abc' is not a finite number; {rule}",
        f"{path}: row 3: column 'coordZ': is empty; {rule}",
    ]


def test_missing_image_names_the_resolved_path(tmp_path, seed):
    path = write_table(tmp_path, [row("nowhere/ct.nii.gz", seed)])
    assert problems(path) == [
        f"{path}: row 1: column 'image_path': image '{tmp_path / 'nowhere/ct.nii.gz'}' does not "
        "exist; check image_path (relative paths are relative to the table's folder)"
    ]


def test_empty_image_path(tmp_path, seed):
    path = write_table(tmp_path, [row(None, seed)])
    assert problems(path) == [
        f"{path}: row 1: column 'image_path': is empty; give the image file or DICOM folder"
    ]


def truncate_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])


def truncate_nii(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def write_noise(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(500))


@pytest.mark.parametrize(
    ("name", "damage", "expected"),
    [
        ("ct.nii.gz", truncate_gzip, "image is corrupt (Compressed file ended"),
        ("ct.nii", truncate_nii, "image is truncated (8252 of 8352 bytes); re-export the file"),
        ("ct.nrrd", write_noise, "image cannot be read ("),
    ],
)
def test_corrupt_image(tmp_path, volume_file, seed, name, damage, expected):
    damage(volume_file(name))
    path = write_table(tmp_path, [row(name, seed)])
    (line,) = problems(path)
    assert line.startswith(f"{path}: row 1: column 'image_path': {tmp_path / name}: {expected}")
    assert line.endswith("; re-export the file")


def test_check_nifti_complete_passes_whole_files(volume_file):
    check_nifti_complete(volume_file("ct.nii.gz"))
    check_nifti_complete(volume_file("ct.nii"))
    check_nifti_complete(volume_file("ct.nrrd"))


def test_check_nifti_complete_catches_a_broken_checksum(volume_file):
    path = volume_file("ct.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    data = bytearray(gzip.compress(raw))
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="image is corrupt .*CRC check failed"):
        check_nifti_complete(path)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (sitk.Image([20, 20], sitk.sitkInt16), "is 2D (size [20, 20]); give a 3D CT volume"),
        (sitk.Image([4, 4, 4, 2], sitk.sitkInt16), "is 4D (size [4, 4, 4, 2]); give a 3D"),
        (
            sitk.Image([4, 4, 4], sitk.sitkVectorInt16, 3),
            "has 3 components per voxel; give a single-component (grey-value) CT volume",
        ),
    ],
)
def test_image_must_be_3d_single_component(tmp_path, volume_file, image, expected):
    volume_file("ct.nii.gz", image)
    path = write_table(tmp_path, [row("ct.nii.gz", (1.0, 1.0, 1.0))])
    (line,) = problems(path)
    assert line.startswith(f"{path}: row 1: column 'image_path': image '{tmp_path / 'ct.nii.gz'}' ")
    assert expected in line


def test_seed_outside_the_volume(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    path = write_table(tmp_path, [row("a.nii.gz", (seed[0], seed[1], 500.0))])
    (line,) = problems(path)
    assert line.startswith(
        f"{path}: row 1: column 'coordZ': seed ({seed[0]:g}, {seed[1]:g}, 500) mm lies outside "
        "the image (continuous index [9.5, 9.5, 160.0], size [20, 20, 10], world extent "
        "x -50.4..-34.4, y 29.6..45.6, z 98.8..123.8 mm)"
    )
    assert line.endswith("; give the seed in world millimetres (LPS)")


def test_seed_in_ras_is_recognised(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    x, y, z = seed
    path = write_table(tmp_path, [row("a.nii.gz", (-x, -y, z))])
    assert problems(path) == [
        f"{path}: row 1: column 'coordX': seed ({-x:g}, {-y:g}, {z:g}) mm lies outside the image "
        f"but ({x:g}, {y:g}, {z:g}) lies inside: this looks like RAS coordinates; "
        "negate coordX and coordY to convert to LPS"
    ]


@pytest.mark.parametrize(
    ("index", "inside"),
    [
        ((-0.49, 0, 0), True),
        ((-0.51, 0, 0), False),
        ((0, 19.49, 0), True),
        ((0, 19.51, 0), False),
        ((0, 0, 9.49), True),
        ((0, 0, -0.51), False),
    ],
)
def test_inside_means_within_half_a_voxel_of_the_border(
    tmp_path, volume_file, make_volume, index, inside
):
    # A flipped direction (as a RAS-stored NIfTI reads) checks that world LPS is what counts.
    image = make_volume(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    volume_file("a.nii.gz", image)
    point = image.TransformContinuousIndexToPhysicalPoint(index)
    path = write_table(tmp_path, [row("a.nii.gz", point)])
    if inside:
        assert validate_table(path).n_rows == 1
    else:
        (line,) = problems(path)
        assert "lies outside the image" in line


LABEL_CASES = [
    (
        "Coarse_lesion_type",
        8,
        "value 8 is out of range; Coarse_lesion_type must be an integer "
        "0..7 (DeepLesion's coarse lesion type minus one)",
    ),
    ("Coarse_lesion_type", 2.5, "value 2.5 is out of range; Coarse_lesion_type must be"),
    ("malignancy", 2, "value 2 is out of range; malignancy must be 0 or 1"),
    ("malignancy", -1, "value -1 is out of range; malignancy must be 0 or 1"),
    ("malignancy", None, "is empty; malignancy must be 0 or 1 (fill it in or remove the row)"),
    ("survival", "yes", "value 'yes' is not a finite number; survival must be 0 or 1 (alive at"),
]


@pytest.mark.parametrize(("label", "value", "expected"), LABEL_CASES)
def test_bad_label_value(tmp_path, volume_file, seed, label, value, expected):
    volume_file("a.nii.gz")
    rows = [row("a.nii.gz", seed, **{label: 1}), row("a.nii.gz", seed, **{label: value})]
    path = write_table(tmp_path, rows)
    (line,) = problems(path, [label])
    assert line.startswith(f"{path}: row 2: column '{label}': {expected}")
    assert validate_table(path).n_rows == 2  # labels that are not requested are not checked


def test_missing_label_column(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    path = write_table(tmp_path, [row("a.nii.gz", seed)])
    assert problems(path, ["malignancy"]) == [
        f"{path}: column 'malignancy': label column is missing; add it or do not request "
        "'malignancy'"
    ]


def test_survival_time_and_event_are_checked_with_survival(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    rows = [
        row("a.nii.gz", seed, survival=1, survival_time=700.0, event=0),
        row("a.nii.gz", seed, survival=0, survival_time=-3.0, event=2),
    ]
    path = write_table(tmp_path, rows)
    assert problems(path, ["survival"]) == [
        f"{path}: row 2: column 'survival_time': value -3 is out of range; survival_time must "
        "be a number of days >= 0",
        f"{path}: row 2: column 'event': value 2 is out of range; event must be 0 or 1",
    ]
    assert validate_table(path).n_rows == 2


def test_unknown_label_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown label"):
        validate_table(tmp_path / "lesions.csv", ["size"])


def test_duplicate_rows_are_a_warning(tmp_path, volume_file, seed, caplog):
    volume_file("a.nii.gz")
    rows = [row("a.nii.gz", seed, id=1), row("a.nii.gz", seed, id=2), row("a.nii.gz", seed, id=1)]
    path = write_table(tmp_path, rows)
    with caplog.at_level(logging.WARNING):
        report = validate_table(path)
    expected = f"{path}: row 3: duplicates row 1; remove one of them unless intended"
    assert report.warnings == [expected]
    assert expected in caplog.messages


def test_all_problems_are_reported_together_in_row_order(tmp_path, volume_file, seed):
    volume_file("a.nii.gz")
    rows = [
        row("a.nii.gz", seed, malignancy=1),
        row("missing.nii.gz", seed, malignancy=5),
        row("a.nii.gz", (seed[0], seed[1], -900.0), malignancy=None),
    ]
    path = write_table(tmp_path, rows)
    lines = problems(path, ["malignancy"])
    where = [line.split(": ")[1:3] for line in lines]
    assert where == [
        ["row 2", "column 'malignancy'"],
        ["row 2", "column 'image_path'"],
        ["row 3", "column 'malignancy'"],
        ["row 3", "column 'coordZ'"],
    ]


def test_numeric_image_path_is_checked_as_a_path(tmp_path, seed):
    path = write_table(tmp_path, [row(123, seed)])
    (line,) = problems(path)
    assert f"column 'image_path': image '{tmp_path / '123'}' does not exist" in line
