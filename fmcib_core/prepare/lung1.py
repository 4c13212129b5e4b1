"""NSCLC-Radiomics (LUNG1) -> Task 3's tables (docs/method.md section 8).

Input: a folder tree holding the DICOM CT series and one RTSTRUCT per patient in any layout
(series are found by their UIDs, never by folder names), and the clinical CSV with
``PatientID``, ``Survival.time`` (days) and ``deadstatus.event`` (0/1). Each seed is the
centroid of the rasterised ROI matching ``GTV-1`` (case-insensitive; configurable) on the CT
series the RTSTRUCT references. Output, in a new folder: ``lung1.csv`` (every patient), with a
split ``task3_train.csv``, ``task3_val.csv``, ``task3_test.csv``, and ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fmcib_core.io.tables import COORD_COLUMNS
from fmcib_core.prepare import dicom
from fmcib_core.prepare.geometry import mask_seed
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

__all__ = ["CLINICAL_COLUMNS", "DEFAULT_ROI", "SURVIVAL_DAYS", "prepare_lung1", "survival_labels"]

CLINICAL_COLUMNS = ("PatientID", "Survival.time", "deadstatus.event")
DEFAULT_ROI = r"^gtv-1$"
SURVIVAL_DAYS = 730
CENSORED = f"censored before {SURVIVAL_DAYS} days (survival left empty, not in task3 tables)"


def survival_labels(time: pd.Series, event: pd.Series) -> pd.Series:
    """1 if alive after 730 days, 0 if dead by then, missing when censored before (unknown)."""
    alive = time > SURVIVAL_DAYS
    dead = ~alive & (event == 1)
    return pd.Series(np.where(alive, 1, np.where(dead, 0, np.nan)), index=time.index).astype(
        "Int64"
    )


def _clinical(path: Path, problems: Problems) -> pd.DataFrame | None:
    if not path.is_file():
        problems.add(path, "clinical CSV does not exist", "give --clinical")
        return None
    table = pd.read_csv(path)
    if not check_columns(table, CLINICAL_COLUMNS, path, problems):
        return None
    table["PatientID"] = table["PatientID"].astype(str)
    for patient in sorted(table.loc[table["PatientID"].duplicated(), "PatientID"].unique()):
        problems.add(path, f"PatientID '{patient}' appears more than once", "keep one row")
    for column, rule in (("Survival.time", "a number of days >= 0"), ("deadstatus.event", "0/1")):
        values = pd.to_numeric(table[column], errors="coerce")
        ok = values.notna() & ((values >= 0) if column == "Survival.time" else values.isin([0, 1]))
        for pos in np.flatnonzero(~ok.to_numpy()):
            problems.add(
                f"{path}: row {pos + 1}: column '{column}'",
                f"value '{table[column].iloc[pos]}' is not {rule}",
                "fix the row",
            )
        table[column] = values
    return table


def _roi_seed(
    patient: str,
    index: dicom.DicomIndex,
    roi: str,
    skip_missing_roi: bool,
    summary: Summary,
    problems: Problems,
) -> tuple[str, str, sitk.Image, np.ndarray] | None:
    """(series UID, ROI name, CT grid, ROI mask) of a patient, or None (skipped or a problem)."""
    found = []
    names = []
    for path in index.rtstructs[patient]:
        ds = dicom.read_header(path, full=True)
        rois = dicom.read_rtstruct(ds)
        names += [r.name for r in rois]
        referenced = sorted(dicom.referenced_series(ds) & set(index.series))
        patient_series = [s for s, p in index.series_patient.items() if p == patient]
        if not referenced and len(patient_series) == 1:
            referenced = patient_series
        if len(referenced) != 1:
            problems.add(
                path,
                f"references {len(referenced)} of the CT series found under the root",
                "put the CT series the RTSTRUCT was drawn on under the root",
            )
            return None
        found += [(path, referenced[0], r) for r in dicom.matching_rois(rois, roi)]
    if not found:
        if skip_missing_roi:
            summary.skip(f"no ROI matches '{roi}'", patient)
            return None
        shown = ", ".join(f"'{n}'" for n in names) or "none"
        problems.add(
            index.rtstructs[patient][0],
            f"no ROI matches '{roi}' (ROIs: {shown})",
            "change --roi, or pass --skip-missing-roi to leave such patients out",
        )
        return None
    if len(found) > 1:
        problems.add(
            found[0][0],
            f"{len(found)} ROIs match '{roi}' ({', '.join(repr(f[2].name) for f in found)})",
            "make --roi stricter",
        )
        return None
    path, series, chosen = found[0]
    try:
        grid = dicom.read_series(index.series[series])
    except (RuntimeError, ValueError) as err:
        problems.add(
            index.series[series][0].parent,
            f"CT series {series} cannot be read ({err})",
            "re-download the series",
        )
        return None
    mask = dicom.rasterise_roi(chosen, grid, path, problems)
    return None if mask is None else (series, chosen.name, grid, mask)


def _image_path(files: list[Path]) -> Path | None:
    """The series' folder when it holds that series alone (a readable image_path), else None."""
    folders = {p.parent for p in files}
    if len(folders) != 1:
        return None
    folder = folders.pop()
    others = [p for p in folder.iterdir() if p.is_file() and dicom.is_dicom_file(p)]
    return folder.resolve() if len(others) == len(files) else None


