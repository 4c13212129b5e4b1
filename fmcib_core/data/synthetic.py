"""Synthetic CT demo data: phantom torsos with labelled lesions, in the real table format.

Every volume is built from a few analytic shapes evaluated on the voxel grid in world
millimetres (LPS): an elliptic body outline whose size varies along z, subcutaneous fat and
muscle, lungs above a domed diaphragm, heart, aorta and vena cava, liver, spleen, kidneys,
bladder, bowel and visceral fat, vertebrae with discs and spinal canal, ribs, sternum and pelvic
bones. Lesions of the eight coarse types are painted where that type lives. The same tissue
function places the lesions and renders the voxels, so a lung nodule is in lung by construction.

Coarse lesion types follow DeepLesion's ``Coarse_lesion_type`` minus one (see ``LESION_TYPES``):
0 bone (vertebral body), 1 abdomen (abdominal soft tissue), 2 mediastinum (lymph node beside the
aorta), 3 liver, 4 lung (nodule), 5 kidney, 6 soft tissue (body wall), 7 pelvis (lowest part).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from fmcib_core.io.atomic import atomic_path

__all__ = ["LESION_TYPES", "SCALES", "SURVIVAL_HORIZON_DAYS", "make_demo_dataset"]

log = logging.getLogger(__name__)

SURVIVAL_HORIZON_DAYS = 730  # Task 3 label: alive at 2 years
_LABEL_NOISE = 0.12  # Task 2 labels flipped at random
_CLASS_SHIFT = 0.8  # malignant vs benign mean of size and enhancement, in standard deviations
_SLAB = 32  # slices rendered at once: bounds memory on full-size volumes
_HALO = 3  # extra slices on each side of a slab so that smoothing is seamless
_SMOOTH_SIGMA = (0.4, 0.6, 0.6)  # voxels (z, y, x): partial-volume blur


class _T(IntEnum):
    """Tissue labels of the phantom; ``_tissue_hu`` gives their HU."""

    AIR = 0
    FAT = 1  # subcutaneous
    MUSCLE = 2
    SOFT = 3  # mediastinum
    VFAT = 4  # visceral fat
    BOWEL = 5
    GAS = 6
    LIVER = 7
    SPLEEN = 8
    KIDNEY = 9
    SINUS = 10  # renal sinus fat
    BLADDER = 11
    HEART = 12
    LUNG = 13
    ARTERY = 14
    VEIN = 15
    CANCELLOUS = 16
    CORTICAL = 17
    DISC = 18
    CSF = 19
    RIB = 20  # also sternum and pelvic bones


class _Kind(IntEnum):
    """Coarse lesion types: DeepLesion's ``Coarse_lesion_type`` minus one."""

    BONE = 0
    ABDOMEN = 1
    MEDIASTINUM = 2
    LIVER = 3
    LUNG = 4
    KIDNEY = 5
    SOFT_TISSUE = 6
    PELVIS = 7


LESION_TYPES = tuple(kind.name.lower() for kind in _Kind)
SCALES = ("demo", "medium", "full")


@dataclass(frozen=True)
class _KindSpec:
    size_mm: float  # median diameter in an adult-sized body
    t_range: tuple[float, float]  # where along the body it is proposed (0 pelvis .. 1 apex)
    centre_in: tuple[_T, ...]  # tissues its centre may lie in
    around_in: tuple[_T, ...] | None  # tissues at +-0.6 radius along each axis (None: any)
    hu: tuple[float, float, float]  # HU = a + b * enhancement + c * contrast
    texture_hu: float = 90.0  # texture amplitude at full heterogeneity
    halo_hu: float | None = None  # fat rim around the lesion


_BELLY = (_T.VFAT, _T.BOWEL, _T.GAS, _T.MUSCLE)
_KINDS = {
    # Malignant bone lesions are lytic (darker), benign ones sclerotic.
    _Kind.BONE: _KindSpec(16, (0.12, 0.9), (_T.CANCELLOUS,), (_T.CANCELLOUS, _T.CORTICAL, _T.DISC),
                          (550, -300, 0), texture_hu=300),
    _Kind.ABDOMEN: _KindSpec(26, (0.22, 0.48), (_T.VFAT, _T.BOWEL), _BELLY, (40, 25, 20)),
    _Kind.MEDIASTINUM: _KindSpec(16, (0.3, 0.88), (_T.SOFT, _T.VFAT, _T.BOWEL, _T.MUSCLE), None,
                                 (40, 25, 10), halo_hu=-80),
    _Kind.LIVER: _KindSpec(22, (0.42, 0.6), (_T.LIVER,), (_T.LIVER,), (10, 20, 50)),
    _Kind.LUNG: _KindSpec(14, (0.68, 1.0), (_T.LUNG,), (_T.LUNG,), (25, 20, 0)),
    _Kind.KIDNEY: _KindSpec(20, (0.3, 0.44), (_T.KIDNEY, _T.SINUS),
                            (_T.KIDNEY, _T.SINUS, _T.FAT, _T.VFAT), (25, 40, 50)),
    _Kind.SOFT_TISSUE: _KindSpec(22, (0.1, 0.9), (_T.FAT, _T.MUSCLE), None, (45, 20, 0)),
    _Kind.PELVIS: _KindSpec(26, (0.0, 0.2), (_T.VFAT, _T.BOWEL, _T.MUSCLE),
                            (*_BELLY, _T.BLADDER), (40, 25, 20)),
}  # fmt: skip

