"""Seeds from segmentation masks: one seed per label, component, segment or ROI of a user's masks.

The input table has ``image_path`` and ``mask_path`` (relative paths are taken from the table's
folder) and any other columns. A mask is a label map SimpleITK reads (NIfTI, NRRD, ...), a
DICOM-SEG or an RTSTRUCT. Each seed is the centroid of its voxels on the image's grid, mapped to
world mm (LPS) through the image's geometry. See docs/method.md section 8.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.images import ImageReadError
from fmcib_core.io.tables import COORD_COLUMNS, read_table
from fmcib_core.prepare import dicom
from fmcib_core.prepare.geometry import (
    grid_differences,
    image_grid,
    mask_seed,
    resample_nearest,
)
from fmcib_core.prepare.report import (
    DatasetError,
    Problems,
    Summary,
    check_columns,
    write_json,
    write_table,
)

__all__ = ["NEW_COLUMNS", "MaskOptions", "seeds_from_masks", "summary_path"]

NEW_COLUMNS = (*COORD_COLUMNS, "mask_label", "roi_name", "mask_voxels", "mask_volume_mm3")


@dataclass(frozen=True)
class MaskOptions:
    """How masks become seeds.

    Attributes:
        components: one seed per connected component (26-connected) of each label of a label
            map or segment of a SEG, instead of one per label.
        roi: a regular expression (case-insensitive ``re.search``) an RTSTRUCT ROI's name must
            match; None for every ROI. An RTSTRUCT with no matching ROI is a problem.
        resample: a label map on another grid than its image is resampled onto the image's grid
            by nearest neighbour; without it, that is a problem.
    """

    components: bool = False
    roi: str | None = None
    resample: bool = False


def summary_path(out: str | Path) -> Path:
    """The summary JSON beside an output table: ``seeds.csv`` -> ``seeds.summary.json``."""
    out = Path(out)
    return out.with_name(out.name.split(".")[0] + ".summary.json")


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """The 26-connected components of a boolean (z, y, x) mask, largest first."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    labels = sitk.RelabelComponent(sitk.ConnectedComponent(image, True), sortByObjectSize=True)
    array = sitk.GetArrayFromImage(labels)
    return [array == value for value in range(1, int(array.max()) + 1)]


def _label_map_masks(
    mask_file: Path, grid: sitk.Image, options: MaskOptions, problems: Problems, where: str
) -> list[tuple[int, str, np.ndarray]] | None:
    try:
        label_map = sitk.ReadImage(str(mask_file))
    except RuntimeError:
        problems.add(where, "mask cannot be read", "give a label map (NIfTI, NRRD), a SEG or "
                     "an RTSTRUCT")  # fmt: skip
        return None
    if label_map.GetNumberOfComponentsPerPixel() != 1 or label_map.GetDimension() != 3:
        problems.add(where, "mask is not a 3D single-component label map", "re-export it")
        return None
    differences = grid_differences(label_map, grid)
    if differences and not options.resample:
        problems.add(
            where,
            f"mask's voxel grid differs from its image's ({'; '.join(differences)})",
            "pass --resample to resample it onto the image's grid (nearest neighbour), or "
            "export the mask on the image's grid",
        )
        return None
    if differences:
        label_map = resample_nearest(label_map, grid)
    values = sitk.GetArrayFromImage(label_map)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        problems.add(where, "mask holds non-integer values", "give an integer label map")
        return None
    return [(int(v), "", values == v) for v in np.unique(values) if v != 0]


def _dicom_masks(
    mask_file: Path,
    image_file: Path,
    grid: sitk.Image,
    options: MaskOptions,
    problems: Problems,
    where: str,
) -> list[tuple[int, str, np.ndarray]] | None:
    try:
        ds = dicom.read_header(mask_file)
    except ValueError as err:
        problems.add(where, str(err), "re-export the mask")
        return None
    series = dicom.series_uid_of_folder(image_file) if image_file.is_dir() else None
    wrong = dicom.check_references(ds, series, image_file)
    if wrong is not None:
        problems.add(where, wrong, "pair each mask with the CT series it was drawn on")
        return None
    if ds.get("Modality") == "SEG":
        segments = dicom.read_seg(mask_file, grid, problems, where)
        return None if segments is None else [(s.number, s.label, s.mask) for s in segments]
    if ds.get("Modality") != "RTSTRUCT":
        problems.add(where, f"DICOM {ds.get('Modality')} object is no mask",
                     "give a DICOM-SEG, an RTSTRUCT or a label map")  # fmt: skip
        return None
    rois = dicom.read_rtstruct(dicom.read_header(mask_file, full=True))
    chosen = dicom.matching_rois(rois, options.roi)
    if not chosen:
        names = ", ".join(f"'{r.name}'" for r in rois) or "none"
        problems.add(where, f"no ROI matches --roi '{options.roi}' (ROIs: {names})",
                     "change --roi or the mask")  # fmt: skip
        return None
    out = []
    for roi in chosen:
        mask = dicom.rasterise_roi(roi, grid, where, problems)
        if mask is None:
            return None
        out.append((roi.number, roi.name, mask))
    return out


