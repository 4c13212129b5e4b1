"""Size presets of the synthetic demo data set: number of cases, voxel grid, spacing, lesions.

``SCALES`` names them: ``"demo"`` (40 small labelled cases), ``"medium"`` (96 such cases) and
``"full"`` (3 full-size 512 x 512 x ~300 cases, for benchmarks); each adds pretraining-only cases
(``fmcib_core.demo.dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SCALES = ("demo", "medium", "full")


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
    n_cases=40,
    inplane=(128, 192),
    fov_mm=(120, 160),
    spacing_xy=(0.7, 0.9),
    spacing_z=(1.25, 2.0, 2.5, 3.0, 5.0),
    slices=(30, 70),
    extent_mm=(140, 210),
    extra_lesions=(3, 7),
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