# Tissue -> (HU without contrast, HU added at full contrast enhancement).
_TISSUE_HU = {
    _T.AIR: (-1000, 0), _T.FAT: (-100, 0), _T.MUSCLE: (50, 0), _T.SOFT: (35, 0),
    _T.VFAT: (-90, 0), _T.BOWEL: (30, 0), _T.GAS: (-950, 0), _T.LIVER: (55, 50),
    _T.SPLEEN: (45, 60), _T.KIDNEY: (35, 150), _T.SINUS: (-40, 0), _T.BLADDER: (5, 0),
    _T.HEART: (40, 110), _T.LUNG: (-860, 0), _T.ARTERY: (40, 160), _T.VEIN: (40, 90),
    _T.CANCELLOUS: (650, 0), _T.CORTICAL: (1150, 0), _T.DISC: (90, 0), _T.CSF: (15, 0),
    _T.RIB: (750, 0),
}  # fmt: skip

# Organ ellipsoids in body-normalised coordinates: u (left +), v (posterior +) in units of the
# body's semi-axes, t (superior +) in units of the anatomy's length; t = 0 pelvis, t = 1 apex.
_ORGANS = {
    "liver": ((-0.36, -0.05, 0.50), (0.42, 0.60, 0.14), _T.LIVER),
    "spleen": ((0.50, 0.30, 0.52), (0.14, 0.22, 0.09), _T.SPLEEN),
    "kidney_r": ((-0.36, 0.42, 0.36), (0.13, 0.17, 0.10), _T.KIDNEY),
    "kidney_l": ((0.36, 0.42, 0.38), (0.13, 0.17, 0.10), _T.KIDNEY),
    "bladder": ((0.0, -0.30, 0.05), (0.25, 0.22, 0.08), _T.BLADDER),
    "lung_r": ((-0.46, 0.0, 0.90), (0.27, 0.62, 0.25), _T.LUNG),
    "lung_l": ((0.46, 0.0, 0.90), (0.27, 0.62, 0.25), _T.LUNG),
    "heart": ((0.10, -0.28, 0.66), (0.30, 0.32, 0.10), _T.HEART),
}


@dataclass(frozen=True)
class _ScaleSpec:
    n_cases: int
    inplane: tuple[int, int]  # voxels per side
    fov_mm: tuple[float, float]
    spacing_xy: tuple[float, float]
    spacing_z: tuple[float, ...]
    slices: tuple[int, int]
    extent_mm: tuple[float, float]  # wanted z extent; slices are clipped to ``slices``
    extra_lesions: tuple[int, int]  # beyond one lesion of every type


_DEMO = _ScaleSpec(
    n_cases=28,
    inplane=(128, 192),
    fov_mm=(120, 160),
    spacing_xy=(0.7, 0.9),
    spacing_z=(1.25, 2.0, 2.5, 3.0, 5.0),
    slices=(30, 70),
    extent_mm=(140, 210),
    extra_lesions=(1, 4),
)
_SPECS = {
    "demo": _DEMO,
    "medium": replace(_DEMO, n_cases=96),
    "full": _ScaleSpec(
        n_cases=3,
        inplane=(512, 512),
        fov_mm=(340, 400),
        spacing_xy=(0.66, 0.78),
        spacing_z=(1.25,),
        slices=(280, 320),
        extent_mm=(350, 400),
        extra_lesions=(2, 6),
    ),
}


@dataclass
class _Case:
    """Geometry and anatomy parameters of one phantom; all lengths in mm, world LPS."""

    case_id: str
    shape: tuple[int, int, int]  # (nz, ny, nx) of the LPS-ordered array
    spacing: tuple[float, float, float]  # (x, y, z)
    origin: tuple[float, float, float]  # world position of LPS-ordered voxel (0, 0, 0)
    ras_stored: bool
    centre: tuple[float, float]  # body centre x, y
    semi_axes: tuple[float, float]  # body semi-axes along x and y
    wobble: np.ndarray  # (amp_x, amp_y, cycles, phase_x, phase_y) of the outline along t
    t_map: tuple[float, float]  # z at t = 0, mm per unit t
    fat_r: float  # normalised radius where subcutaneous fat starts
    muscle_r: float  # normalised radius where the body's interior starts
    contrast: float  # 0 (no contrast) .. 1 (strong arterial/venous enhancement)
    organs: dict[str, tuple[np.ndarray, np.ndarray, _T]]  # centre, semi-axes, tissue
    spine: np.ndarray  # (vertebral radius, disc period in t, disc phase, aorta radius)
    ribs: np.ndarray  # (period in t, phase, slope)
    bowel: np.ndarray  # plane waves (terms, 4) of the bowel/fat pattern
    lung_tex: np.ndarray  # plane waves of the lung parenchyma
    noise_sd: float

    def z_of_t(self, t):
        """World z (mm) of body height ``t``."""
        return self.t_map[0] + t * self.t_map[1]


