"""The report's seed-point stability section: metrics over perturbed seeds, and feature ICCs."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fmcib_core.report.figures import png_img
from fmcib_core.report.load import ReportError, task_name

__all__ = ["load_stability", "stability_figure", "stability_section"]


def load_stability(path: str | Path) -> dict[str, Any]:
    """Read a ``stability.json``; the message names the file when it is unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data.get("sources"), dict) or "task" not in data:
            raise ValueError("needs 'task' and 'sources'")
    except (OSError, ValueError, AttributeError) as err:
        raise ReportError(f"{path}: cannot read the stability results ({err})") from err
    return data


def stability_figure(data: Mapping[str, Any]) -> Figure:
    """Per metric, a box plot of each source's metric over the perturbations (the unperturbed
    value marked); last, each source's histogram of feature ICC(1,1)."""
    sources = data["sources"]
    metrics = list(next(iter(sources.values()))["metrics"]) if sources else []
    fig = Figure(figsize=(3.4 * (len(metrics) + 1), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics) + 1, squeeze=False)[0]
    names = list(sources)
    for ax, metric in zip(axes, metrics, strict=False):
        values = [sources[n]["metrics"][metric]["values"] for n in names]
        ax.boxplot(values, tick_labels=names)
        base = [sources[n]["metrics"][metric]["unperturbed"] for n in names]
        ax.scatter(range(1, len(names) + 1), base, marker="D", color="C3", zorder=3,
                   label="unperturbed")  # fmt: skip
        ax.set(title=metric.replace("_", " "), ylabel="test metric")
        ax.legend(loc="lower right", fontsize="small")
    ax = axes[-1]
    for name in names:
        hist = sources[name]["icc"]["histogram"]
        edges = np.asarray(hist["edges"])
        ax.stairs(hist["counts"], edges, label=name)
    ax.set(title="feature ICC(1,1)", xlabel="ICC", ylabel="features", xlim=(0, 1))
    ax.legend(fontsize="small")
    return fig


def stability_section(paths: Sequence[str | Path]) -> str:
    """The HTML of the section: one figure and caption per task's ``stability.json``."""
    if not paths:
        return "<p class='note'>Stability was not run (stability.enabled is false).</p>"
    blocks = []
    for path in paths:
        data = load_stability(path)
        runs = data["perturbations"]
        outside = data["seeds_outside_scan"]
        shares = ", ".join(
            f"{name} {100 * s['icc']['share']['above_0.75']:.0f}% / "
            f"{100 * s['icc']['share']['above_0.9']:.0f}%"
            for name, s in data["sources"].items()
            if s["icc"]["share"]["above_0.75"] is not None
        )
        caption = (
            f"{task_name(data['task'])}: test metrics of each feature source over "
            f"{runs['copies']} copies of the {data['n_lesions']} test seeds moved by "
            f"{runs['distribution']} offsets of sd {runs['sigma_mm']} mm per axis (the fitted "
            "linear models applied unchanged; diamonds: the unperturbed seeds), and the "
            f"histogram of the features' ICC(1,1) across copies. Share of features with ICC > "
            f"0.75 / > 0.9: {shares}. Seeds outside the scan: {outside['count']} of "
            f"{outside['of']}, {outside['handling']}."
        )
        fig = stability_figure(data)
        alt = f"stability, {task_name(data['task'])}"
        blocks.append(f"<figure>{png_img(fig, alt)}<figcaption>{html.escape(caption)}"
                      "</figcaption></figure>")  # fmt: skip
    return "".join(blocks)
