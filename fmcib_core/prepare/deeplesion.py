"""DeepLesion -> the pretraining table and Task 1's tables (docs/method.md section 8).

Input: ``DL_info.csv`` as published (vector fields are comma-separated strings) and the
``Images_png`` folder, one 16-bit PNG per slice at
``Images_png/{Patient:06d}_{Study:02d}_{Series:02d}/{slice:03d}.png`` with HU = value - 32768.
Output, in a new folder: ``images/`` with one NIfTI per series slice range, ``pretrain.csv``
(Train_Val_Test 1, unlabelled), ``task1_train.csv`` (2), ``task1_val.csv`` and
``task1_test.csv`` (3, split 50/50 by patient with the seed, balanced per lesion type), and
``summary.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fmcib_core.io.tables import COORD_COLUMNS
from fmcib_core.prepare.report import (
    SUMMARY_NAME,
    DatasetError,
    Problems,
    Summary,
    check_columns,
    prepared_folder,
    write_json,
    write_table,
)
from fmcib_core.prepare.splits import split_patients

__all__ = ["HU_SHIFT", "REQUIRED", "TABLES", "prepare_deeplesion", "recist_seed"]

HU_SHIFT = 32768
REQUIRED = (
    "File_name",
    "Patient_index",
    "Study_index",
    "Series_ID",
    "Key_slice_index",
    "Measurement_coordinates",
    "Bounding_boxes",
    "Coarse_lesion_type",
    "Slice_range",
    "Spacing_mm_px_",
    "Image_size",
    "Train_Val_Test",
)
TABLES = ("pretrain", "task1_train", "task1_val", "task1_test")
_VECTORS = {
    "Measurement_coordinates": 8,
    "Bounding_boxes": 4,
    "Slice_range": 2,
    "Spacing_mm_px_": 3,
    "Image_size": 2,
}


@dataclass(frozen=True)
class _Lesion:
    row: int
    folder: str
    slices: tuple[int, int]
    key: int
    spacing: tuple[float, float, float]
    size: tuple[int, int]
    seed_xy: tuple[float, float]
    crossing: bool


def recist_seed(measurement: np.ndarray, box: np.ndarray) -> tuple[tuple[float, float], bool]:
    """Where the RECIST long axis (x1, y1)-(x2, y2) and short axis (x3, y3)-(x4, y4) cross.

    Returns the crossing in pixels (x, y) and True, or the bounding box's centre and False when
    the two segments do not cross (parallel, or meeting outside either segment).
    """
    p1, p2, p3, p4 = measurement.reshape(4, 2)
    d1, d2 = p2 - p1, p4 - p3
    det = d1[0] * -d2[1] - d1[1] * -d2[0]
    if abs(det) > 1e-9:
        rhs = p3 - p1
        t = (rhs[0] * -d2[1] - rhs[1] * -d2[0]) / det
        u = (d1[0] * rhs[1] - d1[1] * rhs[0]) / det
        if -1e-9 <= t <= 1 + 1e-9 and -1e-9 <= u <= 1 + 1e-9:
            point = p1 + t * d1
            return (float(point[0]), float(point[1])), True
    return (float((box[0] + box[2]) / 2), float((box[1] + box[3]) / 2)), False


def _vector(cell: object, n: int) -> np.ndarray | None:
    try:
        values = np.array([float(v) for v in str(cell).split(",")], dtype=np.float64)
    except ValueError:
        return None
    return values if len(values) == n and np.all(np.isfinite(values)) else None


def _parse(info: pd.DataFrame, where: Path, problems: Problems) -> dict[int, dict]:
    """Each row's vector fields as arrays; a malformed field is a problem."""
    parsed = {}
    for pos, record in enumerate(info.to_dict("records")):
        fields, ok = {}, True
        for column, n in _VECTORS.items():
            fields[column] = _vector(record[column], n)
            if fields[column] is None:
                ok = False
                problems.add(
                    f"{where}: row {pos + 1}: column '{column}'",
                    f"value '{record[column]}' is not {n} comma-separated numbers",
                    "use the published DL_info.csv",
                )
        for column in ("Patient_index", "Study_index", "Series_ID", "Key_slice_index"):
            value = pd.to_numeric(record[column], errors="coerce")
            if not np.isfinite(value) or value != int(value):
                ok = False
                problems.add(
                    f"{where}: row {pos + 1}: column '{column}'",
                    f"value '{record[column]}' is not an integer",
                    "use the published DL_info.csv",
                )
        if ok:
            parsed[pos] = fields
    return parsed


