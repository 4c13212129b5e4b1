"""Lesion tables: reading, path resolution and the checks that need no image."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fmcib_core.io import LABEL_SPECS, TableError, read_table, resolve_image_paths
from fmcib_core.io.tables import Problem, check_label_names, check_table, find_duplicate_rows

GOOD = {"image_path": ["a.nii.gz"], "coordX": [1.0], "coordY": [2.0], "coordZ": [3.0]}


def frame(**changes) -> pd.DataFrame:
    return pd.DataFrame({**GOOD, **changes})


def test_reads_csv_and_parquet_alike(tmp_path):
    expected = frame(patient=["p1"])
    expected.to_csv(tmp_path / "t.csv", index=False)
    expected.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), expected)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), expected)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "table does not exist; check the path in the config"),
        ("t.xlsx", "x", "unknown table format '.xlsx'; use .csv or .parquet"),
        ("t.csv", "", "table cannot be parsed"),
        ("t.parquet", "not parquet", "table cannot be parsed"),
    ],
)
def test_read_table_errors(tmp_path, name, content, expected):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(TableError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        read_table(tmp_path / name)


def test_relative_paths_resolve_against_the_table_folder(tmp_path):
    table = pd.DataFrame({"image_path": ["a.nii.gz", "sub/b.nrrd", "/abs/c.mha"]})
    resolved = resolve_image_paths(table, tmp_path / "t.csv")
    assert resolved.tolist() == [
        str(tmp_path / "a.nii.gz"),
        str(tmp_path / "sub/b.nrrd"),
        "/abs/c.mha",
    ]


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (Problem("bad; fix", 3, "coordX"), "t.csv: row 3: column 'coordX': bad; fix"),
        (Problem("bad; fix", column="coordX"), "t.csv: column 'coordX': bad; fix"),
        (Problem("bad; fix", row=2), "t.csv: row 2: bad; fix"),
        (Problem("bad; fix"), "t.csv: bad; fix"),
    ],
)
def test_problem_format(problem, expected):
    assert problem.format("t.csv") == expected


def test_label_specs():
    assert LABEL_SPECS["Coarse_lesion_type"].values == tuple(range(8))
    assert LABEL_SPECS["malignancy"].values == (0, 1)
    assert LABEL_SPECS["survival"].values == (0, 1)
    assert LABEL_SPECS["event"].values == (0, 1)
    time = LABEL_SPECS["survival_time"]
    assert time.allows(0.0) and time.allows(1e4) and not time.allows(-0.5)
    assert {time.companion_of, LABEL_SPECS["event"].companion_of} == {"survival"}


def test_check_label_names():
    assert tuple(check_label_names(["malignancy"])) == ("malignancy",)
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Malignancy'\]; use one of"):
        check_label_names(["Malignancy"])


@pytest.mark.parametrize(
    ("table", "labels", "expected"),
    [
        (frame(), (), []),
        (frame(extra=["kept"]), (), []),
        (frame().iloc[:0], (), [(None, None, "table has no rows; add at least one lesion")]),
        (
            frame().drop(columns="coordZ"),
            (),
            [(None, "coordZ", "required column is missing; add it")],
        ),
        (
            frame(coordY=[math.inf]),
            (),
            [(1, "coordY", "value 'inf' is not a finite number; write the seed point")],
        ),
        (frame(image_path=[" "]), (), [(1, "image_path", "is empty; give the image file")]),
        (frame(malignancy=[1.0]), ("malignancy",), []),
        (frame(malignancy=[True]), ("malignancy",), []),
        (frame(malignancy=[7]), (), []),
        (frame(malignancy=[7]), ("malignancy",), [(1, "malignancy", "value 7 is out of range")]),
        (frame(Coarse_lesion_type=[7]), ("Coarse_lesion_type",), []),
        (frame(survival=[1]), ("survival",), []),
        (frame(survival=[1], event=[None]), ("survival",), [(1, "event", "is empty; event")]),
        (frame(survival=[1], survival_time=[0]), ("survival",), []),
    ],
)
def test_check_table(table, labels, expected):
    found = [(p.row, p.column, p.message) for p in check_table(table, labels)]
    assert len(found) == len(expected)
    for (row, column, message), (want_row, want_column, want_start) in zip(
        found, expected, strict=True
    ):
        assert (row, column) == (want_row, want_column)
        assert message.startswith(want_start)
        assert "; " in message


def test_find_duplicate_rows_names_the_first_copy():
    table = pd.DataFrame({"image_path": ["a", "b", "a", "a"], "coordX": [1, 2, 1, float("nan")]})
    found = [(p.row, p.message) for p in find_duplicate_rows(table)]
    assert found == [(3, "duplicates row 1; remove one of them unless intended")]


DUPLICATE = "column 'coordX' appears 2 times; give every column a unique name"


def test_a_repeated_csv_column_is_an_error_naming_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("image_path,coordX,coordY,coordZ,coordX,case,case,case\na,1,2,3,4,x,y,z\n")
    with pytest.raises(TableError) as info:
        read_table(path)
    assert str(info.value).splitlines() == [
        f"{path}: {DUPLICATE}",
        f"{path}: column 'case' appears 3 times; give every column a unique name",
    ]


def test_a_repeated_parquet_column_is_an_error_naming_it(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    columns = [pa.array(["a"]), pa.array([1.0]), pa.array([2.0]), pa.array([3.0]), pa.array([4.0])]
    names = ["image_path", "coordX", "coordY", "coordZ", "coordX"]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(columns, names=names), path)
    with pytest.raises(TableError) as info:
        read_table(path)
    assert str(info.value) == f"{path}: {DUPLICATE}"


def test_pandas_renamed_looking_columns_and_unnamed_columns_are_fine(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\ufeffimage_path,coordX,coordX.1,,coordY,coordZ,\na,1,2,x,3,4,y\n")
    assert read_table(path).columns[:3].tolist() == ["image_path", "coordX", "coordX.1"]


@pytest.mark.parametrize("name", ["lesions.csv", "lesions.parquet", "folder"])
def test_a_folder_is_not_a_table(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(TableError) as info:
        read_table(tmp_path / name)
    assert str(info.value) == (
        f"{tmp_path / name}: is a folder, not a table file; "
        "give the path of a .csv or .parquet file"
    )
