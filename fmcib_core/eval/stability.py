"""Seed-point stability: features and test metrics when the seeds move (Pai et al. 2024).

Readers place seeds by hand and disagree by a few millimetres, so the paper redraws every test
seed K times from N(0, sigma^2 I) (sigma 4 mm) and recomputes the test metric with the linear
model already fitted, and measures each feature's agreement across the copies with ICC(1,1).
A perturbed seed outside its scan is clamped to the scan's extent (the box of voxel centres,
half a voxel out) and counted. :func:`evaluate_source` takes a source's features of
:func:`stability_rows` (the original rows, then every copy's), so one pass over those rows'
patches (:func:`~fmcib_core.eval.features.extract_feature_sources`) serves every source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fmcib_core.eval.linear import LinearModel, labels_from_table
from fmcib_core.io.images import read_image
from fmcib_core.io.tables import COORD_COLUMNS
from fmcib_core.metrics.evaluate import task_metrics
from fmcib_core.tasks import Task

__all__ = [
    "DISTRIBUTIONS",
    "ICC_THRESHOLDS",
    "Perturbed",
    "evaluate_source",
    "icc_1_1",
    "metric_distribution",
    "perturb_seeds",
    "stability_rows",
    "stability_summary",
]

DISTRIBUTIONS = ("normal", "uniform")
ICC_THRESHOLDS = (0.75, 0.9)
COPY_COLUMN = "perturbation"


@dataclass(frozen=True, eq=False)
class Perturbed:
    """K perturbed copies of a table: ``table`` holds copy 0's rows first, then copy 1's, ...

    Attributes:
        table: (K * N) rows, the input's columns with moved coordinates and ``perturbation``.
        n_copies: K.
        n_clamped: perturbed seeds that fell outside their scan and were clamped to it.
    """

    table: pd.DataFrame
    n_copies: int
    n_clamped: int


def _extent(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin, spacing-scaled direction (3, 3) and size of an image, header only for files."""
    if Path(path).is_dir():
        image = read_image(path)
        origin, spacing, direction = image.GetOrigin(), image.GetSpacing(), image.GetDirection()
        size = image.GetSize()
    else:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        origin, spacing = reader.GetOrigin(), reader.GetSpacing()
        direction, size = reader.GetDirection(), reader.GetSize()
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing)
    return np.asarray(origin, dtype=np.float64), matrix, np.asarray(size, dtype=np.float64)


def _clamp(points: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
    """``points`` (M, 3) in world mm clamped into the image; and which ones moved."""
    origin, matrix, size = _extent(path)
    index = np.linalg.solve(matrix, (points - origin).T).T  # continuous voxel index
    inside = np.clip(index, -0.5, size - 0.5)
    moved = ~np.isclose(inside, index, rtol=0, atol=1e-9).all(axis=1)
    return origin + inside @ matrix.T, moved


def perturb_seeds(
    table: pd.DataFrame,
    *,
    n_copies: int,
    sigma_mm: float,
    distribution: str = "normal",
    seed: int = 0,
) -> Perturbed:
    """K copies of ``table`` whose seeds move by independent random offsets (world mm).

    ``normal``: each axis ~ N(0, sigma^2); ``uniform``: each axis ~ U(-sigma*sqrt(3),
    sigma*sqrt(3)) (the same standard deviation). Offsets come from
    ``np.random.default_rng(seed)``, so the copies are reproducible. ``image_path`` must be
    absolute (resolve it first).

    Raises:
        ValueError: bad ``n_copies``, ``sigma_mm`` or ``distribution``.
    """
    if n_copies < 1 or not sigma_mm >= 0 or distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"need n_copies >= 1, sigma_mm >= 0 and distribution in {DISTRIBUTIONS}; "
            f"got {n_copies}, {sigma_mm}, {distribution!r}"
        )
    rng = np.random.default_rng(seed)
    shape = (n_copies, len(table), 3)
    if distribution == "normal":
        offsets = rng.normal(0.0, sigma_mm, size=shape)
    else:
        half = sigma_mm * np.sqrt(3.0)
        offsets = rng.uniform(-half, half, size=shape)
    seeds = table[list(COORD_COLUMNS)].to_numpy(dtype=np.float64)
    moved = (seeds[None] + offsets).reshape(-1, 3)
    paths = np.tile(table["image_path"].astype(str).to_numpy(), n_copies)
    clamped = np.zeros(len(moved), dtype=bool)
    for path in pd.unique(paths):
        rows = paths == path
        moved[rows], clamped[rows] = _clamp(moved[rows], path)
    copies = pd.concat([table] * n_copies, ignore_index=True)
    copies[list(COORD_COLUMNS)] = moved
    copies[COPY_COLUMN] = np.repeat(np.arange(n_copies), len(table))
    return Perturbed(copies, n_copies, int(clamped.sum()))