def _folder(record: dict) -> str:
    return (
        f"{int(record['Patient_index']):06d}_{int(record['Study_index']):02d}_"
        f"{int(record['Series_ID']):02d}"
    )


def _read_volume(
    images: Path, folder: str, slices: tuple[int, int], size: tuple[int, int], problems: Problems
) -> np.ndarray | None:
    """The HU slices ``slices[0]..slices[1]`` of a series as int16 (z, y, x), or None."""
    planes = []
    for number in range(slices[0], slices[1] + 1):
        path = images / folder / f"{number:03d}.png"
        try:
            plane = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        except RuntimeError:
            problems.add(path, "slice cannot be read as a PNG", "re-download the series")
            return None
        if plane.ndim != 2 or plane.shape != (size[1], size[0]):
            problems.add(
                path,
                f"slice has shape {list(plane.shape)}, Image_size says {size[0]} x {size[1]}",
                "re-download the series",
            )
            return None
        planes.append((plane.astype(np.int32) - HU_SHIFT).astype(np.int16))
    return np.stack(planes)


def _lesions(
    where: Path,
    info: pd.DataFrame,
    parsed: dict[int, dict],
    images: Path,
    max_spacing: float,
    summary: Summary,
    problems: Problems,
) -> list[_Lesion]:
    lesions, missing = [], {}
    for pos, fields in parsed.items():
        record = info.iloc[pos]
        start, stop = (int(v) for v in fields["Slice_range"])
        key = int(record["Key_slice_index"])
        name = str(record["File_name"])
        spacing = tuple(float(v) for v in fields["Spacing_mm_px_"])
        if spacing[2] > max_spacing:
            summary.skip(f"slice spacing above {max_spacing:g} mm", name)
            continue
        if not start <= key <= stop:
            problems.add(
                f"{where}: row {pos + 1} ({name})",
                f"Key_slice_index {key} lies outside Slice_range {start}-{stop}",
                "use the published DL_info.csv",
            )
            continue
        folder = _folder(record)
        absent = [
            n for n in range(start, stop + 1) if not (images / folder / f"{n:03d}.png").is_file()
        ]
        if absent:
            missing.setdefault(folder, set()).update(absent)
            continue
        seed_xy, crossing = recist_seed(fields["Measurement_coordinates"], fields["Bounding_boxes"])
        size = tuple(int(v) for v in fields["Image_size"])
        lesions.append(_Lesion(pos, folder, (start, stop), key, spacing, size, seed_xy, crossing))
    by_volume: dict[tuple, set] = {}
    for lesion in lesions:
        by_volume.setdefault((lesion.folder, lesion.slices), set()).add(
            (lesion.spacing, lesion.size)
        )
    for (folder, slices), geometries in by_volume.items():
        if len(geometries) > 1:
            problems.add(
                images / folder,
                f"rows of slices {slices[0]}-{slices[1]} disagree on "
                f"Spacing_mm_px_/Image_size ({sorted(geometries)})",
                "use the published DL_info.csv",
            )
    for folder, numbers in missing.items():
        shown = ", ".join(f"{n:03d}.png" for n in sorted(numbers)[:10])
        more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
        problems.add(
            images / folder,
            f"slice(s) {shown}{more} are missing",
            "download every Images_png zip part and unpack them into one folder",
        )
    return lesions


