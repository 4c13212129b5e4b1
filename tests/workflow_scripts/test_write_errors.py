"""A full disk while a script writes its outputs: one ERROR line that names the output and the
cause, exit status 1, and no output, partial output or temporary file left behind.

The full disk is simulated: the writer writes part of its file and raises ``ENOSPC``, or the final
rename does. pretrain.py and export_weights.py are tested in ``test_pretrain.py`` (they share its
pretraining run).
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from tests.workflow_scripts import import_script
from tests.workflow_scripts import test_extract_features as extract_tests
from tests.workflow_scripts.test_linear_eval import feature_table, run

NO_SPACE = "No space left on device"
data = extract_tests.data  # the fixture: two small volumes, 4 lesions and a weights file


def cannot_write(path: Path, cause: str = NO_SPACE) -> str:
    """The one line a write error of ``path`` is reported as."""
    return f"{path}: cannot write ({cause}); free disk space or choose another output folder"


def error_lines(err: str) -> list[str]:
    """The messages of the ERROR lines of a script's log."""
    return [line.split(" ERROR ", 1)[1] for line in err.splitlines() if " ERROR " in line]


def raise_full_disk() -> None:
    raise OSError(errno.ENOSPC, NO_SPACE)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``full_disk(owner, name)``: the method or function ``owner.name`` writes a few bytes to the
    path it is given (a temporary file) and fails with ENOSPC. ``full_disk(rename=output)``: the
    rename onto ``output`` fails with ENOSPC."""

    def install(owner: object = None, name: str = "", *, rename: Path | None = None) -> None:
        if rename is not None:
            replace = os.replace

            def failing_replace(src: str, dst: str) -> None:
                if Path(dst) == rename:
                    raise_full_disk()
                replace(src, dst)

            monkeypatch.setattr(os, "replace", failing_replace)
            return
        real = getattr(owner, name)

        def failing_writer(*args: object, **kwargs: object) -> object:
            paths = [a for a in args if isinstance(a, (str, os.PathLike))]
            temps = [Path(a) for a in paths if ".tmp-" in Path(a).name]
            handles = [a for a in args if isinstance(a, io.IOBase)]  # a file opened on a temp
            if not temps and not handles:
                return real(*args, **kwargs)
            if temps:
                temps[0].write_bytes(b"partial")
            else:
                handles[0].write(b"partial")
            raise_full_disk()

        monkeypatch.setattr(owner, name, failing_writer)

    return install


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# validate_table.py --report


@pytest.fixture
def lesions(tmp_path: Path) -> Path:
    """A valid one-lesion table beside its CT volume."""
    image = sitk.GetImageFromArray(np.zeros((10, 20, 20), np.int16))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    x, y, z = image.TransformContinuousIndexToPhysicalPoint((9.5, 9.5, 4.5))
    path = tmp_path / "lesions.csv"
    path.write_text(f"image_path,coordX,coordY,coordZ\nct.nii.gz,{x},{y},{z}\n")
    return path


@pytest.mark.parametrize("where", ["write", "rename"])
def test_validate_table_report_on_a_full_disk(load_script, lesions, full_disk, capsys, where):
    main = load_script("validate_table").main
    out = lesions.parent / "reports" / "lesions.json"
    if where == "write":
        full_disk(pathlib.Path, "write_text")
    else:
        full_disk(rename=out)
    assert main([str(lesions), "--report", str(out)]) == 1
    assert error_lines(capsys.readouterr().err) == [f"validate_table: {cannot_write(out)}"]
    assert leftovers(out.parent) == []


# extract_features.py --out [--csv]


@pytest.fixture(scope="module")
def extract() -> Callable[[list[str]], int]:
    return import_script("extract_features").main


@pytest.mark.parametrize(
    ("where", "failing"),
    [("write", "parquet"), ("write", "csv"), ("rename", "parquet"), ("rename", "csv")],
)
def test_extract_features_on_a_full_disk(
    extract,
    data,
    tmp_path,
    full_disk,
    capsys,
    where,
    failing,  # noqa: F811 (fixture)
):
    out, csv = tmp_path / "f" / "train.parquet", tmp_path / "f" / "train.csv"
    target = out if failing == "parquet" else csv
    if where == "write":
        full_disk(pd.DataFrame, "to_parquet" if failing == "parquet" else "to_csv")
    else:
        full_disk(rename=target)
    assert extract(extract_tests.argv(data, out, extra=("--csv", str(csv)))) == 1
    assert error_lines(capsys.readouterr().err) == [f"extract_features: {cannot_write(target)}"]
    assert leftovers(out.parent) == []  # neither output, no temporary file


# linear_eval.py --out-json --out-predictions --out-model


@pytest.fixture(scope="module")
def linear_eval() -> object:
    return import_script("linear_eval")


@pytest.fixture
def splits(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": feature_table(tmp_path / "train.parquet", 40, 0),
        "test": feature_table(tmp_path / "test.parquet", 20, 2),
    }


@pytest.mark.parametrize(
    ("where", "failing"),
    [("write", "pred.parquet"), ("write", "model.npz"), ("rename", "report.json")],
)
def test_linear_eval_on_a_full_disk(
    linear_eval, splits, tmp_path, full_disk, capsys, where, failing
):
    out = tmp_path / "out"
    if where == "rename":
        full_disk(rename=out / failing)
    elif failing == "pred.parquet":
        full_disk(pd.DataFrame, "to_parquet")
    else:
        full_disk(np, "savez")
    assert run(linear_eval, out, **splits, extra=("--cv-folds", "2")) == 1
    assert error_lines(capsys.readouterr().err) == [f"linear_eval: {cannot_write(out / failing)}"]
    assert leftovers(out) == []  # none of the three outputs, no temporary file


def test_a_successful_run_removes_the_temporary_files_of_a_killed_one(extract, data, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    stale = [
        ".train.tmp-k1ll3d00.parquet",
        ".train.tmp-k1ll3d01.csv",
        "..train.tmp-a.tmp-b.parquet",
    ]
    for name in stale:  # complete files whose rename was killed
        (folder / name).write_bytes(b"PAR1 complete")
    (folder / ".test.tmp-k1ll3d02.parquet").write_bytes(b"another output's")
    out, csv = folder / "train.parquet", folder / "train.csv"
    assert extract(extract_tests.argv(data, out, extra=("--csv", str(csv)))) == 0
    assert leftovers(folder) == [".test.tmp-k1ll3d02.parquet", "train.csv", "train.parquet"]
