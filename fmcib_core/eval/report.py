"""The workflow's HTML report: one self-contained file a reader can open anywhere.

It gathers what the earlier stages wrote (linear-evaluation and fine-tuning results, the SSL
training log, a lesion table) and shows the comparison table in the shape of the paper's (value
and 95% bootstrap CI per metric), ROC curves per task, the SSL loss and learning-rate curves,
patch previews and the configuration. Figures are drawn on ``matplotlib.figure.Figure`` objects
with the Agg canvas attached locally (no pyplot, no global backend) and embedded as base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

import fmcib_core
from fmcib_core.data.patches import HU_OFFSET, HU_SCALE, extract_patches
from fmcib_core.eval.linear import TASK_LABELS
from fmcib_core.io.tables import LABEL_SPECS, read_table, resolve_image_paths

__all__ = [
    "CT_WINDOW",
    "Evaluation",
    "ReportError",
    "RocCurve",
    "build_report",
    "format_metric",
    "load_evaluation",
    "load_ssl_log",
    "patch_figure",
    "preview_patches",
    "render_report",
    "roc_curve_of",
    "roc_figure",
    "ssl_figure",
]

log = logging.getLogger(__name__)

CT_WINDOW = (-300.0, 1500.0)  # (level, width) in HU: lung parenchyma and soft tissue both visible
METRIC_NAMES = {
    "mean_average_precision": "mAP (macro)",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC-AUC",
    "average_precision": "AP",
    "c_index": "C-index",
}
SOURCE_NAMES = {
    ("linear", "foundation"): "Linear, foundation-model features",
    ("linear", "published"): "Linear, published-model features",
    ("linear", "random-init"): "Linear, random-init features (control)",
    ("finetune", "random"): "Fine-tuned, random init",
    ("finetune", "supervised"): "Fine-tuned, supervised init",
    ("finetune", "foundation"): "Fine-tuned, foundation init",
}
PAPER_NOTE = (
    "For orientation, the paper reports on its real data: Task 1 mAP 0.848 from features, 0.856 "
    "fine-tuned, 0.821 supervised; Task 2 AUC 0.883 from features, 0.944 fine-tuned, 0.817 "
    "supervised; Task 3 (LUNG1) AUC 0.638 from features."
)
DASH = "\u2014"
SSL_COLUMNS = ("step", "loss", "lr")


class ReportError(ValueError):
    """An input the report cannot read; the message names the file."""


@dataclass(frozen=True)
class Evaluation:
    """One result file (linear evaluation or fine-tuning) and its test predictions.

    Attributes:
        path: the JSON file.
        kind: ``"linear"`` or ``"finetune"``.
        source: the feature source (linear) or the initialisation (fine-tuning).
        task: 1, 2 or 3.
        label: the label column.
        summary: the JSON's contents.
        predictions: the test predictions (label column + ``prob`` or ``prob_<class>``), or None
            when no predictions file lies beside the JSON.
    """

    path: Path
    kind: str
    source: str
    task: int
    label: str
    summary: dict[str, Any]
    predictions: pd.DataFrame | None

    @property
    def name(self) -> str:
        """The row name in the table and the curve name in the legends."""
        return SOURCE_NAMES.get((self.kind, self.source), f"{self.kind}, {self.source}")

    @property
    def order(self) -> tuple[int, int, str]:
        """Sort key: task, then the paper's row order (linear before fine-tuned)."""
        names = list(SOURCE_NAMES)
        key = (self.kind, self.source)
        return self.task, names.index(key) if key in names else len(names), self.source


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve drawn from test predictions.

    Attributes:
        fpr: (M,) false-positive rates, non-decreasing from 0 to 1.
        tpr: (M,) true-positive rates (for several classes: the mean over classes at ``fpr``).
        auc: the area (for several classes: the mean of the per-class areas, i.e. macro OvR).
        n_rows: test rows with a label and every probability.
        n_classes: classes averaged (1 for a binary task).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    n_rows: int
    n_classes: int


