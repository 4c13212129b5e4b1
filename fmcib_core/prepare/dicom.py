"""DICOM for the converters: an index of a folder tree by UIDs, CT series reading, and DICOM-SEG
and RTSTRUCT objects turned into masks on an image's grid."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from fmcib_core.io.images import _process_locale_kept
from fmcib_core.prepare.geometry import fill_polygon, index_of_points
from fmcib_core.prepare.report import Problems

__all__ = [
    "DicomIndex",
    "Roi",
    "Segment",
    "build_index",
    "is_dicom_file",
    "read_header",
    "read_rtstruct",
    "read_seg",
    "read_series",
    "referenced_series",
    "series_uid_of_folder",
]

_OFF_GRID = 1e-2  # voxels: how far a SEG frame or an RTSTRUCT plane may lie off the grid
_HEADER_TAGS = [
    "Modality",
    "PatientID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
]


def is_dicom_file(path: Path) -> bool:
    """Whether a file carries the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` suffix."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_header(path: Path, full: bool = False) -> pydicom.Dataset:
    """A DICOM file's dataset (without pixel data unless ``full``).

    Raises:
        ValueError: the file is not readable DICOM (one line, with what to do).
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not full)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"unreadable DICOM ({first})") from err
    if "SOPClassUID" not in ds or "Modality" not in ds:
        raise ValueError("unreadable DICOM (no SOPClassUID or Modality: truncated or not DICOM)")
    return ds


@dataclass
class DicomIndex:
    """The DICOM files under a root, grouped by UIDs (folder names play no part).

    Attributes:
        series: SeriesInstanceUID -> image files of that series (CT and other image modalities).
        series_patient: SeriesInstanceUID -> PatientID.
        series_modality: SeriesInstanceUID -> Modality.
        rtstructs: PatientID -> RTSTRUCT files.
        segs: PatientID -> SEG files.
        ignored: files that are not DICOM (no ``.dcm`` suffix, no preamble).
    """

    series: dict[str, list[Path]] = field(default_factory=dict)
    series_patient: dict[str, str] = field(default_factory=dict)
    series_modality: dict[str, str] = field(default_factory=dict)
    rtstructs: dict[str, list[Path]] = field(default_factory=dict)
    segs: dict[str, list[Path]] = field(default_factory=dict)
    ignored: list[Path] = field(default_factory=list)


def build_index(root: Path, problems: Problems) -> DicomIndex:
    """Index every DICOM file under ``root``; an unreadable one is a problem."""
    index = DicomIndex()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not is_dicom_file(path):
            index.ignored.append(path)
            continue
        try:
            ds = read_header(path)
        except ValueError as err:
            problems.add(path, str(err), "re-download the file or remove it")
            continue
        modality = str(ds.get("Modality", ""))
        patient = str(ds.get("PatientID", ""))
        series = str(ds.get("SeriesInstanceUID", ""))
        if not modality or not series:
            problems.add(path, "DICOM file lacks Modality or SeriesInstanceUID", "re-export it")
        elif modality == "RTSTRUCT":
            index.rtstructs.setdefault(patient, []).append(path)
        elif modality == "SEG":
            index.segs.setdefault(patient, []).append(path)
        elif "ImagePositionPatient" in ds:
            index.series.setdefault(series, []).append(path)
            index.series_patient[series] = patient
            index.series_modality[series] = modality
        else:
            index.ignored.append(path)
    return index


def _slice_order(files: Iterable[Path]) -> list[Path]:
    """Files of one series sorted along the slice normal (by ImagePositionPatient)."""
    keyed = []
    for path in files:
        ds = read_header(path)
        row, col = (
            np.array(ds.ImageOrientationPatient[:3]),
            np.array(ds.ImageOrientationPatient[3:]),
        )
        keyed.append((float(np.dot(np.cross(row, col), np.array(ds.ImagePositionPatient))), path))
    return [path for _, path in sorted(keyed)]


def read_series(files: Iterable[Path]) -> sitk.Image:
    """Read the image files of one series, sorted along the slice normal, as one volume."""
    names = [str(p) for p in _slice_order(files)]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    with _process_locale_kept():
        return reader.Execute()


def series_uid_of_folder(folder: Path) -> str | None:
    """The SeriesInstanceUID of the first image file in a DICOM series folder (None if none)."""
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_dicom_file(path):
            try:
                ds = read_header(path)
            except ValueError:
                continue
            if "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
                return str(ds.SeriesInstanceUID)
    return None


@dataclass
class Segment:
    """One segment of a DICOM-SEG as a mask on the image's grid (axes z, y, x)."""

    number: int
    label: str
    mask: np.ndarray


def referenced_series(ds: pydicom.Dataset) -> set[str]:
    """Series UIDs a SEG (ReferencedSeriesSequence) or RTSTRUCT (RTReferencedSeriesSequence)
    names."""
    found = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                found.add(str(series.SeriesInstanceUID))
    return found


def check_references(ds: pydicom.Dataset, series_uid: str | None, where: Path) -> str | None:
    """Why the object does not belong to the image's series, or None when it does.

    With ``series_uid`` None (the image is no DICOM series) nothing can be checked.
    """
    referenced = referenced_series(ds)
    if series_uid is None or not referenced or series_uid in referenced:
        return None
    return f"references series {', '.join(sorted(referenced))}, not the image's series {series_uid}"


def _functional(ds: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    """A functional group macro of a frame: per-frame if present, else shared."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        items = ds.get(groups)
        if not items:
            continue
        group = items[frame] if groups.startswith("PerFrame") else items[0]
        if sequence in group and len(group[sequence].value):
            return group[sequence].value[0]
    return None


def read_seg(
    path: Path, image: sitk.Image, problems: Problems, where: str | Path | None = None
) -> list[Segment] | None:
    """The segments of a DICOM-SEG placed on ``image``'s grid, or None after a problem.

    Every frame must lie on the image's grid: same orientation and pixel spacing, its position a
    whole voxel offset inside the image. A frame off the grid is a problem (the SEG was made on
    another grid), never a silent misplacement. Problems are reported at ``where`` (default:
    the file).
    """
    where = path if where is None else where
    ds = read_header(path, full=True)
    if ds.get("Modality") != "SEG":
        problems.add(where, f"is a {ds.get('Modality')} object, not a DICOM-SEG", "check mask_path")
        return None
    frames = ds.pixel_array
    frames = frames.reshape(-1, int(ds.Rows), int(ds.Columns))
    if ds.get("SegmentationType") == "FRACTIONAL":
        frames = frames.astype(np.float64) / float(ds.MaximumFractionalValue) >= 0.5
    else:
        frames = frames > 0
    labels = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in ds.SegmentSequence}
    masks = {n: np.zeros(image.GetSize()[::-1], dtype=bool) for n in labels}
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    for f in range(len(frames)):
        ident = _functional(ds, f, "SegmentIdentificationSequence")
        plane = _functional(ds, f, "PlanePositionSequence")
        orient = _functional(ds, f, "PlaneOrientationSequence")
        measures = _functional(ds, f, "PixelMeasuresSequence")
        if None in (ident, plane, orient, measures):
            problems.add(where, f"frame {f + 1} lacks its segment, position, orientation or pixel "
                         "spacing", "re-export the SEG with highdicom or dcmqi")  # fmt: skip
            return None
        iop = np.array(orient.ImageOrientationPatient, dtype=np.float64)
        pixel = np.array(measures.PixelSpacing, dtype=np.float64)  # (between rows, between cols)
        start = index_of_points(image, np.array([plane.ImagePositionPatient], float))[0]
        aligned = (
            np.allclose(iop[:3], direction[:, 0], atol=1e-4)
            and np.allclose(iop[3:], direction[:, 1], atol=1e-4)
            and np.allclose(pixel[::-1], spacing[:2], rtol=1e-4)
            and np.allclose(start, np.round(start), atol=_OFF_GRID)
        )
        i0, j0, k = np.round(start).astype(int)
        fits = (
            i0 >= 0 and j0 >= 0 and 0 <= k < image.GetSize()[2]
            and i0 + frames.shape[2] <= image.GetSize()[0]
            and j0 + frames.shape[1] <= image.GetSize()[1]
        )  # fmt: skip
        if not (aligned and fits):
            problems.add(
                where,
                f"frame {f + 1} does not lie on the image's voxel grid (position "
                f"{np.round(plane.ImagePositionPatient, 3).tolist()} mm = index "
                f"{np.round(start, 2).tolist()}, orientation {iop.round(4).tolist()}, pixel "
                f"spacing {pixel.tolist()} mm vs image spacing {spacing.round(4).tolist()} mm)",
                "export the SEG on the image's own series",
            )
            return None
        number = int(ident.ReferencedSegmentNumber)
        if number not in masks:
            problems.add(where, f"frame {f + 1} names segment {number}, which is not defined",
                         "re-export the SEG")  # fmt: skip
            return None
        masks[number][k, j0 : j0 + frames.shape[1], i0 : i0 + frames.shape[2]] |= frames[f]
    return [Segment(n, labels[n], masks[n]) for n in sorted(masks)]


@dataclass
class Roi:
    """One ROI of an RTSTRUCT: its number, name and closed planar contours (world mm, LPS)."""

    number: int
    name: str
    contours: list[np.ndarray]


def read_rtstruct(ds: pydicom.Dataset) -> list[Roi]:
    """The ROIs of an RTSTRUCT dataset with their CLOSED_PLANAR contours, in ROI order."""
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    contours: dict[int, list[np.ndarray]] = {n: [] for n in names}
    for item in ds.get("ROIContourSequence", []):
        number = int(item.ReferencedROINumber)
        for contour in item.get("ContourSequence", []):
            if contour.get("ContourGeometricType", "CLOSED_PLANAR") != "CLOSED_PLANAR":
                continue
            points = np.array(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            contours.setdefault(number, []).append(points)
    return [Roi(n, names.get(n, str(n)), contours[n]) for n in sorted(contours)]


def matching_rois(rois: list[Roi], pattern: str | None) -> list[Roi]:
    """The ROIs whose name matches ``pattern`` (``re.search``, case-insensitive); all if None."""
    if pattern is None:
        return rois
    regex = re.compile(pattern, re.IGNORECASE)
    return [roi for roi in rois if regex.search(roi.name)]


def rasterise_roi(
    roi: Roi, image: sitk.Image, where: Path, problems: Problems
) -> np.ndarray | None:
    """The ROI's voxels on ``image``'s grid (axes z, y, x): pixel centres inside its contours.

    Each contour must lie in one slice plane of the image (within 1/100 voxel). Contours on the
    same slice combine by the even-odd rule, so a contour inside another is a hole.
    """
    size = image.GetSize()
    mask = np.zeros(size[::-1], dtype=bool)
    for n, points in enumerate(roi.contours):
        index = index_of_points(image, points)
        k = float(np.round(index[:, 2].mean()))
        if np.any(np.abs(index[:, 2] - k) > _OFF_GRID) or not 0 <= k < size[2]:
            problems.add(
                where,
                f"ROI '{roi.name}' contour {n + 1} does not lie on a slice of the image (slice "
                f"index {np.round(index[:, 2].min(), 3)}..{np.round(index[:, 2].max(), 3)})",
                "check that the RTSTRUCT was drawn on this CT series",
            )
            return None
        mask[int(k)] ^= fill_polygon(index[:, :2], (size[1], size[0]))
    return mask