def icc_1_1(values: np.ndarray) -> np.ndarray:
    """ICC(1,1) of each feature: one-way random effects, single measurement (Shrout-Fleiss).

    Args:
        values: (N subjects, K measurements, F features).

    Returns:
        (F,) ``(MSB - MSW) / (MSB + (K - 1) MSW)``; NaN where a feature is constant.
    """
    values = np.asarray(values, dtype=np.float64)
    n, k, _ = values.shape
    subject_means = values.mean(axis=1)
    grand = subject_means.mean(axis=0)
    msb = k * ((subject_means - grand) ** 2).sum(axis=0) / (n - 1)
    msw = ((values - subject_means[:, None]) ** 2).sum(axis=(0, 1)) / (n * (k - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (msb - msw) / (msb + (k - 1) * msw)


def metric_distribution(values: np.ndarray) -> dict[str, float]:
    """Mean, sample sd and the 2.5/50/97.5 percentiles of a metric over the perturbations."""
    values = np.asarray(values, dtype=np.float64)
    low, median, high = np.percentile(values, [2.5, 50, 97.5])
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {
        "mean": float(values.mean()),
        "sd": sd,
        "p2_5": float(low),
        "p50": float(median),
        "p97_5": float(high),
    }


def stability_summary(
    unperturbed: Mapping[str, float],
    perturbed: Mapping[str, np.ndarray],
    features: np.ndarray,
    *,
    bins: int = 20,
) -> dict[str, object]:
    """One source's stability: each metric's distribution and the features' ICC histogram.

    Args:
        unperturbed: metric name -> the test metric on the original seeds.
        perturbed: metric name -> (K,) the metric on each perturbed copy.
        features: (N, K, F) features of each lesion in each copy.
        bins: histogram bins on [0, 1] (an ICC below 0 counts in the first bin).
    """
    icc = icc_1_1(features)
    finite = icc[np.isfinite(icc)]
    counts, edges = np.histogram(np.clip(finite, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    share = {
        f"above_{t}": float((finite > t).mean()) if len(finite) else None for t in ICC_THRESHOLDS
    }
    metrics = {
        name: {
            "unperturbed": float(unperturbed[name]),
            "perturbed": metric_distribution(values),
            "values": [float(v) for v in values],
        }
        for name, values in perturbed.items()
    }
    return {
        "metrics": metrics,
        "icc": {
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "share": share,
            "median": float(np.median(finite)) if len(finite) else None,
            "n_features": int(icc.size),
            "n_constant": int(icc.size - finite.size),
        },
    }


def _metric_values(
    task: Task, model: LinearModel, features: np.ndarray, y: np.ndarray, extra: dict
) -> dict[str, float]:
    """The task's test metrics (values only) of ``model`` on complete rows."""
    keep = np.isfinite(features).all(axis=1) & np.isfinite(y)
    proba = model.predict_proba(features[keep])
    kept = {k: v[keep] for k, v in extra.items()}
    results, _ = task_metrics(task, y[keep].astype(np.int64), proba, model.classes, kept, 0, 1)
    return {name: result.value for name, result in results.items()}


def stability_rows(table: pd.DataFrame, perturbed: Perturbed) -> pd.DataFrame:
    """The rows whose features :func:`evaluate_source` takes: ``table``'s, then every copy's
    (without ``perturbation``), index reset."""
    return pd.concat([table, perturbed.table.drop(columns=COPY_COLUMN)], ignore_index=True)


def evaluate_source(
    features: np.ndarray,
    model: LinearModel,
    task: Task,
    table: pd.DataFrame,
    perturbed: Perturbed,
) -> dict[str, object]:
    """Stability of one feature source: the fitted ``model`` applied, unchanged, to every copy.

    Args:
        features: (N * (K + 1), F) the source's features of :func:`stability_rows`, in its row
            order: a backbone's or the handcrafted descriptor's.
        model: the linear model linear evaluation fitted on this source's train features.
        task: whose label and metrics.
        table: the test table (its labels).
        perturbed: :func:`perturb_seeds` of ``table``.

    Raises:
        ValueError: ``features`` has not one row per row of :func:`stability_rows`.
    """
    features = np.asarray(features)
    n = len(table)
    if features.ndim != 2 or len(features) != n * (perturbed.n_copies + 1):
        raise ValueError(
            f"need ({n * (perturbed.n_copies + 1)}, F) features of the table and its "
            f"{perturbed.n_copies} copies; got shape {features.shape}"
        )
    y, extra = labels_from_table(table, task, source="test")
    unperturbed = _metric_values(task, model, features[:n], y, extra)
    copies = features[n:].reshape(perturbed.n_copies, n, -1)
    per_copy = [_metric_values(task, model, copy, y, extra) for copy in copies]
    values = {name: np.array([m[name] for m in per_copy]) for name in unperturbed}
    return stability_summary(unperturbed, values, copies.transpose(1, 0, 2))
