"""workflow_scripts/report.py, run in-process through ``main`` on small fake results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from fmcib_core.tasks import TASKS

CONFIG = {"patch_size": 16, "tasks": [1, 2], "note": "a<b & c"}


@pytest.fixture
def main(load_script):
    """The script's ``main``."""
    return load_script("report").main


def _metric(value, low, high, n=40):
    return {"value": value, "ci_low": low, "ci_high": high, "n_rows": n}


def _predictions(task, seed, n=40):
    rng = np.random.default_rng(seed)
    label = TASKS[task].label_column
    if TASKS[task].multiclass:
        y = np.arange(n) % 3
        logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return pd.DataFrame({label: y} | {f"prob_{k}": proba[:, k] for k in range(3)})
    y = np.arange(n) % 2
    return pd.DataFrame({label: y, "prob": np.clip(0.4 * y + rng.uniform(0, 0.6, n), 0, 1)})


@pytest.fixture
def results(tmp_path):
    """Linear evaluations of Tasks 1-2, two Task 2 fine-tunes, an SSL log and a lesion table."""
    linear, finetune = [], []
    for task, source, metrics in [
        (1, "foundation", {"mean_average_precision": _metric(0.71, 0.6, 0.8)}),
        (2, "foundation", {"roc_auc": _metric(0.8123, 0.751, 0.868)}),
        (2, "random-init", {"roc_auc": _metric(0.55, 0.4, 0.7)}),
    ]:
        folder = tmp_path / f"task{task}"
        folder.mkdir(exist_ok=True)
        stem = "linear_eval" if source == "foundation" else f"linear_eval_{source}"
        body = {"task": task, "feature_source": source, "n_rows": {"test": 40}}
        (folder / f"{stem}.json").write_text(json.dumps(body | {"test_metrics": metrics}))
        _predictions(task, len(linear)).to_parquet(folder / f"{stem}_predictions.parquet")
        linear.append(str(folder / f"{stem}.json"))
    for init in ("random", "foundation"):
        folder = tmp_path / "task2" / f"finetune_{init}"
        folder.mkdir()
        body = {"task": 2, "label": "malignancy", "init": init, "best_epoch": 3}
        metrics = {
            "roc_auc": _metric(0.9, 0.85, 0.95),
            "average_precision": _metric(0.88, 0.8, 0.9),
        }
        (folder / "metrics.json").write_text(json.dumps(body | {"test_metrics": metrics}))
        _predictions(2, 10 + len(finetune)).to_parquet(folder / "predictions.parquet")
        finetune.append(str(folder / "metrics.json"))
    steps = np.arange(20)
    ssl = pd.DataFrame({"step": steps, "epoch": steps // 10, "loss": 5.0 - 0.1 * steps, "lr": 0.1})
    ssl.loc[::5, "loss"] = np.nan  # lr-only rows
    ssl.to_csv(tmp_path / "ssl_log.csv", index=False)
    image = sitk.GetImageFromArray(np.full((30, 60, 60), -800, np.int16))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    centre = image.TransformContinuousIndexToPhysicalPoint((30.0, 30.0, 15.0))
    lesions = pd.DataFrame([centre] * 2, columns=["coordX", "coordY", "coordZ"])
    lesions.insert(0, "image_path", "ct.nii.gz")
    lesions.assign(Coarse_lesion_type=[3, 5]).to_csv(tmp_path / "lesions.csv", index=False)
    return {"linear": linear, "finetune": finetune, "dir": tmp_path}


def _args(results, out, *, ssl=True, finetune=None):
    base = results["dir"]
    args = ["--linear-eval", *results["linear"], "--finetune", *(finetune or results["finetune"])]
    args += ["--ssl-log", str(base / "ssl_log.csv")] if ssl else []
    return args + [
        "--preview-table",
        str(base / "lesions.csv"),
        "--patch-size",
        "16",
        "--config-json",
        json.dumps(CONFIG),
        "--out",
        str(out),
    ]


def test_report_shows_every_section(main, results, tmp_path, capsys):
    out = tmp_path / "report" / "report.html"
    assert main(_args(results, out)) == 0
    page = out.read_text()
    assert "<td>2 (malignancy)</td><td>Linear, foundation-model features</td>" in page
    assert "<td>0.812 (0.75\u20130.87)</td>" in page
    # Columns: mAP (Task 1 only), ROC-AUC, AP, n test (from the metrics' n_rows), selection.
    finetune_row = ["Fine-tuned, foundation init", "\u2014", "0.900 (0.85\u20130.95)"]
    finetune_row += ["0.880 (0.80\u20130.90)", "40", "best epoch 3"]
    assert "".join(f"<td>{c}</td>" for c in finetune_row) in page
    # ROC task 1, ROC task 2, SSL curves, patch previews.
    assert page.count('<img src="data:image/png;base64,') == 4
    assert page.count("<figcaption>") == 4
    assert "one-vs-rest macro average" in page
    assert "note: a&lt;b &amp; c" in page and "a<b" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    assert f"wrote {out}" in capsys.readouterr().err


def test_missing_sections_get_a_sentence(main, results, tmp_path):
    out = tmp_path / "report.html"
    args = _args(results, out, ssl=False)
    args[args.index("--finetune") + 1 : args.index("--preview-table")] = []  # no fine-tunes
    assert main(args) == 0
    page = out.read_text()
    assert "No SSL training log was given" in page
    assert "Fine-tuned" not in page.split("<h2>ROC curves</h2>")[0]
    assert page.count("<img ") == 3


def test_malformed_json_fails_without_output(main, results, tmp_path, capsys):
    bad = Path(results["finetune"][0])
    bad.write_text('{"task": 2, "test_metrics": {')
    out = tmp_path / "report.html"
    assert main(_args(results, out)) == 1
    err = capsys.readouterr().err
    assert f"{bad}: cannot read the finetune results as JSON" in err and " ERROR " in err
    assert not out.exists()
    assert not list(tmp_path.glob(".report.tmp-*"))


def test_invalid_config_json_fails(main, results, tmp_path, capsys):
    out = tmp_path / "report.html"
    args = _args(results, out)
    args[args.index("--config-json") + 1] = "{not json"
    assert main(args) == 1
    assert "--config-json is not valid JSON" in capsys.readouterr().err
    assert not out.exists()
