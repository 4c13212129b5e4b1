"""fmcib_core.report: metric formatting, ROC curves, input checks, figures and the page."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from sklearn.metrics import auc, roc_auc_score

from fmcib_core.data.patches import normalise_hu
from fmcib_core.report import (
    Evaluation,
    ReportError,
    format_metric,
    load_data_efficiency,
    load_evaluation,
    load_ssl_log,
    patch_figure,
    preview_patches,
    render_report,
    roc_curve_of,
)
from fmcib_core.report.parts import SSL_FIGURE, report_parts, write_report_parts
from tests.workflow_scripts import import_script

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"value": 0.8123, "ci_low": 0.751, "ci_high": 0.868}, "0.812 (0.75\u20130.87)"),
        ({"value": 0.5, "ci_low": None, "ci_high": None}, "0.500"),
        ({"value": 0.5}, "0.500"),
        ({"value": None, "ci_low": 0.1, "ci_high": 0.2}, "\u2014"),
        ({"value": True}, "\u2014"),
        (None, "\u2014"),
        ("0.8", "\u2014"),
    ],
)
def test_format_metric(result, expected):
    assert format_metric(result) == expected


def _binary_predictions(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    return pd.DataFrame({"malignancy": y, "prob": prob})


def _multiclass_predictions(n=90, k=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"Coarse_lesion_type": y})
    return table.assign(**{f"prob_{c}": proba[:, c] for c in range(k)}), y, proba


def test_binary_roc_matches_sklearn_and_skips_incomplete_rows():
    table = _binary_predictions()
    table.loc[0, "prob"] = np.nan
    table.loc[1, "malignancy"] = np.nan
    curve = roc_curve_of(table, "malignancy")
    kept = table.dropna()
    assert curve.n_rows == len(kept) == 58 and curve.n_classes == 1
    assert curve.auc == pytest.approx(roc_auc_score(kept["malignancy"], kept["prob"]))
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)


def test_multiclass_roc_is_the_macro_one_vs_rest_average():
    table, y, proba = _multiclass_predictions()
    curve = roc_curve_of(table, "Coarse_lesion_type")
    assert curve.n_classes == 4 and curve.n_rows == 90
    assert curve.auc == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= -1e-12)
    assert auc(curve.fpr, curve.tpr) == pytest.approx(curve.auc)  # the drawn curve's own area
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0, 0, 1, 1)


def test_multiclass_roc_skips_classes_absent_from_the_test_rows():
    table, y, proba = _multiclass_predictions()
    table = table.assign(prob_7=0.0)  # a class seen in train only
    assert roc_curve_of(table, "Coarse_lesion_type").n_classes == 4


def test_roc_of_a_single_class_is_undefined():
    table = _binary_predictions().assign(malignancy=1.0)
    assert roc_curve_of(table, "malignancy") is None


def _write_linear(folder: Path, stem="linear_eval", predictions=True, **summary) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    body = {"task": 2, "label": "malignancy", "test_metrics": {}} | summary
    path.write_text(json.dumps(body))
    if predictions:
        _binary_predictions().to_parquet(folder / f"{stem}_predictions.parquet")
    return path


def test_load_linear_evaluation_reads_the_predictions_beside_it(tmp_path):
    path = _write_linear(tmp_path, feature_source="published")
    evaluation = load_evaluation(path, "linear")
    assert (evaluation.task, evaluation.source, evaluation.label) == (2, "published", "malignancy")
    assert evaluation.name == "Linear, published-model features"
    assert len(evaluation.predictions) == 60


def test_a_patient_level_evaluation_is_its_own_row_after_the_lesion_level_ones(tmp_path):
    groups = {"column": "case_id", "aggregate": "mean", "test": {"lesions": 60, "groups": 9}}
    lesion = load_evaluation(_write_linear(tmp_path, feature_source="foundation"), "linear")
    patient = load_evaluation(
        _write_linear(tmp_path, "linear_eval_patient", feature_source="foundation", groups=groups),
        "linear",
    )
    control = load_evaluation(
        _write_linear(tmp_path, "linear_eval_random-init", feature_source="random-init"), "linear"
    )
    assert patient.name == "Linear, foundation-model features, patient level (mean over case_id)"
    assert lesion.groups is None and patient.groups == groups
    assert sorted([patient, control, lesion], key=lambda e: e.order) == [lesion, control, patient]
    page = render_report(
        [patient, lesion], ssl_log=None, previews=None, patch_size=16, config={}, created=CREATED
    )
    assert "<td>9 groups (60 lesions)</td>" in page


def test_load_evaluation_infers_the_source_from_the_file_names(tmp_path):
    linear = _write_linear(tmp_path, stem="linear_eval_random-init", predictions=False)
    assert load_evaluation(linear, "linear").source == "random-init"
    assert load_evaluation(linear, "linear").predictions is None
    folder = tmp_path / "finetune_supervised"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"task": 3}))
    finetune = load_evaluation(folder / "metrics.json", "finetune")
    assert (finetune.source, finetune.label, finetune.predictions) == (
        "supervised",
        "survival",
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"task": 2,', "cannot read the linear results as JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"label": "malignancy"}', "'task' must be one of [1, 2, 3], got None"),
        ('{"task": 4}', "'task' must be one of [1, 2, 3], got 4"),
        ('{"task": 2, "test_metrics": [0.8]}', "'test_metrics' must be an object"),
    ],
)
def test_malformed_result_files_are_rejected(tmp_path, text, expected):
    path = tmp_path / "linear_eval.json"
    path.write_text(text)
    with pytest.raises(ReportError, match=re.escape(expected)) as info:
        load_evaluation(path, "linear")
    assert str(info.value).startswith(str(path))


def test_predictions_without_probabilities_are_rejected(tmp_path):
    path = _write_linear(tmp_path, predictions=False)
    pd.DataFrame({"malignancy": [0, 1]}).to_parquet(tmp_path / "linear_eval_predictions.parquet")
    with pytest.raises(ReportError, match="'prob' or 'prob_<class>'"):
        load_evaluation(path, "linear")


def test_ssl_log_checks(tmp_path):
    path = tmp_path / "ssl_log.csv"
    path.write_text("step,epoch,loss,lr\n0,0,,0.1\n1,0,5.0,0.2\n")
    assert load_ssl_log(path)["loss"].isna().sum() == 1
    path.write_text("step,loss\n0,1.0\n")
    with pytest.raises(ReportError, match=r"lacks column\(s\) \['lr'\]"):
        load_ssl_log(path)
    path.write_text("step,loss,lr\n0,high,0.1\n")
    with pytest.raises(ReportError, match="non-numeric"):
        load_ssl_log(path)


@pytest.fixture
def lesion_table(tmp_path):
    """A 60x60x30 (x, y, z) 1 mm volume, -1000 HU with a 200 HU cube at its centre, 3 lesions."""
    hu = np.full((30, 60, 60), -1000, np.int16)
    hu[10:20, 25:35, 25:35] = 200
    image = sitk.GetImageFromArray(hu)
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    centre = image.TransformContinuousIndexToPhysicalPoint((30.0, 30.0, 15.0))
    rows = pd.DataFrame([centre] * 3, columns=["coordX", "coordY", "coordZ"])
    rows.insert(0, "image_path", "ct.nii.gz")
    path = tmp_path / "lesions.csv"
    rows.assign(malignancy=[0, 1, np.nan]).to_csv(path, index=False)
    return path


def test_preview_patches_takes_the_first_lesions_with_their_labels(lesion_table):
    patches, titles = preview_patches(lesion_table, size=16, n=2)
    assert patches.shape == (2, 1, 16, 16, 16)
    assert patches[0, 0, 8, 8, 8] == pytest.approx(normalise_hu(200.0))
    assert titles == ["row 0\nmalignancy 0", "row 1\nmalignancy 1"]


def test_patch_figure_has_three_views_per_lesion():
    patches = np.zeros((3, 1, 8, 8, 8), np.float32)
    fig = patch_figure(patches, ["a", "b", "c"])
    assert len(fig.axes) == 9
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["axial", "coronal", "sagittal"]


def _evaluation(kind, source, task, metrics, predictions=None, **extra):
    label = {1: "Coarse_lesion_type", 2: "malignancy"}[task]
    summary = {"task": task, "test_metrics": metrics, **extra}
    return Evaluation(
        Path(f"{kind}-{source}.json"), kind, source, task, label, summary, predictions
    )


def test_render_report_orders_rows_escapes_and_explains_missing_sections():
    auc = {"roc_auc": {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95}}
    evaluations = [
        _evaluation("finetune", "foundation", 2, auc, _binary_predictions(), best_epoch=7),
        _evaluation(
            "linear",
            "foundation",
            2,
            auc,
            _binary_predictions(seed=1),
            n_rows={"test": 60},
            model_selection={
                "best_C": 0.0123,
                "score": 0.71,
                "method": "validation",
                "metric": "roc_auc",
            },
        ),
        _evaluation("linear", "random-init", 1, {"balanced_accuracy": {"value": 0.4}}),
    ]
    page = render_report(
        evaluations,
        ssl_log=None,
        previews=None,
        patch_size=16,
        config={"note": "<b>&"},
        created=CREATED,
    )
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", page)
    assert rows == [
        ("1 (Coarse_lesion_type)", "Linear, random-init features (control)"),
        ("2 (malignancy)", "Linear, foundation-model features"),
        ("2 (malignancy)", "Fine-tuned, foundation init"),
    ]
    assert "<td>0.900 (0.80\u20130.95)</td><td>60</td>" in page
    assert "C = 0.0123 (validation roc_auc 0.710)" in page and "best epoch 7" in page
    assert page.count("<img ") == 1  # task 2's ROC; task 1 has no predictions
    assert "Task 1: no test predictions" in page
    assert "No SSL training log was given" in page and "No lesion table was given" in page
    assert "note: <b>&" not in page and "note: &lt;b&gt;&amp;" in page
    assert "2024-05-01T12:00:00+00:00" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing external


def test_a_custom_task_loads_and_renders_a_row_and_a_roc_figure(tmp_path):
    path = _write_linear(tmp_path / "malignancy_b", task="malignancy_b", label="malignancy")
    evaluation = load_evaluation(path, "linear")
    assert (evaluation.task, evaluation.label, evaluation.multiclass) == (
        "malignancy_b",
        "malignancy",
        False,
    )
    paper = _evaluation("linear", "foundation", 2, {}, _binary_predictions(seed=2))
    page = render_report(
        [evaluation, paper], ssl_log=None, previews=None, patch_size=16, config={}, created=CREATED
    )
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", page)
    assert rows == [
        ("2 (malignancy)", "Linear, foundation-model features"),  # paper tasks first
        ("malignancy_b (malignancy)", "Linear, foundation-model features"),
    ]
    assert page.count("<img ") == 2 and 'alt="ROC curves, task malignancy_b"' in page
    assert "malignancy_b (malignancy): ROC curves on the test set" in page
    assert "one-vs-rest macro average" not in page


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"task": "malignancy_b"}, "the custom task 'malignancy_b' needs 'label'"),
        ({"task": "bad name", "label": "malignancy"}, "custom task name 'bad name'"),
        ({"task": "", "label": "malignancy"}, "custom task name ''"),
        ({"task": True}, "'task' must be one of [1, 2, 3], got True"),
    ],
)
def test_bad_custom_tasks_are_rejected_naming_the_file(tmp_path, body, expected):
    path = tmp_path / "linear_eval.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ReportError, match=re.escape(expected)) as info:
        load_evaluation(path, "linear")
    assert str(info.value).startswith(str(path))


def _write_data_efficiency(path: Path, **changes) -> Path:
    rows = [
        {"fraction": f, "source": s, "n_train": int(200 * f), "metric": "roc_auc",
         "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "best_C": 1.0}
        for f, s, v in ((0.1, "foundation", 0.7), (0.1, "random-init", 0.6),
                        (1.0, "foundation", 0.8), (1.0, "random-init", 0.65))
    ]  # fmt: skip
    body = {"task": 2, "label": "malignancy", "metric": "roc_auc", "results": rows} | changes
    path.write_text(json.dumps(body))
    return path


def test_data_efficiency_loads_and_draws_one_figure_per_task(tmp_path):
    study = load_data_efficiency(_write_data_efficiency(tmp_path / "data_efficiency.json"))
    assert (study.task, study.label, study.metric) == (2, "malignancy", "roc_auc")
    assert study.results["fraction"].tolist() == [0.1, 0.1, 1.0, 1.0]
    page = render_report([], ssl_log=None, previews=None, patch_size=16, config={},
                         created=CREATED, data_efficiency=[study])  # fmt: skip
    assert page.count("<img ") == 1 and 'alt="Data efficiency, task 2"' in page
    assert "nested, stratified fractions" in page and str(study.path) in page
    empty = render_report([], ssl_log=None, previews=None, patch_size=16, config={},
                          created=CREATED)  # fmt: skip
    assert "No data-efficiency results were given" in empty


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"metric": None, "results": []}, "non-empty list"),
        ({"results": [{"fraction": 1}]}, "rows with"),
    ],
)
def test_malformed_data_efficiency_is_rejected(tmp_path, changes, expected):
    path = _write_data_efficiency(tmp_path / "d.json", **changes)
    with pytest.raises(ReportError, match=expected):
        load_data_efficiency(path)
    path.write_text("{")
    with pytest.raises(ReportError, match="cannot read"):
        load_data_efficiency(path)


# The page's parts as separate files, for `snakemake --report` (fmcib_core.report.parts).


def _page_images(page):
    found = re.findall(r'src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    return {alt: base64.b64decode(data) for data, alt in found}


def test_report_parts_are_the_pages_own_table_and_figures(tmp_path):
    custom = load_evaluation(
        _write_linear(tmp_path / "malignancy_b", task="malignancy_b", label="malignancy"), "linear"
    )
    table, _, _ = _multiclass_predictions()
    evaluations = [
        custom,
        _evaluation("linear", "foundation", 2, {"roc_auc": {"value": 0.7}}, _binary_predictions()),
        _evaluation("finetune", "random", 1, {}, table),
    ]
    ssl = pd.DataFrame({"step": [0, 1, 2], "loss": [np.nan, 5.0, 4.0], "lr": [0.1, 0.2, 0.3]})
    page = render_report(
        evaluations, ssl_log=ssl, previews=None, patch_size=16, config={}, created=CREATED
    )
    parts = report_parts(page)
    images = _page_images(page)
    assert parts.roc == {
        "task1.png": images["ROC curves, task 1"],
        "task2.png": images["ROC curves, task 2"],
        "malignancy_b.png": images["ROC curves, task malignancy_b"],
    }
    assert parts.ssl == {SSL_FIGURE: images["SSL loss and learning rate"]}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in parts.roc.values())
    assert parts.ssl_note == ""
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", parts.comparison)
    assert rows == re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", page) and len(rows) == 3
    assert parts.comparison.startswith("<!DOCTYPE html>") and "<style>" in parts.comparison
    assert "95% percentile bootstrap" in parts.comparison and "<img" not in parts.comparison
    assert not re.search(r"""(src|href)=["'](?!data:)""", parts.comparison)

    written = write_report_parts(
        parts,
        comparison=tmp_path / "out" / "comparison.html",
        roc_dir=tmp_path / "out" / "roc",
        ssl_dir=tmp_path / "out" / "ssl",
    )
    assert [p.name for p in written] == ["comparison.html", "roc", "ssl"]
    assert sorted(p.name for p in (tmp_path / "out" / "roc").iterdir()) == [
        "malignancy_b.png",
        "task1.png",
        "task2.png",
    ]
    assert (tmp_path / "out" / "ssl" / SSL_FIGURE).read_bytes() == parts.ssl[SSL_FIGURE]
    assert (tmp_path / "out" / "comparison.html").read_text() == parts.comparison
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["comparison.html", "roc", "ssl"]