def _write_volume(array: np.ndarray, spacing: tuple, start: int, path: Path) -> sitk.Image:
    """Write the NIfTI and return its geometry as read back (NIfTI stores float32)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((0.0, 0.0, (start - 1) * spacing[2]))
    sitk.WriteImage(image, str(path), useCompression=True)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    grid = sitk.Image([int(s) for s in reader.GetSize()], sitk.sitkUInt8)
    grid.SetSpacing(reader.GetSpacing())
    grid.SetOrigin(reader.GetOrigin())
    grid.SetDirection(reader.GetDirection())
    return grid


def prepare_deeplesion(
    dl_info: str | Path,
    images: str | Path,
    out_dir: str | Path,
    *,
    max_slice_spacing_mm: float = 5.0,
    seed: int = 0,
) -> Summary:
    """Convert DeepLesion into lesion tables and NIfTI volumes in the new folder ``out_dir``.

    Each lesion's seed is where its RECIST axes cross on the key slice (the bounding box's
    centre when they do not cross; counted as ``seeds_from_bounding_box``), mapped to world mm
    through the written NIfTI's own geometry (identity direction, the spacing of
    ``Spacing_mm_px_``, origin ``(0, 0, (first slice - 1) * z spacing)``), so that
    ``TransformPhysicalPointToIndex`` of the seed is the crossing's pixel on the key slice.
    ``Coarse_lesion_type`` becomes DeepLesion's type - 1 (empty for unlabelled lesions); other
    columns are carried through. Lesions of series with a slice spacing above
    ``max_slice_spacing_mm`` and unlabelled lesions of Task 1's splits are skipped and counted.

    Raises:
        DatasetError: every problem (missing columns, malformed fields, missing or unreadable
            slices), one per line; nothing is written.
    """
    dl_info, images, out_dir = Path(dl_info), Path(images), Path(out_dir)
    problems = Problems()
    inputs = {"dl_info": dl_info, "images": images, "max_slice_spacing_mm": max_slice_spacing_mm}
    summary = Summary("deeplesion", inputs | {"seed": seed})
    if not dl_info.is_file():
        raise DatasetError(f"{dl_info}: DL_info.csv does not exist; give --dl-info")
    if not images.is_dir():
        raise DatasetError(f"{images}: Images_png folder does not exist; give --images")
    info = pd.read_csv(dl_info, dtype=str, keep_default_na=False)
    if not check_columns(info, REQUIRED, dl_info, problems):
        problems.raise_if_any()
    parsed = _parse(info, dl_info, problems)
    lesions = _lesions(dl_info, info, parsed, images, max_slice_spacing_mm, summary, problems)
    problems.raise_if_any()
    with prepared_folder(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        seeds: dict[int, tuple[str, tuple[float, ...]]] = {}
        from_box: list[str] = []
        volumes: dict[tuple, list[_Lesion]] = {}
        for lesion in lesions:
            volumes.setdefault((lesion.folder, lesion.slices), []).append(lesion)
        for (folder, slices), members in volumes.items():
            size, spacing = members[0].size, members[0].spacing
            array = _read_volume(images, folder, slices, size, problems)
            if array is None:
                continue
            name = f"images/{folder}_{slices[0]:03d}-{slices[1]:03d}.nii.gz"
            grid = _write_volume(array, spacing, slices[0], tmp / name)
            for lesion in members:
                index = (*lesion.seed_xy, lesion.key - slices[0])
                seeds[lesion.row] = (name, grid.TransformContinuousIndexToPhysicalPoint(index))
                if not lesion.crossing:
                    from_box.append(str(info.iloc[lesion.row]["File_name"]))
        problems.raise_if_any()
        summary.counts["seeds_from_bounding_box"] = {"count": len(from_box), "items": from_box}
        summary.counts["volumes"] = len(volumes)
        tables = _tables(info, seeds, seed, summary)
        for name, table in tables.items():
            write_table(table, tmp / f"{name}.csv")
            summary.tables[name] = len(table)
        write_json(summary.to_dict(), tmp / SUMMARY_NAME)
    return summary


def _tables(
    info: pd.DataFrame, seeds: dict[int, tuple[str, tuple]], seed: int, summary: Summary
) -> dict[str, pd.DataFrame]:
    rows = sorted(seeds)
    table = info.iloc[rows].reset_index(drop=True)
    coords = pd.DataFrame([seeds[r][1] for r in rows], columns=list(COORD_COLUMNS))
    table.insert(0, "image_path", [seeds[r][0] for r in rows])
    for i, column in enumerate(COORD_COLUMNS):
        table.insert(1 + i, column, coords[column])
    kind = pd.to_numeric(table["Coarse_lesion_type"], errors="coerce")
    table["Coarse_lesion_type"] = (kind - 1).where(kind >= 1).astype("Int64")
    split = pd.to_numeric(table["Train_Val_Test"], errors="coerce")
    labelled = table["Coarse_lesion_type"].notna()
    for name in table.loc[split.isin([2, 3]) & ~labelled, "File_name"]:
        summary.skip("no coarse lesion type in a labelled split (Train_Val_Test 2 or 3)", name)
    for name in table.loc[~split.isin([1, 2, 3]), "File_name"]:
        summary.skip("Train_Val_Test is not 1, 2 or 3", name)
    test = table[(split == 3) & labelled].copy()
    halves = split_patients(
        test["Patient_index"], ("val", "test"), (0.5, 0.5), seed, strata=test["Coarse_lesion_type"]
    )
    return {
        "pretrain": table[split == 1],
        "task1_train": table[(split == 2) & labelled],
        "task1_val": test[halves == "val"],
        "task1_test": test[halves == "test"],
    }
