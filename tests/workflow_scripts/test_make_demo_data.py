"""workflow_scripts/make_demo_data.py, run in-process through ``main``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def script(load_script):
    """The script as a module."""
    return load_script("make_demo_data")


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writes_the_whole_data_set_into_a_new_folder(script, tmp_path) -> None:
    out = tmp_path / "demo"
    assert script.main(["--out", str(out), "--n-cases", "3", "--seed", "5"]) == 0
    assert _siblings(tmp_path) == ["demo"]  # no temporary folder left beside it
    tables = sorted(p.name for p in out.glob("*.csv"))
    assert len(tables) == 10 and "pretrain.csv" in tables
    assert len(list((out / "images").glob("case_*.nii.gz"))) == 3
    table = pd.read_csv(out / "task1_train.csv")
    assert all((out / p).is_file() for p in table["image_path"])


def test_an_existing_empty_folder_is_filled(script, tmp_path) -> None:
    (tmp_path / "demo").mkdir()
    assert script.main(["--out", str(tmp_path / "demo"), "--n-cases", "3"]) == 0
    assert (tmp_path / "demo" / "task3_test.csv").is_file()


def test_an_invalid_scale_is_refused_and_nothing_is_written(script, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--out", str(tmp_path / "demo"), "--scale", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    assert _siblings(tmp_path) == []


def test_too_few_cases_fail_with_a_message_and_leave_nothing(script, tmp_path, capsys) -> None:
    assert script.main(["--out", str(tmp_path / "demo"), "--n-cases", "2"]) == 1
    assert "n_cases must be at least 3" in capsys.readouterr().err
    assert _siblings(tmp_path) == []


def test_a_failing_run_leaves_no_partial_folder(script, tmp_path, monkeypatch) -> None:
    def fail_halfway(out_dir, **kwargs):
        (Path(out_dir) / "images").mkdir(parents=True)
        (Path(out_dir) / "images" / "case_000.nii.gz").write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(script, "make_demo_dataset", fail_halfway)
    with pytest.raises(RuntimeError, match="killed"):
        script.main(["--out", str(tmp_path / "demo"), "--n-cases", "3"])
    assert _siblings(tmp_path) == []


def test_an_existing_folder_is_left_alone(script, tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert script.main(["--out", str(out), "--n-cases", "3"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert _siblings(out) == ["keep.txt"]
