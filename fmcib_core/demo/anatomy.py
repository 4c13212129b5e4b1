"""The phantom torso of the synthetic CT demo: tissue classes, body frame and case drawing.

Every volume is built from a few analytic shapes evaluated on the voxel grid in world
millimetres (LPS): an elliptic body outline whose size varies along z, subcutaneous fat and
muscle, lungs above a domed diaphragm, heart, aorta and vena cava, liver, spleen, kidneys,
bladder, bowel and visceral fat, vertebrae with discs and spinal canal, ribs, sternum and pelvic
bones. The same tissue function places the lesions (``fmcib_core.demo.lesions``) and renders the
voxels (``fmcib_core.demo.render``), so a lung nodule is in lung by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fmcib_core.demo.scales import _ScaleSpec
from fmcib_core.demo.waves import _random_waves, _waves


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