def load_evaluation(path: str | Path, kind: str) -> Evaluation:
    """Read a result JSON and the predictions beside it.

    Linear evaluations keep their predictions in ``<stem>_predictions.parquet``, fine-tuning runs
    in ``predictions.parquet`` in the same folder. Only ``task`` is required in the JSON.

    Raises:
        ReportError: the JSON is unreadable or malformed, or the predictions file is unreadable
            or lacks the label or probability columns.
    """
    path = Path(path)
    if kind not in ("linear", "finetune"):
        raise ValueError(f"kind must be 'linear' or 'finetune', got {kind!r}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read the {kind} results as JSON ({err})") from err
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    task = summary.get("task")
    if isinstance(task, bool) or task not in TASK_LABELS:
        raise ReportError(f"{path}: 'task' must be one of {sorted(TASK_LABELS)}, got {task!r}")
    if not isinstance(summary.get("test_metrics", {}), dict):
        raise ReportError(f"{path}: 'test_metrics' must be an object of metric name -> result")
    if kind == "linear":
        default = "random-init" if path.stem.endswith("random-init") else "foundation"
        source = str(summary.get("feature_source") or default)
        predictions_path = path.with_name(f"{path.stem}_predictions.parquet")
    else:
        source = str(summary.get("init") or path.parent.name.removeprefix("finetune_"))
        predictions_path = path.with_name("predictions.parquet")
    label = str(summary.get("label") or TASK_LABELS[task])
    predictions = _read_predictions(predictions_path, label)
    return Evaluation(path, kind, source, task, label, summary, predictions)


def _read_predictions(path: Path, label: str) -> pd.DataFrame | None:
    if not path.exists():
        log.warning("%s: no predictions file; its ROC curve is left out", path)
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the predictions ({err})") from err
    if label not in table.columns or not _probability_columns(table):
        raise ReportError(
            f"{path}: predictions need the label column '{label}' and 'prob' or 'prob_<class>' "
            f"columns; found {list(table.columns)}"
        )
    return table


def _probability_columns(table: pd.DataFrame) -> dict[int, str]:
    """``{-1: "prob"}`` for a binary table, else ``{class: "prob_<class>"}`` in class order."""
    if "prob" in table.columns:
        return {-1: "prob"}
    found = {}
    for column in table.columns:
        suffix = str(column).removeprefix("prob_")
        if str(column).startswith("prob_") and suffix.lstrip("-").isdigit():
            found[int(suffix)] = column
    return dict(sorted(found.items()))