def _patient_row(
    patient: str,
    index: dicom.DicomIndex,
    roi: str,
    skip_missing_roi: bool,
    out_dir: Path,
    summary: Summary,
    problems: Problems,
) -> dict | None:
    """A patient's table row; its CT series is written to ``out_dir/images`` when its folder
    is no usable image_path."""
    found = _roi_seed(patient, index, roi, skip_missing_roi, summary, problems)
    if found is None:
        return None
    series, name, grid, mask = found
    seed_point = mask_seed(grid, mask)
    if seed_point is None:
        summary.skip(f"ROI '{name}' covers no voxel centre", patient)
        return None
    folder = _image_path(index.series[series])
    if folder is None:
        image_path = f"images/{patient}.nii.gz"
        sitk.WriteImage(grid, str(out_dir / image_path), useCompression=True)
    else:
        image_path = str(folder)
    return {
        "image_path": image_path,
        **dict(zip(COORD_COLUMNS, seed_point.point, strict=True)),
        "PatientID": patient,
        "series_uid": series,
        "roi_name": name,
        "mask_volume_mm3": seed_point.volume_mm3,
    }


def _tables(
    rows: list[dict],
    clinical: pd.DataFrame,
    split: Sequence[float] | None,
    seed: int,
    summary: Summary,
) -> dict[str, pd.DataFrame]:
    lesions = pd.DataFrame(rows).merge(clinical, on="PatientID", how="left", validate="1:1")
    labels = survival_labels(lesions["Survival.time"], lesions["deadstatus.event"])
    at = lesions.columns.get_loc("mask_volume_mm3") + 1
    lesions.insert(at, "survival", labels)
    lesions.insert(at + 1, "survival_time", lesions["Survival.time"])
    lesions.insert(at + 2, "event", lesions["deadstatus.event"].astype(int))
    for patient in lesions.loc[lesions["survival"].isna(), "PatientID"]:
        summary.skip(CENSORED, patient)
    tables = {"lung1": lesions}
    if split is not None:
        known = lesions[lesions["survival"].notna()]
        names = split_patients(
            known["PatientID"], ("train", "val", "test"), split, seed, strata=known["survival"]
        )
        tables |= {f"task3_{s}": known[names == s] for s in ("train", "val", "test")}
    return tables


def prepare_lung1(
    dicom_root: str | Path,
    clinical: str | Path,
    out_dir: str | Path,
    *,
    roi: str = DEFAULT_ROI,
    split: Sequence[float] | None = None,
    seed: int = 0,
    skip_missing_roi: bool = False,
) -> Summary:
    """Convert LUNG1 into ``lung1.csv`` (and, with ``split`` fractions, Task 3's tables).

    ``image_path`` is the CT series' folder when the series is alone in it, else a NIfTI of the
    series written under ``images/`` (always created, empty when every series is alone).
    Columns: image_path, coordX/Y/Z, PatientID, ``series_uid``, ``roi_name``,
    ``mask_volume_mm3``, ``survival`` (Survival.time > 730), ``survival_time``, ``event``, then
    every clinical column.

    Raises:
        DatasetError: every problem (unreadable DICOM, an RTSTRUCT without the ROI, bad clinical
            rows, ...), one per line; nothing is written.
    """
    dicom_root, clinical, out_dir = Path(dicom_root), Path(clinical), Path(out_dir)
    inputs = {"dicom": dicom_root, "clinical": clinical, "roi": roi, "split": split, "seed": seed}
    summary = Summary("lung1", inputs)
    problems = Problems()
    if not dicom_root.is_dir():
        raise DatasetError(f"{dicom_root}: DICOM folder does not exist; give --dicom")
    table = _clinical(clinical, problems)
    index = dicom.build_index(dicom_root, problems)
    summary.counts["files_ignored"] = len(index.ignored)
    # Problems so far do not stop the checks of every patient below: all are reported together.
    clinical_ids = set(index.rtstructs) if table is None else set(table["PatientID"])
    ct_patients = {p for s, p in index.series_patient.items() if index.series_modality[s] == "CT"}
    for patient in sorted(clinical_ids - ct_patients):
        summary.skip("no CT series under the DICOM folder", patient)
    for patient in sorted(ct_patients - clinical_ids):
        summary.skip("no row in the clinical CSV", patient)
    for patient in sorted((ct_patients & clinical_ids) - set(index.rtstructs)):
        summary.skip("no RTSTRUCT", patient)
    with prepared_folder(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        rows = []
        for patient in sorted((ct_patients & clinical_ids) & set(index.rtstructs)):
            row = _patient_row(patient, index, roi, skip_missing_roi, tmp, summary, problems)
            if row is not None:
                rows.append(row)
        problems.raise_if_any()
        if not rows:
            raise DatasetError(
                f"{dicom_root}: no patient has a CT series, an RTSTRUCT with the ROI and a "
                "clinical row; check --dicom and --clinical"
            )
        for name, frame in _tables(rows, table, split, seed, summary).items():
            write_table(frame, tmp / f"{name}.csv")
            summary.tables[name] = len(frame)
        write_json(summary.to_dict(), tmp / SUMMARY_NAME)
    return summary
