"""Models: the FMCIB backbone family (MONAI 3D ResNets) and the MLP heads on top of it."""

from __future__ import annotations

from fmcib_core.models.backbone import BACKBONES, backbone_output_dim, build_backbone
from fmcib_core.models.heads import FMCIBModel, mlp_head, projection_head, task_head

__all__ = [
    "BACKBONES",
    "FMCIBModel",
    "backbone_output_dim",
    "build_backbone",
    "mlp_head",
    "projection_head",
    "task_head",
]
