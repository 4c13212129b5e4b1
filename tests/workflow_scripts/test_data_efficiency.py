"""workflow_scripts/data_efficiency.py, run in-process through main([...])."""

from __future__ import annotations

import json

import pytest

from tests.workflow_scripts import import_script
from tests.workflow_scripts.test_linear_eval import feature_table


@pytest.fixture(scope="module")
def script():
    return import_script("data_efficiency")


@pytest.fixture
def sources(tmp_path):
    """Two sources of the same rows: one whose features carry the label, one of noise."""
    out = {}
    for name, width in (("foundation", 5), ("random-init", 5)):
        folder = tmp_path / name
        folder.mkdir()
        out[name] = {
            split: feature_table(folder / f"{split}.parquet", n, seed, width=width)
            for split, n, seed in (("train", 80, 0), ("val", 40, 1), ("test", 60, 2))
        }
    return out


def argv(sources, out, *, splits=("train", "val", "test"), extra=()):
    names = list(sources)
    args = ["--task", "2", "--sources", *names]
    for split in splits:
        args += [f"--{split}", *(str(sources[n][split]) for n in names)]
    return [*args, "--trials", "2", "--bootstrap", "20", "--out-json", str(out), *extra]


def test_writes_every_fraction_and_source_with_cis(script, sources, tmp_path):
    out = tmp_path / "data_efficiency.json"
    assert script.main(argv(sources, out, extra=["--fractions", "0.5", "0.25"])) == 0
    report = json.loads(out.read_text())
    assert report["task"] == 2 and report["metric"] == "roc_auc"
    assert report["fractions"] == [0.25, 0.5] and report["sources"] == list(sources)
    assert report["selection"] == "validation"
    rows = report["results"]
    assert [(r["fraction"], r["source"], r["n_train"]) for r in rows] == [
        (0.25, "foundation", 20), (0.25, "random-init", 20),
        (0.5, "foundation", 40), (0.5, "random-init", 40),
    ]  # fmt: skip
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)


def test_without_val_it_chooses_c_by_cv(script, sources, tmp_path):
    out = tmp_path / "de.json"
    assert script.main(argv(sources, out, splits=("train", "test"))) == 0  # schema's fractions
    report = json.loads(out.read_text())
    assert report["selection"] == "cv" and report["fractions"] == [0.1, 0.25, 0.5, 1.0]


def test_a_table_count_that_does_not_match_the_sources_is_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--task", "2", "--sources", "a", "b", "--train", "x", "y", "--test", "z",
                     "--out-json", "de.json"])  # fmt: skip
    assert "--test: 1 table(s) for 2 source(s)" in capsys.readouterr().err


def test_bad_input_exits_1_and_writes_nothing(script, sources, tmp_path, capsys):
    sources["random-init"]["train"] = sources["foundation"]["val"]  # other rows and labels
    out = tmp_path / "de.json"
    assert script.main(argv(sources, out)) == 1
    assert "training labels differ" in capsys.readouterr().err
    assert not out.exists()