def load_ssl_log(path: str | Path) -> pd.DataFrame:
    """Read the SSL training log (``step``, ``loss``, ``lr``; one row per optimizer step).

    Raises:
        ReportError: the file is unreadable, lacks a column, or holds a non-numeric value.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the SSL log ({err})") from err
    missing = [c for c in SSL_COLUMNS if c not in table.columns]
    if missing:
        raise ReportError(f"{path}: the SSL log lacks column(s) {missing}")
    try:
        return table.assign(**{c: pd.to_numeric(table[c]) for c in SSL_COLUMNS})
    except ValueError as err:
        raise ReportError(f"{path}: the SSL log holds a non-numeric value ({err})") from err


def preview_patches(table_path: str | Path, size: int, n: int = 8) -> tuple[np.ndarray, list[str]]:
    """The patches of a table's first ``n`` lesions, and a title for each.

    Returns:
        Patches (n, 1, size, size, size) in normalised units (axes z, y, x), and titles naming the
        table row and any label columns.
    """
    table = read_table(table_path).head(n)
    table = table.assign(image_path=resolve_image_paths(table, table_path))
    patches = extract_patches(table, size=size)
    labels = [c for c, spec in LABEL_SPECS.items() if c in table.columns and not spec.companion_of]
    titles = []
    for position, (_, row) in enumerate(table.iterrows()):
        parts = [f"row {position}"] + [f"{c} {_format_label(row[c])}" for c in labels]
        titles.append("\n".join(parts))
    return patches, titles


def _format_label(value: object) -> str:
    if pd.isna(value):
        return DASH
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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


def roc_curve_of(predictions: pd.DataFrame, label: str) -> RocCurve | None:
    """The ROC curve of a prediction table, or None when it is undefined (a single class).

    Binary tables (``prob``) give the usual curve. Multiclass tables (``prob_<class>``) give the
    one-vs-rest macro average: each class's curve (skipping classes absent from, or making up all
    of, the scored rows) is interpolated on the union of their false-positive rates and the
    true-positive rates are averaged; the AUC is the mean of the per-class AUCs.
    """
    columns = _probability_columns(predictions)
    proba = predictions[list(columns.values())].to_numpy(dtype=np.float64, na_value=np.nan)
    y = predictions[label].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(y) & np.isfinite(proba).all(axis=1)
    y, proba = y[keep], proba[keep]
    targets = [(y == 1, proba[:, 0])] if -1 in columns else []
    targets += [(y == c, proba[:, i]) for i, c in enumerate(columns) if c != -1]
    curves = [roc_curve(t, s) for t, s in targets if 0 < t.sum() < len(t)]
    if not curves:
        return None
    if len(curves) == 1:
        fpr, tpr, _ = curves[0]
        return RocCurve(fpr, tpr, float(auc(fpr, tpr)), int(keep.sum()), 1)
    grid = np.unique(np.concatenate([fpr for fpr, _, _ in curves]))
    below, above = np.mean([_limits(grid, fpr, tpr) for fpr, tpr, _ in curves], axis=0)
    macro = float(np.mean([auc(fpr, tpr) for fpr, tpr, _ in curves]))
    # Both one-sided values at every grid point keep the vertical steps, so that the area under
    # the drawn mean curve is exactly the mean of the per-class areas.
    mean_fpr, mean_tpr = np.repeat(grid, 2), np.column_stack([below, above]).ravel()
    return RocCurve(mean_fpr, mean_tpr, macro, int(keep.sum()), len(curves))


def _limits(grid: np.ndarray, fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """(2, G): a ROC curve's TPR just before and just after each grid FPR (they differ at steps)."""
    below = np.interp(grid, fpr, tpr)
    above = below.copy()
    first = np.searchsorted(fpr, grid, side="left")
    last = np.searchsorted(fpr, grid, side="right") - 1
    on = fpr[np.minimum(first, len(fpr) - 1)] == grid
    below[on], above[on] = tpr[first[on]], tpr[last[on]]
    return np.stack([below, above])


