"""Validating a lesion table before any GPU time is spent (docs/method.md section 1)."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import logging
import math
import struct
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from fmcib_core.io.images import ImageReadError, read_image
from fmcib_core.io.tables import (
    COORD_COLUMNS,
    LabelSpec,
    Problem,
    TableError,
    check_label_names,
    check_table,
    find_duplicate_rows,
    read_table,
    resolve_image_paths,
)

__all__ = ["ValidationReport", "check_nifti_complete", "validate_table"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ValidationReport:
    """What a valid lesion table holds.

    Attributes:
        table: the table's path as given.
        n_rows: number of lesions (data rows).
        n_images: number of distinct images.
        labels: the labels that were checked.
        label_counts: per discrete label, the number of rows of each value (keys are strings).
        warnings: problems that do not stop the table from being used (duplicate rows).
    """

    table: str
    n_rows: int
    n_images: int
    labels: list[str]
    label_counts: dict[str, dict[str, int]]
    warnings: list[str]

    def to_dict(self) -> dict:
        """The report as plain JSON-serialisable types."""
        return dataclasses.asdict(self)


def _nifti_bytes_needed(header: bytes) -> int | None:
    """Return the data offset plus the voxel data size of a NIfTI-1/2 header, else ``None``."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = struct.unpack(order + "f", header[108:112])[0]
        elif len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7:
            return None
        return int(offset) + math.prod(dims[1 : dims[0] + 1]) * bitpix // 8
    return None


def check_nifti_complete(path: str | Path) -> None:
    """Raise if a ``.nii``/``.nii.gz`` file is truncated or its compressed stream is corrupt.

    SimpleITK reads a truncated NIfTI file without complaint and fills the missing voxels, so
    the file's length is checked against its header (and a gzip stream is read to its end,
    which also verifies its checksum). Other formats are left to their readers, which do check.

    Raises:
        ImageReadError: the file is shorter than its header says, or its gzip stream is broken.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            header = stream.read(540)
            size = len(header)
            while chunk := stream.read(1 << 24):
                size += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise ImageReadError(f"{path}: image is corrupt ({err}); re-export the file") from err
    needed = _nifti_bytes_needed(header)
    if needed is not None and size < needed:
        raise ImageReadError(
            f"{path}: image is truncated ({size} of {needed} bytes); re-export the file"
        )


def _is_inside(image: sitk.Image, point: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Return the continuous index of ``point`` and, per axis, whether it is outside the volume."""
    index = np.array(image.TransformPhysicalPointToContinuousIndex(tuple(point)))
    size = np.array(image.GetSize())
    return index, (index < -0.5) | (index > size - 0.5)


def _extent(image: sitk.Image) -> str:
    """The image's axis-aligned world extent (outer voxel borders) in words."""
    size = np.array(image.GetSize())
    corners = np.array(
        [
            image.TransformContinuousIndexToPhysicalPoint((np.array(c) * size - 0.5).tolist())
            for c in itertools.product((0, 1), repeat=3)
        ]
    )
    low, high = corners.min(0), corners.max(0)
    return ", ".join(f"{ax} {low[i]:.1f}..{high[i]:.1f}" for i, ax in enumerate("xyz"))


def _seed_problem(image: sitk.Image, seed: np.ndarray, row: int) -> Problem | None:
    index, outside = _is_inside(image, seed)
    if not outside.any():
        return None
    column = COORD_COLUMNS[int(np.argmax(outside))]
    x, y, z = seed
    where = f"seed ({x:g}, {y:g}, {z:g}) mm lies outside the image"
    if not _is_inside(image, (-x, -y, z))[1].any():
        return Problem(
            f"{where} but ({-x:g}, {-y:g}, {z:g}) lies inside: this looks like RAS coordinates; "
            "negate coordX and coordY to convert to LPS",
            row,
            column,
        )
    return Problem(
        f"{where} (continuous index {np.round(index, 1).tolist()}, size {list(image.GetSize())}, "
        f"world extent {_extent(image)} mm); give the seed in world millimetres (LPS)",
        row,
        column,
    )


