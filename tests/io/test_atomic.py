"""Atomic outputs: write errors as one OutputError naming the output, no temporary file left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmcib_core.io import OutputError, atomic_path, write_outputs
from fmcib_core.io.features import write_features

REMEDY = "free disk space or choose another output folder"
NO_SPACE = "No space left on device"


def full_disk(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, NO_SPACE)


def cannot_write(path: Path, cause: str = NO_SPACE) -> str:
    return f"{path}: cannot write ({cause}); {REMEDY}"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_disk_in_the_block_names_the_output_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.json"
    with pytest.raises(OutputError) as info, atomic_path(out) as tmp:
        tmp.write_text("partial")
        full_disk()
    assert str(info.value) == cannot_write(out)
    assert info.value.path == out and info.value.cause == NO_SPACE
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert names(out.parent) == []


def test_a_failed_rename_names_the_output_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "val.parquet"
    out.write_text("old")
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError) as info, atomic_path(out) as tmp:
        tmp.write_text("new")
    assert str(info.value) == cannot_write(out)
    assert names(tmp_path) == ["val.parquet"] and out.read_text() == "old"


def test_torch_zip_writer_failure_is_an_output_error(tmp_path: Path) -> None:
    out = tmp_path / "w.torch"
    failure = (
        "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
        "data/0: file write failed"
    )
    with pytest.raises(OutputError) as info, atomic_path(out) as tmp:
        tmp.write_bytes(b"PK partial")
        raise RuntimeError(failure)
    cause = "PytorchStreamWriter failed writing file data/0: file write failed"
    assert str(info.value) == cannot_write(out, cause)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert names(tmp_path) == []


def test_other_errors_of_the_block_pass_through_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "o.txt"
    with pytest.raises(RuntimeError, match="^a bug$"), atomic_path(out) as tmp:
        tmp.write_text("x")
        raise RuntimeError("a bug")
    with pytest.raises(ValueError, match="^bad value$"), atomic_path(out) as tmp:
        tmp.write_text("x")
        raise ValueError("bad value")
    # An OSError about another file (an input the block reads) is not a write error.
    with pytest.raises(FileNotFoundError) as info, atomic_path(out) as tmp:
        tmp.write_text("x")
        (tmp_path / "input.csv").read_text()
    assert not isinstance(info.value, OutputError)
    assert names(tmp_path) == []


def test_an_unusable_output_folder_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    out = tmp_path / "taken" / "report.json"
    with pytest.raises(OutputError) as info, atomic_path(out) as tmp:
        tmp.write_text("x")
    assert str(info.value) == cannot_write(out, f"File exists: {tmp_path / 'taken'}")
    assert names(tmp_path) == ["taken"]


def test_a_nested_atomic_writer_is_reported_under_the_outer_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "f.parquet"
    monkeypatch.setattr(os, "replace", full_disk)  # write_features' own rename fails
    with pytest.raises(OutputError) as info, atomic_path(out) as tmp:
        write_features(tmp, pd.DataFrame({"case": ["a"]}), np.zeros((1, 2)))
    assert str(info.value) == cannot_write(out)
    assert names(tmp_path) == []


def test_success_removes_stale_temporary_files_of_that_output_only(tmp_path: Path) -> None:
    stale = [".val.tmp-k1ll3d_0.parquet", "..val.tmp-abc.tmp-def.parquet"]
    for name in stale:
        (tmp_path / name).write_text("complete, but the rename was killed")
    (tmp_path / ".val.tmp-folder1.parquet").mkdir()  # a folder output's temp
    (tmp_path / ".val.tmp-folder1.parquet" / "part").write_text("x")
    kept = [
        ".val.tmp-abc.csv",  # val.csv's
        ".val2.tmp-abc.parquet",  # val2.parquet's
        ".val.tmp-abc.x.parquet",  # val.x.parquet's
        ".val.parquet",
        "val.tmp-abc.parquet",
    ]
    for name in kept:
        (tmp_path / name).write_text("not ours")
    with atomic_path(tmp_path / "val.parquet") as tmp:
        tmp.write_text("new")
    assert names(tmp_path) == sorted([*kept, "val.parquet"])
    assert (tmp_path / "val.parquet").read_text() == "new"


def test_a_failed_write_keeps_stale_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".val.tmp-k1ll3d_0.parquet").write_text("stale")
    with pytest.raises(OutputError), atomic_path(tmp_path / "val.parquet") as tmp:
        tmp.write_text("x")
        full_disk()
    assert names(tmp_path) == [".val.tmp-k1ll3d_0.parquet"]


def test_stale_temporary_folders_of_a_folder_output_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".cache.tmp-abcdefgh").mkdir()
    (tmp_path / ".cache.tmp-abcdefgh" / "table.csv").write_text("x")
    with atomic_path(tmp_path / "cache") as tmp:
        tmp.mkdir()
        (tmp / "table.csv").write_text("y")
    assert names(tmp_path) == ["cache"]


def write_three(folder: Path) -> dict[Path, object]:
    return {
        folder / "report.json": lambda tmp: tmp.write_text("{}"),
        folder / "pred.parquet": lambda tmp: pd.DataFrame({"p": [0.5]}).to_parquet(tmp),
        folder / "model.npz": lambda tmp: np.savez(tmp, coef=np.zeros(2)),
    }


def test_write_outputs_writes_all(tmp_path: Path) -> None:
    write_outputs(write_three(tmp_path))
    assert names(tmp_path) == ["model.npz", "pred.parquet", "report.json"]


def test_write_outputs_names_the_output_that_failed_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parquet_on_a_full_disk(self: pd.DataFrame, path: Path, *_: object, **__: object) -> None:
        Path(path).write_bytes(b"PAR1 partial")
        full_disk()

    monkeypatch.setattr(pd.DataFrame, "to_parquet", parquet_on_a_full_disk)
    with pytest.raises(OutputError) as info:
        write_outputs(write_three(tmp_path))
    assert str(info.value) == cannot_write(tmp_path / "pred.parquet")
    assert names(tmp_path) == []


def test_write_outputs_removes_what_it_renamed_when_a_later_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replace = os.replace

    def fail_for_the_report(src: str, dst: str) -> None:
        if Path(dst).name == "report.json":
            full_disk()
        replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_for_the_report)
    with pytest.raises(OutputError) as info:
        write_outputs(write_three(tmp_path))  # renamed in reverse order: the report last
    assert str(info.value) == cannot_write(tmp_path / "report.json")
    assert names(tmp_path) == []
