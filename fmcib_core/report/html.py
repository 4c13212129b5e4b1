"""The report page: one self-contained HTML file a reader can open anywhere.

It gathers what the earlier stages wrote (linear-evaluation and fine-tuning results, the SSL
training log, a lesion table) and shows the comparison table in the shape of the paper's (value
and 95% bootstrap CI per metric, docs/method.md section 6), ROC curves per task, the SSL loss and
learning-rate curves, patch previews and the configuration. Nothing on the page is fetched from
elsewhere: the figures are embedded PNGs.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from fmcib_core._version import __version__
from fmcib_core.report.figures import (
    CT_WINDOW,
    data_efficiency_figure,
    patch_figure,
    png_img,
    roc_curve_of,
    roc_figure,
    ssl_figure,
)
from fmcib_core.report.load import (
    DASH,
    SOURCE_NAMES,
    DataEfficiency,
    Evaluation,
    load_data_efficiency,
    load_evaluation,
    load_ssl_log,
    preview_patches,
    task_name,
    task_order,
)
from fmcib_core.report.stability import stability_section

__all__ = ["METRIC_NAMES", "PAPER_NOTE", "build_report", "format_metric", "render_report"]

log = logging.getLogger(__name__)

METRIC_NAMES = {
    "mean_average_precision": "mAP (macro)",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC-AUC",
    "average_precision": "AP",
    "c_index": "C-index",
}
PAPER_NOTE = (
    "For orientation, the paper reports on its real data: Task 1 mAP 0.848 from features, 0.856 "
    "fine-tuned, 0.821 supervised; Task 2 AUC 0.883 from features, 0.944 fine-tuned, 0.817 "
    "supervised; Task 3 (LUNG1) AUC 0.638 from features."
)


def format_metric(result: Mapping[str, Any] | None) -> str:
    """``"0.812 (0.75–0.87)"``: the value and its 95% CI; a dash for anything missing."""
    if not isinstance(result, Mapping) or not _is_number(result.get("value")):
        return DASH
    text = f"{result['value']:.3f}"
    low, high = result.get("ci_low"), result.get("ci_high")
    if _is_number(low) and _is_number(high):
        text += f" ({low:.2f}\u2013{high:.2f})"
    return text


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _figure_block(fig: Figure, alt: str, caption: str) -> str:
    return f"<figure>{png_img(fig, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _selection(evaluation: Evaluation) -> str:
    summary = evaluation.summary
    if evaluation.kind == "finetune":
        epoch = summary.get("best_epoch")
        return f"best epoch {epoch}" if epoch is not None else DASH
    selection = summary.get("model_selection") or {}
    c, score = selection.get("best_C"), selection.get("score")
    if not _is_number(c):
        return DASH
    folds = selection.get("cv_folds") or "k"
    where = f"{folds}-fold CV" if selection.get("method") == "cv" else "validation"
    metric = selection.get("metric", "score")
    return f"C = {c:.3g}" + (f" ({where} {metric} {score:.3f})" if _is_number(score) else "")


def _n_test(evaluation: Evaluation) -> str:
    test = (evaluation.groups or {}).get("test")
    if isinstance(test, Mapping) and _is_number(test.get("groups")):
        return f"{test['groups']} groups ({test.get('lesions', DASH)} lesions)"
    n_rows = evaluation.summary.get("n_rows")
    if isinstance(n_rows, Mapping) and _is_number(n_rows.get("test")):
        return str(n_rows["test"])
    counts = [
        m.get("n_rows")
        for m in evaluation.summary.get("test_metrics", {}).values()
        if isinstance(m, Mapping) and _is_number(m.get("n_rows"))
    ]
    return str(max(counts)) if counts else DASH


def _table(evaluations: Sequence[Evaluation]) -> str:
    names = {n for e in evaluations for n in e.summary.get("test_metrics", {})}
    metrics = [n for n in METRIC_NAMES if n in names] + sorted(names - set(METRIC_NAMES))
    head = ["Task", "Model"] + [METRIC_NAMES.get(n, n) for n in metrics]
    head += ["n test", "Model selection"]
    rows = []
    for e in evaluations:
        cells = [f"{e.task} ({e.label})", e.name]
        cells += [format_metric(e.summary.get("test_metrics", {}).get(n)) for n in metrics]
        cells += [_n_test(e), _selection(e)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return f"<table><thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"


def _roc_section(evaluations: Sequence[Evaluation]) -> str:
    groups: dict[int | str, list[Evaluation]] = {}
    for e in evaluations:
        groups.setdefault(e.task, []).append(e)
    blocks = []
    for task in sorted(groups, key=task_order):
        group = groups[task]
        name, label = task_name(task), group[0].label
        curves, missing = [], []
        for e in group:
            curve = roc_curve_of(e.predictions, e.label) if e.predictions is not None else None
            if curve is None:
                missing.append(e.name)
            else:
                curves.append((e.name, curve))
        if not curves:
            blocks.append(_note(f"{name}: no test predictions with both classes to draw."))
            continue
        macro = any(e.multiclass for e in group)  # prob_<class> columns, else the task's kind
        caption = (
            f"{name} ({label}): ROC curves on the test set, one per model; the "
            "legend gives the area under each curve and the number of test rows scored."
        )
        if macro:
            caption += (
                f" {name} has several classes, so each curve is the one-vs-rest macro average: "
                "the ROC curve of every class against the rest (classes absent from the test set "
                "skipped) is interpolated on a common false-positive-rate grid and the "
                "true-positive rates are averaged; the AUC is the mean of the per-class AUCs."
            )
        if missing:
            caption += f" Not drawn (no predictions, or a single class): {', '.join(missing)}."
        fig = roc_figure(f"{name}: {label}", curves, macro=macro)
        blocks.append(_figure_block(fig, f"ROC curves, task {task}", caption))
    return "".join(blocks) or _note("No evaluation results were given, so there are no curves.")


def _data_efficiency_section(studies: Sequence[DataEfficiency]) -> str:
    if not studies:
        return _note("No data-efficiency results were given.")
    names = {source: name for (kind, source), name in SOURCE_NAMES.items() if kind == "linear"}
    blocks = []
    for study in sorted(studies, key=lambda d: task_order(d.task)):
        name, metric = task_name(study.task), METRIC_NAMES.get(study.metric, study.metric)
        caption = (
            f"{name} ({study.label}): linear evaluation trained on nested, stratified fractions "
            f"of the training table (x axis, log scale; rows used below each fraction), {metric} "
            "on the whole test set with its 95% bootstrap CI as a band; C is chosen on the whole "
            "validation set. One line per feature source."
        )
        fig = data_efficiency_figure(f"{name}: {study.label}", study.results, metric, names)
        blocks.append(_figure_block(fig, f"Data efficiency, task {study.task}", caption))
    return "".join(blocks)


def _ssl_section(ssl_log: pd.DataFrame | None) -> str:
    if ssl_log is None:
        return _note(
            "No SSL training log was given: the foundation model's weights were loaded from a "
            "file (config key pretrained_weights), so no pretraining ran in this workflow."
        )
    if ssl_log[["loss", "lr"]].dropna(how="all").empty:
        return _note("The SSL training log holds no loss or learning-rate values.")
    caption = (
        "Self-supervised pretraining: the contrastive loss (left) and the learning rate "
        "(right) at each optimizer step, as logged during training; steps without a loss "
        "value (learning-rate-only entries) are left out of the loss curve."
    )
    return _figure_block(ssl_figure(ssl_log), "SSL loss and learning rate", caption)


def _preview_section(previews: tuple[np.ndarray, Sequence[str]] | None, size: int) -> str:
    if previews is None or len(previews[0]) == 0:
        return _note("No lesion table was given for previews, or it has no rows.")
    level, width = CT_WINDOW
    caption = (
        f"The {size}x{size}x{size} mm input patches of the first {len(previews[0])} lesions of "
        "the preview table, exactly as the models see them (1 mm grid around each seed point). "
        "Rows: the middle axial slice (anterior up, patient's left on the right), the middle "
        "coronal and sagittal slices (superior up). Shown in HU with a window of width "
        f"{width:.0f} and level {level:.0f}; columns are titled with the table row and labels."
    )
    return _figure_block(patch_figure(*previews), "Patch previews", caption)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
figcaption, .note { font-size: 0.9em; color: #444; max-width: 80ch; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


def render_report(
    evaluations: Sequence[Evaluation],
    *,
    ssl_log: pd.DataFrame | None,
    previews: tuple[np.ndarray, Sequence[str]] | None,
    patch_size: int,
    config: Any,
    created: datetime,
    data_efficiency: Sequence[DataEfficiency] = (),
    stability: Sequence[str | Path] = (),
) -> str:
    """Assemble the HTML page from loaded inputs (see :func:`build_report`)."""
    evaluations = sorted(evaluations, key=lambda e: e.order)
    table = _table(evaluations) if evaluations else _note("No evaluation results were given.")
    table_caption = (
        "Test-set results. Each cell is the metric on the test set with its 95% percentile "
        "bootstrap confidence interval in brackets (resampling the test rows); n test is the "
        "number of test rows scored. Model selection: the logistic regression's C and its "
        "selection score for linear evaluations, the epoch kept (best on validation) for "
        "fine-tuning. A dash marks a value that is not available. " + PAPER_NOTE
    )
    config_text = yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=100)
    paths = [e.path for e in evaluations] + [d.path for d in data_efficiency]
    inputs = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in paths)
    sections = [
        ("Results", f"{table}{_note(table_caption)}"),
        ("ROC curves", _roc_section(evaluations)),
        ("Data efficiency", _data_efficiency_section(data_efficiency)),
        ("Self-supervised pretraining", _ssl_section(ssl_log)),
        ("Seed-point stability", stability_section(stability)),
        ("Patch previews", _preview_section(previews, patch_size)),
        ("Configuration", f"<pre>{html.escape(config_text)}</pre>"),
        ("Result files", f"<ul>{inputs}</ul>" if inputs else _note("None.")),
    ]
    body = "".join(f"<section><h2>{html.escape(t)}</h2>{c}</section>" for t, c in sections)
    stamp = html.escape(created.isoformat(timespec="seconds"))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>FMCIB workflow report</title>"
        f"<style>{_STYLE}</style></head><body><h1>FMCIB workflow report</h1>"
        f"<p>Generated {stamp} by fmcib_core {html.escape(__version__)}. "
        "Foundation model for cancer imaging biomarkers (Pai et al., Nature Machine "
        f"Intelligence 2024), reproduced by this workflow.</p>{body}</body></html>\n"
    )


def build_report(
    linear_eval: Sequence[str | Path],
    finetune: Sequence[str | Path],
    *,
    ssl_log: str | Path | None,
    preview_table: str | Path | None,
    patch_size: int,
    config: Any,
    n_previews: int = 8,
    created: datetime | None = None,
    data_efficiency: Sequence[str | Path] = (),
    stability: Sequence[str | Path] = (),
) -> str:
    """Read every input, then return the report as one self-contained HTML page.

    Args:
        linear_eval: linear-evaluation JSONs (``results/<task>/linear_eval*.json``, ``<task>``
            being ``task1``-``task3`` or a custom task's name).
        finetune: fine-tuning JSONs (``results/<task>/finetune_{init}/metrics.json``).
        ssl_log: the SSL training log CSV, or None when published weights were used.
        preview_table: a lesion table whose first ``n_previews`` lesions are previewed, or None.
        patch_size: the patch side in voxels (1 mm).
        config: the workflow configuration, shown as YAML.
        n_previews: lesions to preview.
        stability: each task's ``stability.json`` (``results/<task>/stability.json``).
        created: the time stamp shown (default: now).
        data_efficiency: data-efficiency JSONs (``results/<task>/data_efficiency.json``).

    Raises:
        ReportError: an unreadable or malformed result file or SSL log.
        TableError, PatchError: the preview table or one of its seeds is unusable.
    """
    evaluations = [load_evaluation(p, "linear") for p in linear_eval]
    evaluations += [load_evaluation(p, "finetune") for p in finetune]
    studies = [load_data_efficiency(p) for p in data_efficiency]
    log_table = load_ssl_log(ssl_log) if ssl_log is not None else None
    previews = preview_patches(preview_table, patch_size, n_previews) if preview_table else None
    log.info(
        "%d result files, SSL log: %s, %d previews",
        len(evaluations),
        "yes" if log_table is not None else "no",
        0 if previews is None else len(previews[0]),
    )
    return render_report(
        evaluations,
        ssl_log=log_table,
        previews=previews,
        patch_size=patch_size,
        config=config,
        created=created or datetime.now().astimezone(),
        data_efficiency=studies,
        stability=stability,
    )