@dataclass
class _Lesion:
    """One lesion's shape and intensity; ``row`` holds what the tables report."""

    kind: _Kind
    centre: np.ndarray  # world LPS (x, y, z), rounded to 1 um
    radius: float
    axes: np.ndarray  # per-axis stretch (x, y, z)
    hu: float
    texture: np.ndarray  # plane waves (terms, 4)
    texture_hu: float
    necrosis_hu: float
    lobes: np.ndarray  # (3, 5): unit direction, cycles, phase
    lobe_amp: float
    spikes: np.ndarray  # (n, 4): unit direction, length (fraction of the radius)
    halo_hu: float | None
    row: dict


def _waves(spec: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean of plane waves sin(k . p + phase): a smooth, roughly isotropic field in [-1, 1].

    ``spec`` is (terms, 4): wave vector (rad/mm) and phase. The in-plane and z phases are
    combined with the angle-sum identity so that a grid costs a few passes, not one sine per voxel.
    """
    out = np.float32(0.0)
    for kx, ky, kz, phase in spec.tolist():
        plane, along = kx * x + ky * y, kz * z + phase
        out = out + np.sin(plane) * np.cos(along) + np.cos(plane) * np.sin(along)
    return (out / len(spec)).astype(np.float32)


def _body_frame(case: _Case, x, y, z):
    """Body coordinates (u, v, t) and the outline's y semi-axis of world points (broadcast)."""
    t = ((z - case.t_map[0]) / case.t_map[1]).astype(np.float32)
    half_x, half_y = _half_axes(case, t)
    u = ((x - case.centre[0]) / half_x).astype(np.float32)
    v = ((y - case.centre[1]) / half_y).astype(np.float32)
    return u, v, t, half_y.astype(np.float32)


def _put(labels: np.ndarray, mask: np.ndarray, tissue: _T) -> None:
    """Set ``labels`` to ``tissue`` where ``mask`` (broadcast) holds; later calls win."""
    np.putmask(labels, np.broadcast_to(mask, labels.shape), tissue)


def _tissue_labels(case: _Case, x, y, z) -> np.ndarray:
    """Tissue label of world points (x, y, z in mm, broadcastable, e.g. a grid's three axes)."""
    u, v, t, half_y = _body_frame(case, x, y, z)
    r2 = u * u + v * v
    labels = np.zeros(np.broadcast_shapes(u.shape, v.shape, t.shape), np.uint8)
    _put(labels, r2 <= 1.0, _T.FAT)
    _put(labels, r2 <= case.fat_r**2, _T.MUSCLE)
    interior = r2 <= case.muscle_r**2
    thorax = t >= 0.6
    _put(labels, interior & thorax, _T.SOFT)
    bowel = _waves(case.bowel, x, y, z)
    belly = interior & ~thorax
    _put(labels, belly, _T.VFAT)
    _put(labels, belly & (bowel > 0.0), _T.BOWEL)
    _put(labels, belly & (bowel > 0.4) & (v < 0), _T.GAS)
    for c, a, tissue in case.organs.values():
        q = ((u - c[0]) / a[0]) ** 2 + ((v - c[1]) / a[1]) ** 2
        if tissue == _T.LUNG:  # tapering apex, base domed upward by the diaphragm
            inside = (q <= 1 - np.maximum(t - c[2], 0) ** 2 / a[2] ** 2) & (
                t >= 0.58 + 0.08 * (1 - q)
            )
        else:
            inside = q + ((t - c[2]) / a[2]) ** 2 <= 1
        _put(labels, interior & inside, tissue)
        if tissue == _T.KIDNEY:
            sinus = ((u - 0.6 * c[0]) / (0.4 * a[0])) ** 2 + ((v - c[1]) / (0.45 * a[1])) ** 2
            _put(labels, interior & (sinus + ((t - c[2]) / (0.5 * a[2])) ** 2 <= 1), _T.SINUS)
    _vessels_and_bones(case, labels, x, y, u, v, t, r2, half_y)
    return labels


def _vessels_and_bones(case: _Case, labels, x, y, u, v, t, r2, half_y) -> None:
    """Paint aorta, vena cava, vertebrae (discs, canal, spinous process), ribs, sternum, pelvis."""
    rv, disc_period, disc_phase, ra = (float(p) for p in case.spine)
    cx, cy = case.centre
    yv = cy + 0.5 * half_y  # vertebral body centre moves with the outline
    ya = yv - rv - 1.2 * ra
    _put(labels, (x - cx - 0.6 * rv) ** 2 + (y - ya) ** 2 <= ra * ra, _T.ARTERY)
    _put(labels, ((x - cx + 1.6 * rv) ** 2 + (y - ya) ** 2 <= 0.8 * ra * ra) & (t < 0.6), _T.VEIN)
    disc = np.mod((t - disc_phase) / disc_period, 1.0) < 0.2
    d2 = (x - cx) ** 2 + (y - yv) ** 2
    shell = max(1.0, 0.12 * rv)
    _put(labels, d2 <= rv * rv, _T.CORTICAL)
    _put(labels, (d2 <= (rv - shell) ** 2) & ~disc, _T.CANCELLOUS)
    _put(labels, (d2 <= rv * rv) & disc, _T.DISC)
    yc = yv + 1.45 * rv
    dc2 = (x - cx) ** 2 + (y - yc) ** 2
    _put(labels, (dc2 <= (0.8 * rv) ** 2) & ~disc, _T.CORTICAL)
    _put(labels, ((x - cx) / (0.2 * rv)) ** 2 + ((y - yc - rv) / (0.6 * rv)) ** 2 <= 1, _T.CORTICAL)
    _put(labels, dc2 <= (0.42 * rv) ** 2, _T.CSF)
    period, phase, slope = (float(p) for p in case.ribs)
    rib_band = (r2 >= (case.muscle_r - 0.05) ** 2) & (r2 <= (case.muscle_r + 0.02) ** 2)
    on_rib = np.mod((t + slope * v - phase) / period, 1.0) < 0.35
    _put(labels, rib_band & on_rib & (t > 0.55) & (np.abs(u) > 0.15), _T.RIB)
    sternum = (u / 0.09) ** 2 + ((v + case.muscle_r - 0.06) / 0.05) ** 2 <= 1
    _put(labels, sternum & (t > 0.64) & (t < 0.98), _T.RIB)
    au, av = np.abs(u) - 0.45, v - 0.12  # iliac wings: oblique plates, mirrored
    p, q = 0.8 * au + 0.6 * av, -0.6 * au + 0.8 * av
    _put(labels, ((p / 0.06) ** 2 + (q / 0.26) ** 2 <= 1) & (t > 0.02) & (t < 0.24), _T.RIB)


def _tissue_hu(contrast: float) -> np.ndarray:
    """HU of every tissue label; enhancing tissues brighten with the case's contrast (0..1)."""
    lut = np.zeros(len(_T), np.float32)
    for tissue, (hu, enhancement) in _TISSUE_HU.items():
        lut[tissue] = hu + enhancement * contrast
    return lut


def _axis_world(case: _Case, axis: int, lo: int, hi: int) -> np.ndarray:
    """World coordinates (float32) of LPS-ordered voxel indices [lo, hi) along x/y/z (0/1/2)."""
    idx = np.arange(lo, hi, dtype=np.float64)
    return (case.origin[axis] + case.spacing[axis] * idx).astype(np.float32)


def _draw_case(index: int, spec: _ScaleSpec, rng: np.random.Generator, width: int) -> _Case:
    """Random geometry (size, spacing, origin) and anatomy of case ``index``."""
    lo, hi = spec.spacing_xy
    # Multiples of 1/256 mm: exact in NIfTI's float32 header, so world coordinates round-trip.
    sxy = int(rng.integers(math.ceil(lo * 256), math.floor(hi * 256), endpoint=True)) / 256
    n = int(np.clip(round(rng.uniform(*spec.fov_mm) / sxy), *spec.inplane))
    sz = float(rng.choice(spec.spacing_z))
    nz = int(np.clip(round(rng.uniform(*spec.extent_mm) / sz), *spec.slices))
    fov, extent = n * sxy, nz * sz
    origin = tuple(
        round(o * 64) / 64
        for o in (
            -fov / 2 + rng.uniform(-25, 25),
            -fov / 2 + rng.uniform(-40, 10),
            rng.uniform(-600, -50),
        )
    )
    half_x = rng.uniform(0.38, 0.43) * fov
    centre = (
        origin[0] + (n - 1) * sxy / 2 + rng.uniform(-0.03, 0.03) * fov,
        origin[1] + (n - 1) * sxy / 2 + rng.uniform(-0.02, 0.04) * fov,
    )
    t_lo, t_hi = rng.uniform(-0.04, 0.03), rng.uniform(0.97, 1.04)
    t_len = extent / (t_hi - t_lo)
    fat_r = 1 - rng.uniform(0.05, 0.13)
    organs = {
        name: (
            np.add(c, rng.normal(0, 0.02, 3)).astype(np.float32),
            np.multiply(a, rng.uniform(0.9, 1.1, 3)).astype(np.float32),
            tissue,
        )
        for name, (c, a, tissue) in _ORGANS.items()
    }
    return _Case(
        case_id=f"case_{index:0{width}d}",
        shape=(nz, n, n),
        spacing=(sxy, sxy, sz),
        origin=origin,
        ras_stored=index % 3 == 1,
        centre=centre,
        semi_axes=(half_x, half_x * rng.uniform(0.68, 0.8)),
        wobble=np.array(
            [*rng.uniform(0.0, 0.04, 2), rng.uniform(0.5, 1.2), *rng.uniform(0, 6.28, 2)]
        ),
        t_map=(origin[2] - t_lo * t_len, t_len),
        fat_r=fat_r,
        muscle_r=fat_r - rng.uniform(0.05, 0.08),
        contrast=rng.uniform(0.0, 1.0),
        organs=organs,
        spine=np.array([0.13 * half_x, 0.065, rng.uniform(0, 1), 0.075 * half_x]),
        ribs=np.array([0.06, rng.uniform(0, 1), 0.05]),
        bowel=_random_waves(rng, 8, half_x * np.array([0.15, 0.3])),
        lung_tex=_random_waves(rng, 6, half_x * np.array([0.05, 0.1])),
        noise_sd=rng.uniform(10, 20),
    )


def _random_waves(rng: np.random.Generator, terms: int, wavelength: np.ndarray) -> np.ndarray:
    """``terms`` plane waves with random directions, wavelengths in ``wavelength`` (mm)."""
    k = _unit_vectors(rng, terms) * (2 * np.pi / rng.uniform(*wavelength, (terms, 1)))
    return np.concatenate([k, rng.uniform(0, 2 * np.pi, (terms, 1))], axis=1).astype(np.float32)


def _half_axes(case: _Case, t):
    """The body outline's semi-axes (x, y) in mm at body height ``t``."""
    amp_x, amp_y, cycles, ph_x, ph_y = case.wobble
    half_x = case.semi_axes[0] * (1 + amp_x * np.sin(2 * np.pi * cycles * t + ph_x))
    half_y = case.semi_axes[1] * (1 + amp_y * np.sin(2 * np.pi * cycles * t + ph_y))
    return half_x, half_y


def _world(case: _Case, u: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World points (n, 3) of body-normalised coordinates: the inverse of ``_body_frame``."""
    half_x, half_y = _half_axes(case, t)
    return np.stack([case.centre[0] + u * half_x, case.centre[1] + v * half_y, case.z_of_t(t)], 1)


def _in_disc(rng: np.random.Generator, n: int, dims: int = 2) -> np.ndarray:
    """``n`` points uniform in the unit disc (dims 2) or ball (dims 3), shape (dims, n)."""
    p = _unit_vectors(rng, n, dims).T
    return p * rng.random(n) ** (1 / dims)


def _unit_vectors(rng: np.random.Generator, n: int, dims: int = 3) -> np.ndarray:
    """``n`` random directions, shape (n, dims)."""
    p = rng.normal(size=(n, dims))
    return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)


def _propose(case: _Case, kind: _Kind, radius: float, t_range, rng: np.random.Generator, n: int):
    """``n`` candidate lesion centres (n, 3) of a type, before any tissue check."""
    t = rng.uniform(*t_range, n)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    rv, _, _, ra = case.spine
    spine = _world(case, np.zeros(n), np.full(n, 0.5), t)  # vertebral body centres
    if kind == _Kind.BONE:
        return spine + np.stack([*(0.35 * rv * _in_disc(rng, n)), np.zeros(n)], axis=1)
    if kind == _Kind.MEDIASTINUM:  # a node beside the aorta, in the chest or the abdomen
        angle, dist = rng.uniform(0, 2 * np.pi, n), ra + radius + rng.uniform(1, 5, n)
        x = 0.6 * rv + dist * np.cos(angle)
        y = -rv - 1.2 * ra + dist * np.sin(angle)
        return spine + np.stack([x, y, np.zeros(n)], axis=1)
    if kind in (_Kind.LIVER, _Kind.KIDNEY):
        names = ("liver", "liver") if kind == _Kind.LIVER else ("kidney_r", "kidney_l")
        c, a = (np.where(side > 0, *(case.organs[nm][i][:, None] for nm in names)) for i in (0, 1))
        ball = (0.6 if kind == _Kind.LIVER else 0.5) * _in_disc(rng, n, 3)
        return _world(case, *(c + a * ball))
    if kind == _Kind.LUNG:
        c, a = case.organs["lung_l"][:2]
        disc = 0.75 * _in_disc(rng, n)
        return _world(case, side * abs(c[0]) + a[0] * disc[0], c[1] + a[1] * disc[1], t)
    if kind == _Kind.SOFT_TISSUE:  # front and flanks of the body wall, in fat or muscle
        angle = rng.uniform(-1.9, 1.9, n)
        rn = rng.uniform(case.muscle_r - 0.04, case.fat_r + 0.01, n)
        return _world(case, rn * np.sin(angle), -rn * np.cos(angle), t)
    disc = (0.65 if kind == _Kind.ABDOMEN else 0.6) * case.muscle_r * _in_disc(rng, n)
    return _world(case, disc[0], disc[1], t)


def _place(
    case: _Case, kind: _Kind, radius: float, others: list[_Lesion], rng: np.random.Generator
):
    """(centre, radius) where a lesion of this type fits, or None; tries, then shrinks it.

    The centre must lie in the type's tissues, the points at +-0.6 radius too where the type
    asks for it, at least ``min(20 mm, 20% of the z extent)`` from the volume's ends (so most of
    a 50 mm patch is inside), and clear of the lesions already placed.
    """
    spec = _KINDS[kind]
    z_lo = case.origin[2]
    z_hi = z_lo + (case.shape[0] - 1) * case.spacing[2]
    margin = min(20.0, 0.2 * (z_hi - z_lo))
    m_lo, m_hi = ((z - case.t_map[0]) / case.t_map[1] for z in (z_lo + margin, z_hi - margin))
    lo, hi = max(spec.t_range[0], m_lo), min(spec.t_range[1], m_hi)
    if lo >= hi:
        lo = hi = float(np.clip((lo + hi) / 2, m_lo, m_hi))
    steps = np.concatenate([np.zeros((1, 3)), np.eye(3), -np.eye(3)])
    for _ in range(4):
        cand = _propose(case, kind, radius, (lo, hi), rng, 64)
        points = (cand[None] + 0.6 * radius * steps[:, None]).reshape(-1, 3).astype(np.float32)
        labels = _tissue_labels(case, *points.T).reshape(len(steps), -1)
        ok = np.isin(labels[0], spec.centre_in)
        ok &= (cand[:, 2] >= z_lo + margin) & (cand[:, 2] <= z_hi - margin)
        if spec.around_in is not None:
            ok &= np.isin(labels[1:], spec.around_in).all(axis=0)
        for other in others:
            ok &= np.linalg.norm(cand - other.centre, axis=1) >= 1.2 * (radius + other.radius) + 2
        if ok.any():
            return cand[np.argmax(ok)], radius
        radius *= 0.8
    return None


def _max_diameter(case: _Case, kind: _Kind) -> float:
    """Largest diameter (mm) of a lesion type; small for those confined to a small structure."""
    if kind == _Kind.BONE:
        return 1.6 * float(case.spine[0])
    if kind == _Kind.KIDNEY:
        _, a, _ = case.organs["kidney_l"]
        return 2.0 * float(min(a[0] * case.semi_axes[0], a[1] * case.semi_axes[1]))
    return 60.0


def _survival(rng: np.random.Generator, risk: float) -> tuple[int, int, int | None]:
    """(observed days, event, alive at 2 years or None when censored before) for a risk score.

    Death time is Weibull with shape 1.2 and a hazard proportional to exp(risk); follow-up ends
    uniformly between 1 and 6 years (administrative censoring).
    """
    death = 1400 * math.exp(-risk / 1.2) * rng.exponential() ** (1 / 1.2)
    follow_up = rng.uniform(365, 2190)
    days, event = max(1, round(min(death, follow_up))), int(death <= follow_up)
    alive = 1 if days > SURVIVAL_HORIZON_DAYS else (0 if event else None)
    return days, event, alive


def _draw_lesion(case: _Case, kind: _Kind, rng: np.random.Generator, others: list[_Lesion]):
    """One lesion of a type, or None if it does not fit.

    A latent class (malignant or not, 50/50) shifts every appearance feature: size, enhancement,
    spiculation and heterogeneity; the Task 2 label is that class with 12% of labels flipped.
    """
    spec = _KINDS[kind]
    malignant = bool(rng.random() < 0.5)
    size_z, enhancement = rng.normal(_CLASS_SHIFT if malignant else -_CLASS_SHIFT, 1.0, 2)
    spiculation, heterogeneity = rng.beta(5, 2, 2) if malignant else rng.beta(2, 5, 2)
    body_scale = float(np.clip(case.semi_axes[0] / 150, 0.6, 1.2))
    diameter = float(np.clip(spec.size_mm * body_scale * np.exp(0.3 * size_z), 4.0, 60.0))
    placed = _place(case, kind, min(diameter, _max_diameter(case, kind)) / 2, others, rng)
    if placed is None:
        return None
    centre, radius = np.round(placed[0], 3), placed[1]
    risk = 0.3 * size_z + 0.5 * malignant + 0.6 * (heterogeneity - 0.5)  # weak on purpose
    days, event, alive = _survival(rng, risk)
    axes = rng.uniform(0.8, 1.2, 3)
    n_spikes = int(round(10 * spiculation * rng.uniform(0.6, 1.0)))
    a, b, c = spec.hu
    row = {
        "coordX": centre[0],
        "coordY": centre[1],
        "coordZ": centre[2],
        "lesion_type": LESION_TYPES[kind],
        "diameter_mm": round(2 * radius, 1),
        "Coarse_lesion_type": int(kind),
        "malignancy": int(malignant ^ bool(rng.random() < _LABEL_NOISE)),
        "survival": alive,
        "survival_time": days,
        "event": event,
    }
    return _Lesion(
        kind=kind,
        centre=centre,
        radius=radius,
        axes=axes / np.cbrt(axes.prod()),
        hu=float(np.clip(a + b * enhancement + c * case.contrast, -80, 1300)),
        texture=_random_waves(rng, 4, radius * np.array([0.5, 1.0])),
        texture_hu=spec.texture_hu * heterogeneity,
        necrosis_hu=140 * max(0.0, heterogeneity - 0.5) if radius >= 5 else 0.0,
        lobes=np.concatenate(
            [_unit_vectors(rng, 3), rng.integers(2, 5, (3, 1)), rng.uniform(0, 2 * np.pi, (3, 1))],
            axis=1,
        ),
        lobe_amp=0.04 + 0.18 * spiculation,
        spikes=np.concatenate(
            [_unit_vectors(rng, n_spikes), rng.uniform(0.4, 1.0, (n_spikes, 1))], axis=1
        ),
        halo_hu=spec.halo_hu,
        row=row,
    )


def _paint(case: _Case, lesion: _Lesion, hu: np.ndarray, z0: int) -> None:
    """Paint a lesion into ``hu``, a slab of the LPS-ordered volume starting at slice ``z0``."""
    reach = (
        lesion.radius
        * lesion.axes.max()
        * (1 + lesion.lobe_amp + lesion.spikes[:, 3].max(initial=0))
    )
    reach = reach * (1.6 if lesion.halo_hu is not None else 1.0) + 1.0
    offsets, box = [], []
    for axis, (start, size) in enumerate(zip((0, 0, z0), hu.shape[::-1], strict=True)):
        centre_index = (lesion.centre[axis] - case.origin[axis]) / case.spacing[axis]
        lo = max(start, math.floor(centre_index - reach / case.spacing[axis]))
        hi = min(start + size, math.ceil(centre_index + reach / case.spacing[axis]) + 1)
        if lo >= hi:
            return
        offsets.append(_axis_world(case, axis, lo, hi) - np.float32(lesion.centre[axis]))
        box.append(slice(lo - start, hi - start))
    dx, dy, dz = offsets[0][None, None], offsets[1][None, :, None], offsets[2][:, None, None]
    sx, sy, sz = (d / np.float32(a) for d, a in zip((dx, dy, dz), lesion.axes, strict=True))
    r = np.sqrt(sx * sx + sy * sy + sz * sz) + np.float32(1e-6)
    ux, uy, uz = sx / r, sy / r, sz / r
    wobble = sum(
        np.cos(k * np.pi * (wx * ux + wy * uy + wz * uz) + ph)
        for wx, wy, wz, k, ph in lesion.lobes.tolist()
    )
    bound = lesion.radius * (1 + lesion.lobe_amp * wobble / 3)
    for wx, wy, wz, length in lesion.spikes.tolist():
        along = np.clip(((wx * ux + wy * uy + wz * uz) - 0.97) / 0.03, 0, 1)
        bound = bound + lesion.radius * length * along**2
    view = hu[box[2], box[1], box[0]]
    if lesion.halo_hu is not None:
        np.putmask(view, (r <= 1.6 * lesion.radius) & (view > -300) & (view < 200), lesion.halo_hu)
    values = lesion.hu + lesion.texture_hu * _waves(lesion.texture, dx, dy, dz)
    values = values - lesion.necrosis_hu * np.exp(-((r / (0.5 * lesion.radius)) ** 2))
    inside = r <= bound
    np.copyto(view, np.broadcast_to(values, view.shape).astype(np.float32), where=inside)


def _render(case: _Case, lesions: list[_Lesion], rng: np.random.Generator) -> np.ndarray:
    """The int16 HU volume (nz, ny, nx) in LPS order, built slab by slab to bound memory."""
    nz, ny, nx = case.shape
    lut = _tissue_hu(case.contrast)
    x = _axis_world(case, 0, 0, nx)[None, None, :]
    y = _axis_world(case, 1, 0, ny)[None, :, None]
    out = np.empty(case.shape, np.int16)
    for start in range(0, nz, _SLAB):
        stop = min(nz, start + _SLAB)
        lo, hi = max(0, start - _HALO), min(nz, stop + _HALO)
        z = _axis_world(case, 2, lo, hi)[:, None, None]
        labels = _tissue_labels(case, x, y, z)
        hu = lut[labels]
        hu += np.float32(60.0) * _waves(case.lung_tex, x, y, z) * (labels == _T.LUNG)
        for lesion in lesions:
            _paint(case, lesion, hu, lo)
        hu = ndimage.gaussian_filter(hu, _SMOOTH_SIGMA, mode="nearest")[start - lo : stop - lo]
        hu += np.float32(case.noise_sd) * rng.standard_normal(hu.shape, dtype=np.float32)
        out[start:stop] = np.clip(np.rint(hu), -1024, 3071)
    return out


def _write_image(case: _Case, volume: np.ndarray, path: Path) -> None:
    """Write the LPS-ordered volume; RAS-stored cases flip x and y so world anatomy is unchanged."""
    origin, direction = case.origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if case.ras_stored:
        volume = volume[:, ::-1, ::-1]
        nz, ny, nx = case.shape
        origin = (
            origin[0] + (nx - 1) * case.spacing[0],
            origin[1] + (ny - 1) * case.spacing[1],
            origin[2],
        )
        direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(case.spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _make_case(index: int, seed: int, spec: _ScaleSpec, width: int, images: Path) -> list[dict]:
    """Generate, render and write one case; return its lesions' table rows."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))
    case = _draw_case(index, spec, rng, width)
    n_extra = rng.integers(*spec.extra_lesions, endpoint=True)
    kinds = [*rng.permutation(len(_Kind)), *rng.integers(0, len(_Kind), n_extra)]
    lesions: list[_Lesion] = []
    for kind in kinds:
        lesion = _draw_lesion(case, _Kind(kind), rng, lesions)
        if lesion is None:
            log.debug("%s: no room for a %s lesion", case.case_id, LESION_TYPES[kind])
            continue
        lesions.append(lesion)
    _write_image(case, _render(case, lesions, rng), images / f"{case.case_id}.nii.gz")
    return [
        {
            "image_path": f"{images.name}/{case.case_id}.nii.gz",
            "case_id": case.case_id,
            "lesion_id": f"{case.case_id}_L{j:02d}",
            **lesion.row,
        }
        for j, lesion in enumerate(lesions)
    ]


def _split_of_cases(n_cases: int, seed: int) -> list[str]:
    """Case-level split: 20% val, 20% test (at least one case each), the rest train."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    n_held = max(1, round(0.2 * n_cases))
    split = np.full(n_cases, "train", dtype=object)
    order = rng.permutation(n_cases)
    split[order[:n_held]], split[order[n_held : 2 * n_held]] = "val", "test"
    return split.tolist()


def _tables(rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The pretraining table (train cases) and the three splits of the three tasks."""
    lesions = pd.DataFrame(rows)
    common = ["image_path", "coordX", "coordY", "coordZ", "case_id", "lesion_id"]
    extra = ["split", "lesion_type", "diameter_mm"]
    tables = {"pretrain": lesions.loc[lesions["split"] == "train", common]}
    for split in ("train", "val", "test"):
        part = lesions[lesions["split"] == split]
        tables[f"task1_{split}"] = part[[*common, *extra, "Coarse_lesion_type"]]
        tables[f"task2_{split}"] = part[[*common, *extra, "malignancy"]]
        known = part[part["survival"].notna()]
        task3 = known[[*common, *extra, "survival", "survival_time", "event"]]
        tables[f"task3_{split}"] = task3.astype({"survival": int})
    return {name: table.reset_index(drop=True) for name, table in tables.items()}


def make_demo_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    scale: str = "demo",
    n_cases: int | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Write synthetic CT volumes and lesion tables for the three FMCIB tasks.

    Volumes are int16 HU NIfTI files ``images/case_NNN.nii.gz`` with anisotropic spacing,
    per-case origins and sizes; every third case (``case_001``, ``case_004``, ...) is stored
    RAS-ordered (direction diag(-1, -1, 1), array flipped so the anatomy is the same in world
    space). Tables are CSV files in ``out_dir`` whose ``image_path`` is relative to ``out_dir``
    and whose ``coordX/Y/Z`` are lesion centres in world millimetres, LPS.

    Tables and labels:
      - ``pretrain.csv``: the lesions of the train cases, unlabelled (image_path, coordX,
        coordY, coordZ, case_id, lesion_id).
      - ``task{1,2,3}_{train,val,test}.csv``: those columns plus ``split``, ``lesion_type``
        (name) and ``diameter_mm``, then the labels. Task 1 ``Coarse_lesion_type`` (0..7,
        ``LESION_TYPES``: DeepLesion's coarse types minus one); every case holds one lesion of
        every type plus a few random extra ones. Task 2 ``malignancy``: a latent class makes
        lesions larger, more lobulated and spiculated, more heterogeneous and differently dense
        (brighter soft-tissue lesions, lytic rather than sclerotic bone lesions); the label is
        that class flipped with probability 0.12. Task 3: each lesion is an independent synthetic
        patient; death time is Weibull (shape 1.2) with a hazard rising weakly with size, latent
        malignancy and heterogeneity; follow-up ends uniformly between 1 and 6 years
        (administrative censoring). ``survival_time`` (days) and ``event`` are the observed time
        and whether death was observed; ``survival`` is 1 when the patient is known alive at
        730 days (observed time > 730), 0 when death was observed at or before 730 days.
        Lesions censored at or before 730 days have an unknown 2-year status and are left out
        of the Task 3 tables (they stay in Tasks 1 and 2).
    Splits are case-disjoint (20% val, 20% test, the rest train); all tasks share them.

    Every case draws from its own generator (``SeedSequence(seed, spawn_key=(0, index))``), so
    a case does not depend on generation order or on ``n_cases``; the same seed gives identical
    voxels and byte-identical tables. Images are written atomically, tables last.

    Args:
        out_dir: folder to write into (created if needed).
        seed: non-negative seed.
        scale: ``"demo"`` (28 cases of 128-192 x 128-192 x 30-70 voxels, in-plane 0.7-0.9 mm,
            slices 1.25-5 mm), ``"medium"`` (96 such cases) or ``"full"`` (3 cases of
            512 x 512 x ~300 voxels at ~0.7 x 0.7 x 1.25 mm; for benchmarks).
        n_cases: overrides the scale's number of cases (at least 3: one per split).
        progress: show a progress bar over cases.

    Returns:
        Table name (``pretrain``, ``task1_train``, ..., ``task3_test``) -> CSV path, plus
        ``images`` -> the image folder.

    Raises:
        ValueError: unknown scale, fewer than 3 cases, or a negative seed.
    """
    if scale not in _SPECS:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    spec = _SPECS[scale]
    n_cases = spec.n_cases if n_cases is None else int(n_cases)
    if n_cases < 3:
        raise ValueError(f"n_cases must be at least 3 (one case per split); got {n_cases}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n_cases - 1)))
    splits = _split_of_cases(n_cases, seed)
    rows = []
    for index in tqdm(range(n_cases), desc="synthetic cases", unit="case", disable=not progress):
        case_rows = _make_case(index, seed, spec, width, images)
        rows += [{**row, "split": splits[index]} for row in case_rows]
    paths: dict[str, Path] = {}
    for name, table in _tables(rows).items():
        paths[name] = out_dir / f"{name}.csv"
        with atomic_path(paths[name]) as tmp:
            table.to_csv(tmp, index=False)
    log.info(
        "wrote %d cases, %d lesions and %d tables to %s", n_cases, len(rows), len(paths), out_dir
    )
    return {**paths, "images": images}
