"""Synthetic CT demo data: phantom torsos with labelled lesions, in the real table format.

The demo data set stands in for DeepLesion-style data in every task of the workflow; its tables
have the columns of docs/method.md section 1 and the labels of its section 7. One module per
concept, lowest first:

- ``waves``: random smooth fields and directions (plane waves, unit vectors, discs).
- ``scales``: the size presets (``SCALES``).
- ``anatomy``: tissue classes and their HU, the body frame, tissue labels, drawing a case.
- ``labels``: Task 2 label noise and Task 3 survival (``SURVIVAL_HORIZON_DAYS``).
- ``lesions``: the eight coarse lesion types (``LESION_TYPES``), placing, drawing and painting
  lesions.
- ``render``: the HU volume of a case and writing it as NIfTI.
- ``dataset``: cases to rows to tables, the case-level splits, ``make_demo_dataset``.
"""

from __future__ import annotations

from fmcib_core.demo.dataset import make_demo_dataset
from fmcib_core.demo.labels import SURVIVAL_HORIZON_DAYS
from fmcib_core.demo.lesions import LESION_TYPES
from fmcib_core.demo.scales import SCALES

__all__ = ["LESION_TYPES", "SCALES", "SURVIVAL_HORIZON_DAYS", "make_demo_dataset"]
