"""Lesions of the synthetic CT demo: kinds, placement in their tissue, appearance and painting.

Coarse lesion types follow DeepLesion's ``Coarse_lesion_type`` minus one (see ``LESION_TYPES``):
0 bone (vertebral body), 1 abdomen (abdominal soft tissue), 2 mediastinum (lymph node beside the
aorta), 3 liver, 4 lung (nodule), 5 kidney, 6 soft tissue (body wall), 7 pelvis (lowest part).
Each is proposed where that type lives, checked against the phantom's tissue labels
(``fmcib_core.demo.anatomy``), given a latent malignant/benign class that shifts its
appearance, and painted into the HU volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fmcib_core.demo.anatomy import _T, _axis_world, _Case, _tissue_labels, _world
from fmcib_core.demo.labels import _LABEL_NOISE, _survival
from fmcib_core.demo.waves import _in_disc, _random_waves, _unit_vectors, _waves

_CLASS_SHIFT = 2.0  # malignant vs benign mean of size, in standard deviations
_ENHANCEMENT_SHIFT = 2.0  # the same for enhancement (HU, see _KindSpec.hu)
# Lesion sizes scale with the body's width down to this factor of the adult size: the demo's
# small phantoms keep lesions large enough (in 1 mm voxels) to show their margin and texture.
_MIN_BODY_SCALE = 1.0
# An ill-defined (infiltrating) margin fades out within this many radii of the centre.
_INFILTRATION_REACH = 2.2
# Beta parameters of a benign lesion's spiculation and heterogeneity (mean 0.2); a malignant
# lesion draws them reversed (mean 0.8).
_SHAPE_BETA = (1.5, 6.0)
# A patient's latent aggressiveness a ~ N(0, 1) makes each of their lesions malignant with
# probability 1 / (1 + exp(-_PATIENT_COUPLING a)), and adds _PATIENT_RISK a to their Task 3 risk.
_PATIENT_COUPLING = 4.0
_PATIENT_RISK = 0.8


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
    # Malignant lesions are brighter than benign ones of their type in every type: bone lesions
    # blastic (sclerotic) rather than lytic; liver lesions hyper- rather than hypodense.
    _Kind.BONE: _KindSpec(16, (0.12, 0.9), (_T.CANCELLOUS,), (_T.CANCELLOUS, _T.CORTICAL, _T.DISC),
                          (650, 250, 0), texture_hu=300),
    _Kind.ABDOMEN: _KindSpec(26, (0.22, 0.48), (_T.VFAT, _T.BOWEL), _BELLY, (40, 35, 20)),
    _Kind.MEDIASTINUM: _KindSpec(16, (0.3, 0.88), (_T.SOFT, _T.VFAT, _T.BOWEL, _T.MUSCLE), None,
                                 (40, 35, 10), halo_hu=-80),
    _Kind.LIVER: _KindSpec(22, (0.42, 0.6), (_T.LIVER,), (_T.LIVER,), (50, 40, 50)),
    _Kind.LUNG: _KindSpec(14, (0.68, 1.0), (_T.LUNG,), (_T.LUNG,), (25, 40, 0)),
    _Kind.KIDNEY: _KindSpec(20, (0.3, 0.44), (_T.KIDNEY, _T.SINUS),
                            (_T.KIDNEY, _T.SINUS, _T.FAT, _T.VFAT), (25, 40, 50)),
    _Kind.SOFT_TISSUE: _KindSpec(22, (0.1, 0.9), (_T.FAT, _T.MUSCLE), None, (45, 35, 0)),
    _Kind.PELVIS: _KindSpec(26, (0.0, 0.2), (_T.VFAT, _T.BOWEL, _T.MUSCLE),
                            (*_BELLY, _T.BLADDER), (40, 35, 20)),
}  # fmt: skip


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
    infiltration: float  # 0..1: how far the margin blurs into the surroundings (ill-defined)
    risk: float  # the lesion's part of its patient's Task 3 risk
    row: dict


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


def patient_malignancy(aggressiveness: float) -> float:
    """The probability that a lesion of a patient is malignant: a logistic function of the
    patient's latent aggressiveness (standard normal), so that one patient's lesions tend to
    share their class (50/50 over all patients)."""
    return float(1.0 / (1.0 + np.exp(-_PATIENT_COUPLING * aggressiveness)))


def patient_survival(
    rng: np.random.Generator, aggressiveness: float, lesions: list[_Lesion]
) -> dict[str, int | None]:
    """A patient's Task 3 columns (``survival``, ``survival_time``, ``event``), shared by all
    their lesions: the death time's risk is ``_PATIENT_RISK`` x the aggressiveness plus the mean
    of the lesions' own risks."""
    lesion_risk = float(np.mean([lesion.risk for lesion in lesions])) if lesions else 0.0
    days, event, alive = _survival(rng, _PATIENT_RISK * aggressiveness + lesion_risk)
    return {"survival": alive, "survival_time": days, "event": event}