def test_without_ssl_log_or_predictions_the_folders_say_why(tmp_path):
    evaluations = [_evaluation("linear", "random-init", 1, {"balanced_accuracy": {"value": 0.4}})]
    page = render_report(
        evaluations, ssl_log=None, previews=None, patch_size=16, config={}, created=CREATED
    )
    parts = report_parts(page)
    assert parts.roc == {} and parts.ssl == {}
    assert parts.ssl_note.startswith("No SSL training log was given")
    ssl_dir, roc_dir = tmp_path / "ssl", tmp_path / "roc"
    ssl_dir.mkdir()
    (ssl_dir / "old.png").write_bytes(b"stale")  # a folder is replaced as a whole
    write_report_parts(parts, roc_dir=roc_dir, ssl_dir=ssl_dir)
    assert [p.name for p in ssl_dir.iterdir()] == ["README.txt"]
    assert "pretrained_weights" in (ssl_dir / "README.txt").read_text()
    assert [p.name for p in roc_dir.iterdir()] == ["README.txt"]
    assert not list(tmp_path.glob(".*tmp-*"))


def test_report_parts_need_the_results_section():
    with pytest.raises(ReportError, match="no 'Results' section"):
        report_parts("<html><body><p>not a report</p></body></html>")


def test_the_report_script_writes_the_parts_beside_the_page(tmp_path):
    linear = _write_linear(tmp_path / "task2", test_metrics={"roc_auc": {"value": 0.6}})
    out = tmp_path / "report"
    argv = ["--linear-eval", str(linear), "--patch-size", "16", "--config-json", "{}"]
    argv += ["--out", str(out / "report.html"), "--comparison", str(out / "comparison.html")]
    argv += ["--roc-dir", str(out / "roc"), "--ssl-dir", str(out / "ssl")]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert import_script("report").main(argv) == 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    page = (out / "report.html").read_text()
    assert (out / "roc" / "task2.png").read_bytes() == _page_images(page)["ROC curves, task 2"]
    assert [p.name for p in (out / "ssl").iterdir()] == ["README.txt"]
    assert "<td>0.600</td>" in (out / "comparison.html").read_text()


def test_stability_section_shows_a_figure_per_task(tmp_path) -> None:
    import json

    from fmcib_core.report.stability import stability_section

    source = {
        "metrics": {"roc_auc": {"unperturbed": 0.7, "perturbed": {}, "values": [0.6, 0.65, 0.7]}},
        "icc": {"histogram": {"edges": [0, 0.5, 1], "counts": [3, 5]},
                "share": {"above_0.75": 0.25, "above_0.9": 0.125}},
    }  # fmt: skip
    data = {
        "task": 2, "n_lesions": 12, "perturbations": {"copies": 3, "sigma_mm": 4.0,
        "distribution": "normal", "seed": 0}, "seeds_outside_scan": {"count": 1, "of": 36,
        "handling": "clamped"}, "sources": {"foundation": source, "random-init": source},
    }  # fmt: skip
    path = tmp_path / "stability.json"
    path.write_text(json.dumps(data))
    html = stability_section([path])
    assert html.count("<img") == 1 and "Task 2" in html and "foundation 25% / 12%" in html
    assert "Seeds outside the scan: 1 of 36" in html
    assert "not run" in stability_section([])