def roc_figure(task: int, curves: Sequence[tuple[str, RocCurve]]) -> Figure:
    """One task's ROC curves, one line per result, AUC and row count in the legend."""
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for name, curve in curves:
        ax.plot(
            curve.fpr,
            curve.tpr,
            linewidth=1.6,
            label=f"{name} (AUC {curve.auc:.3f}, n={curve.n_rows})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", title=f"Task {task}: {TASK_LABELS[task]}")
    ax.set_xlabel("False-positive rate")
    ax.set_ylabel("True-positive rate" + (" (macro mean)" if task == 1 else ""))
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def ssl_figure(ssl_log: pd.DataFrame) -> Figure:
    """SSL loss and learning rate against the optimizer step (NaN rows dropped per curve)."""
    fig = _figure(10.0, 3.6)
    for ax, column, ylabel in zip(
        fig.subplots(1, 2), ("loss", "lr"), ("Contrastive loss", "Learning rate"), strict=True
    ):
        curve = ssl_log[["step", column]].dropna()
        ax.plot(curve["step"], curve[column], linewidth=1.2)
        ax.set_xlabel("Optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return fig


def patch_figure(patches: np.ndarray, titles: Sequence[str]) -> Figure:
    """Middle axial, coronal and sagittal slices (rows) of each patch (columns), in a CT window.

    Args:
        patches: (N, 1, S, S, S) normalised patches, axes (z, y, x), LPS with z increasing upwards.
        titles: one per patch.
    """
    n, s = len(patches), patches.shape[-1]
    level, width = CT_WINDOW
    hu = np.asarray(patches[:, 0], dtype=np.float64) * HU_SCALE - HU_OFFSET
    views = {
        # Axial (y down = posterior, x right = patient left: the radiological convention).
        "axial": lambda v: v[s // 2],
        # Coronal and sagittal: flip z so that superior is at the top.
        "coronal": lambda v: v[::-1, s // 2, :],
        "sagittal": lambda v: v[::-1, :, s // 2],
    }
    fig = _figure(1.5 * n + 0.6, 1.55 * len(views) + 0.5)
    axes = fig.subplots(len(views), n, squeeze=False)
    for row, (view, take) in enumerate(views.items()):
        for col in range(n):
            ax = axes[row, col]
            ax.imshow(take(hu[col]), cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=7)
            if col == 0:
                ax.set_ylabel(view, fontsize=8)
    return fig


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _figure_block(fig: Figure, alt: str, caption: str) -> str:
    return f"<figure>{_png(fig, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>"


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
    blocks = []
    for task in sorted({e.task for e in evaluations}):
        curves, missing = [], []
        for e in (e for e in evaluations if e.task == task):
            curve = roc_curve_of(e.predictions, e.label) if e.predictions is not None else None
            if curve is None:
                missing.append(e.name)
            else:
                curves.append((e.name, curve))
        if not curves:
            blocks.append(_note(f"Task {task}: no test predictions with both classes to draw."))
            continue
        caption = (
            f"Task {task} ({TASK_LABELS[task]}): ROC curves on the test set, one per model; the "
            "legend gives the area under each curve and the number of test rows scored."
        )
        if task == 1:
            caption += (
                " Task 1 has several classes, so each curve is the one-vs-rest macro average: "
                "the ROC curve of every class against the rest (classes absent from the test set "
                "skipped) is interpolated on a common false-positive-rate grid and the "
                "true-positive rates are averaged; the AUC is the mean of the per-class AUCs."
            )
        if missing:
            caption += f" Not drawn (no predictions, or a single class): {', '.join(missing)}."
        blocks.append(_figure_block(roc_figure(task, curves), f"ROC curves, task {task}", caption))
    return "".join(blocks) or _note("No evaluation results were given, so there are no curves.")


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
    inputs = "".join(f"<li><code>{html.escape(str(e.path))}</code></li>" for e in evaluations)
    sections = [
        ("Results", f"{table}{_note(table_caption)}"),
        ("ROC curves", _roc_section(evaluations)),
        ("Self-supervised pretraining", _ssl_section(ssl_log)),
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
        f"<p>Generated {stamp} by fmcib_core {html.escape(fmcib_core.__version__)}. "
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
) -> str:
    """Read every input, then return the report as one self-contained HTML page.

    Args:
        linear_eval: linear-evaluation JSONs (``results/task{N}/linear_eval*.json``).
        finetune: fine-tuning JSONs (``results/task{N}/finetune_{init}/metrics.json``).
        ssl_log: the SSL training log CSV, or None when published weights were used.
        preview_table: a lesion table whose first ``n_previews`` lesions are previewed, or None.
        patch_size: the patch side in voxels (1 mm).
        config: the workflow configuration, shown as YAML.
        n_previews: lesions to preview.
        created: the time stamp shown (default: now).

    Raises:
        ReportError: an unreadable or malformed result file or SSL log.
        TableError, PatchError: the preview table or one of its seeds is unusable.
    """
    evaluations = [load_evaluation(p, "linear") for p in linear_eval]
    evaluations += [load_evaluation(p, "finetune") for p in finetune]
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
    )
