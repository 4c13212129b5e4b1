"""The report's figures: ROC curves of test predictions, the SSL curves and patch previews.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas attached locally
(no pyplot, no global backend) and embedded in the page as base64 PNGs (:func:`png_img`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from fmcib_core.data.patches import HU_OFFSET, HU_SCALE
from fmcib_core.io.predictions import probability_columns

__all__ = [
    "CT_WINDOW",
    "RocCurve",
    "patch_figure",
    "png_img",
    "roc_curve_of",
    "roc_figure",
    "ssl_figure",
]

CT_WINDOW = (-300.0, 1500.0)  # (level, width) in HU: lung parenchyma and soft tissue both visible


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


def roc_curve_of(predictions: pd.DataFrame, label: str) -> RocCurve | None:
    """The ROC curve of a prediction table, or None when it is undefined (a single class).

    Binary tables (``prob``) give the usual curve. Multiclass tables (``prob_<class>``) give the
    one-vs-rest macro average: each class's curve (skipping classes absent from, or making up all
    of, the scored rows) is interpolated on the union of their false-positive rates and the
    true-positive rates are averaged; the AUC is the mean of the per-class AUCs.
    """
    columns = probability_columns(predictions)
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


def roc_figure(title: str, curves: Sequence[tuple[str, RocCurve]], *, macro: bool) -> Figure:
    """One task's ROC curves, one line per result, AUC and row count in the legend.

    Args:
        title: the axes title, e.g. ``"Task 2: malignancy"``.
        curves: (name, curve) per result.
        macro: whether the curves are macro means over classes (said on the TPR axis).
    """
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
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", title=title)
    ax.set_xlabel("False-positive rate")
    ax.set_ylabel("True-positive rate" + (" (macro mean)" if macro else ""))
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


def data_efficiency_figure(
    title: str, results: pd.DataFrame, metric: str, names: Mapping[str, str]
) -> Figure:
    """Test metric against the fraction of training data, one line per source, 95% CI bands.

    Args:
        title: the axes title.
        results: rows of ``fraction``, ``source``, ``n_train``, ``value``, ``ci_low``, ``ci_high``.
        metric: the metric's name on the y axis.
        names: legend name of each source (others are shown by their own name).
    """
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot()
    for source, rows in results.groupby("source", sort=False):
        rows = rows.sort_values("fraction")
        line = ax.plot(rows["fraction"], rows["value"], marker="o", linewidth=1.6,
                       label=names.get(source, source))[0]  # fmt: skip
        ax.fill_between(rows["fraction"], rows["ci_low"], rows["ci_high"],
                        color=line.get_color(), alpha=0.15, linewidth=0)  # fmt: skip
    fractions = sorted(results["fraction"].unique())
    n_train = results.groupby("fraction")["n_train"].max()
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}\n(n={n_train[f]})" for f in fractions])
    ax.minorticks_off()
    ax.set(title=title, xlabel="Fraction of the training table (rows used)", ylabel=metric)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def patch_figure(patches: np.ndarray, titles: Sequence[str]) -> Figure:
    """Middle axial, coronal and sagittal slices (rows) of each patch (columns), in a CT window.

    Args:
        patches: (N, 1, S, S, S) normalised patches, axes (z, y, x), LPS with z increasing upwards
            (docs/method.md section 2).
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


def png_img(fig: Figure, alt: str) -> str:
    """The figure as an ``<img>`` element holding its PNG (100 dpi) as a data URL."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