def _image_problems(path: str, rows: list[int], seeds: np.ndarray | None) -> list[Problem]:
    """Problems of one image and of the seeds of its ``rows`` (0-based positions)."""

    def for_rows(message: str) -> list[Problem]:
        return [Problem(message, pos + 1, "image_path") for pos in rows]

    if not Path(path).exists():
        return for_rows(
            f"image '{path}' does not exist; check image_path "
            "(relative paths are relative to the table's folder)"
        )
    try:
        image = read_image(path)
        check_nifti_complete(path)
    except ImageReadError as err:
        return for_rows(str(err))
    if image.GetDimension() != 3:
        return for_rows(
            f"image '{path}' is {image.GetDimension()}D (size {list(image.GetSize())}); "
            "give a 3D CT volume"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        return for_rows(
            f"image '{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "give a single-component (grey-value) CT volume"
        )
    if seeds is None:
        return []
    checked = (pos for pos in rows if np.isfinite(seeds[pos]).all())
    found = (_seed_problem(image, seeds[pos], pos + 1) for pos in checked)
    return [p for p in found if p is not None]


def _rows_by_image(table: pd.DataFrame, table_path: Path) -> dict[str, list[int]]:
    """Row positions grouped by resolved image path, in order of first appearance."""
    resolved = resolve_image_paths(table, table_path)
    usable = table["image_path"].map(lambda p: not pd.isna(p) and bool(str(p).strip()))
    groups: dict[str, list[int]] = {}
    for pos in usable.to_numpy().nonzero()[0]:
        groups.setdefault(resolved.iloc[pos], []).append(int(pos))
    return groups


def _seeds(table: pd.DataFrame) -> np.ndarray | None:
    if not all(col in table for col in COORD_COLUMNS):
        return None
    columns = [pd.to_numeric(table[col], errors="coerce").astype(float) for col in COORD_COLUMNS]
    return np.column_stack(columns)


def _label_counts(
    table: pd.DataFrame, labels: Mapping[str, LabelSpec]
) -> dict[str, dict[str, int]]:
    counts = {}
    for name, spec in labels.items():
        if spec.values is not None:
            values = pd.to_numeric(table[name]).astype(int).value_counts().sort_index()
            counts[name] = {str(value): int(n) for value, n in values.items()}
    return counts


def validate_table(
    path: str | Path, labels: Iterable[str] = (), *, progress: bool = False
) -> ValidationReport:
    """Check a lesion table and every image it names; report all problems at once.

    Each distinct image (rows grouped by resolved path) is read once and must be a readable,
    single-component 3D volume holding each of its rows' seed points: the seed's continuous
    index lies in [-0.5, size - 0.5] on every axis. Duplicate rows are warnings, logged and
    listed in the report.

    Args:
        path: the table (``.csv`` or ``.parquet``).
        labels: label columns the caller's rule uses: keys of ``LABEL_SPECS``, or ``COLUMN=K``
            for a custom task's class label with values 0..K-1.
        progress: show a progress bar over the images.

    Returns:
        The report of a valid table.

    Raises:
        TableError: the table cannot be used; the message holds one line per problem,
            ``{file}: row {r}: column '{col}': {what is wrong}; {what to do}`` (row is the
            1-based data row; whole-table problems leave out row and column).
        ValueError: a requested label is not in ``LABEL_SPECS``.
    """
    labels = list(labels)
    specs = check_label_names(labels)
    path = Path(path)
    table = read_table(path)
    problems = check_table(table, labels)
    groups = _rows_by_image(table, path) if "image_path" in table else {}
    seeds = _seeds(table)
    for image_path, rows in tqdm(groups.items(), desc="images", unit="image", disable=not progress):
        problems += _image_problems(image_path, rows, seeds)
    warnings = [p.format(path) for p in find_duplicate_rows(table)]
    for warning in warnings:
        log.warning(warning)
    if problems:
        problems.sort(key=lambda p: -1 if p.row is None else p.row)
        raise TableError("\n".join(p.format(path) for p in problems))
    return ValidationReport(
        table=str(path),
        n_rows=len(table),
        n_images=len(groups),
        labels=list(specs),
        label_counts=_label_counts(table, specs),
        warnings=warnings,
    )