def _relative_to(path: str, source_dir: Path, out_dir: Path) -> str:
    """A path of the input table, rewritten to stay valid from the output table's folder."""
    if Path(path).is_absolute():
        return path
    return os.path.relpath((source_dir / path).resolve(), out_dir.resolve())


def seeds_from_masks(
    table_path: str | Path, out: str | Path, options: MaskOptions = MaskOptions()
) -> Summary:
    """Write the lesion table ``out`` (CSV) with one seed per mask object, and its summary.

    Output columns: the input's columns (``image_path`` and ``mask_path`` rewritten relative to
    ``out``'s folder when they were relative), then ``coordX/Y/Z`` (world mm, LPS),
    ``mask_label`` (label value, segment number or ROI number), ``roi_name`` (SEG segment label
    or ROI name; empty for label maps), ``mask_component`` (with ``components``),
    ``mask_voxels`` and ``mask_volume_mm3``. Empty masks and objects are skipped and counted in
    ``summary_path(out)``.

    Raises:
        DatasetError / TableError: every problem of the table, one per line; nothing is written.
    """
    table_path, out = Path(table_path), Path(out)
    table = read_table(table_path)
    problems = Problems()
    summary = Summary("masks", {"table": str(table_path), **dataclasses.asdict(options)})
    check_columns(table, ("image_path", "mask_path"), table_path, problems)
    taken = [c for c in (*NEW_COLUMNS, "mask_component") if c in table.columns]
    for column in taken:
        problems.add(table_path, f"column '{column}' already exists", "remove it (it is computed)")
    problems.raise_if_any()
    base = table_path.resolve().parent
    rows, grids = [], {}
    for pos, record in enumerate(table.to_dict("records")):
        where = f"{table_path}: row {pos + 1}: {record['mask_path']}"
        image_file, mask_file = base / str(record["image_path"]), base / str(record["mask_path"])
        if not mask_file.is_file():
            what = "is a folder" if mask_file.is_dir() else "does not exist"
            problems.add(where, f"mask '{mask_file}' {what}", "give a mask file in mask_path")
            continue
        if image_file not in grids:
            try:
                grids[image_file] = image_grid(image_file)
            except ImageReadError as err:
                problems.add_message(where, str(err))
                grids[image_file] = None
        grid = grids[image_file]
        if grid is None:
            continue
        if dicom.is_dicom_file(mask_file):
            objects = _dicom_masks(mask_file, image_file, grid, options, problems, where)
        else:
            objects = _label_map_masks(mask_file, grid, options, problems, where)
        if objects is None:
            continue
        if not objects:
            summary.skip("mask has no labelled voxel", f"row {pos + 1}: {mask_file}")
        for label, name, mask in objects:
            if not mask.any():
                summary.skip("segment or ROI has no voxel", f"row {pos + 1}: {name or label}")
                continue
            parts = _components(mask) if options.components else [mask]
            for component, part in enumerate(parts, start=1):
                seed = mask_seed(grid, part)
                row = dict(zip(COORD_COLUMNS, seed.point, strict=True))
                row |= {"mask_label": label, "roi_name": name}
                if options.components:
                    row["mask_component"] = component
                row |= {"mask_voxels": seed.voxels, "mask_volume_mm3": seed.volume_mm3}
                rows.append(record | row)
    problems.raise_if_any()
    if not rows:
        raise DatasetError(f"{table_path}: no mask holds a labelled voxel; check the masks")
    result = pd.DataFrame(rows)
    for column in ("image_path", "mask_path"):
        result[column] = result[column].map(lambda p: _relative_to(str(p), base, out.parent))
    summary.tables[out.name] = len(result)
    summary.counts["masks"] = len(table)
    with atomic_path(out) as tmp_table, atomic_path(summary_path(out)) as tmp_summary:
        write_table(result, tmp_table)
        write_json(summary.to_dict(), tmp_summary)
    return summary