def _draw_lesion(
    case: _Case,
    kind: _Kind,
    rng: np.random.Generator,
    others: list[_Lesion],
    p_malignant: float = 0.5,
):
    """One lesion of a type, or None if it does not fit.

    A latent class (malignant with probability ``p_malignant``, the patient's; see
    :func:`patient_malignancy`) shifts every appearance feature, each in the same
    direction for every type: a malignant lesion is larger (size z-score mean +2 vs -2, diameter
    x exp(0.3 z)), brighter (enhancement +2 vs -2 SD of the type's HU slope), lobulated and
    spiculated, with an ill-defined (infiltrating) margin, heterogeneous with a necrotic core;
    spiculation and heterogeneity ~ Beta(6, 1.5) for malignant, Beta(1.5, 6) for benign lesions.
    The Task 2 label is that class with 5% of labels flipped. The lesion's risk (its part of
    the patient's Task 3 risk, :func:`patient_survival`) rises with size, the latent class and
    heterogeneity.
    """
    spec = _KINDS[kind]
    malignant = bool(rng.random() < p_malignant)
    sign = 1.0 if malignant else -1.0
    size_z = rng.normal(sign * _CLASS_SHIFT, 1.0)
    enhancement = rng.normal(sign * _ENHANCEMENT_SHIFT, 1.0)
    shape_beta = _SHAPE_BETA[::-1] if malignant else _SHAPE_BETA
    spiculation, heterogeneity = rng.beta(*shape_beta, 2)
    body_scale = float(np.clip(case.semi_axes[0] / 150, _MIN_BODY_SCALE, 1.2))
    diameter = float(np.clip(spec.size_mm * body_scale * np.exp(0.3 * size_z), 4.0, 60.0))
    placed = _place(case, kind, min(diameter, _max_diameter(case, kind)) / 2, others, rng)
    if placed is None:
        return None
    centre, radius = np.round(placed[0], 3), placed[1]
    risk = 0.5 * size_z + 1.0 * malignant + 0.8 * (heterogeneity - 0.5)
    axes = rng.uniform(0.8, 1.2, 3)
    n_spikes = int(round(20 * spiculation**2 * rng.uniform(0.6, 1.0)))
    a, b, c = spec.hu
    row = {
        "coordX": centre[0],
        "coordY": centre[1],
        "coordZ": centre[2],
        "lesion_type": LESION_TYPES[kind],
        "diameter_mm": round(2 * radius, 1),
        "Coarse_lesion_type": int(kind),
        "malignancy": int(malignant ^ bool(rng.random() < _LABEL_NOISE)),
    }
    return _Lesion(
        kind=kind,
        centre=centre,
        radius=radius,
        axes=axes / np.cbrt(axes.prod()),
        hu=float(np.clip(a + b * enhancement + c * case.contrast, -80, 1300)),
        texture=_random_waves(rng, 4, radius * np.array([0.5, 1.0])),
        texture_hu=spec.texture_hu * heterogeneity,
        necrosis_hu=300 * max(0.0, heterogeneity - 0.45) if radius >= 4 else 0.0,
        lobes=np.concatenate(
            [_unit_vectors(rng, 3), rng.integers(2, 5, (3, 1)), rng.uniform(0, 2 * np.pi, (3, 1))],
            axis=1,
        ),
        lobe_amp=0.02 + 0.45 * spiculation**2,
        spikes=np.concatenate(
            [_unit_vectors(rng, n_spikes), rng.uniform(0.5, 1.3, (n_spikes, 1))], axis=1
        ),
        halo_hu=spec.halo_hu,
        infiltration=float(spiculation),
        risk=float(risk),
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
    reach = max(reach, _INFILTRATION_REACH * lesion.radius * lesion.axes.max() + 1.0)
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
        along = np.clip(((wx * ux + wy * uy + wz * uz) - 0.95) / 0.05, 0, 1)
        bound = bound + lesion.radius * length * along**2
    view = hu[box[2], box[1], box[0]]
    if lesion.halo_hu is not None:
        np.putmask(view, (r <= 1.6 * lesion.radius) & (view > -300) & (view < 200), lesion.halo_hu)
    values = lesion.hu + lesion.texture_hu * _waves(lesion.texture, dx, dy, dz)
    values = values - lesion.necrosis_hu * np.exp(-((r / (0.5 * lesion.radius)) ** 2))
    inside = (r <= bound) & (view > -920)  # spikes and lobes stop at air and gas
    if lesion.infiltration > 0:  # an ill-defined margin: the lesion fades into its surroundings
        fade = lesion.infiltration * np.exp(-np.maximum(r - bound, 0) / (0.35 * lesion.radius))
        reach_in = (r <= _INFILTRATION_REACH * lesion.radius) & (view > -920)  # not into air/gas
        fade = np.where(reach_in, fade, 0).astype(np.float32)
        view += fade * (np.float32(lesion.hu) - view)
    np.copyto(view, np.broadcast_to(values, view.shape).astype(np.float32), where=inside)
