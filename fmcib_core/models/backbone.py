"""The FMCIB backbone: a family of MONAI 3D ResNets without classifier (docs/method.md section 3).

``resnet50x2`` is the paper's trunk (184,477,824 parameters, 4096 features). The smaller members
share its layout (1 input channel, 7^3 first conv with stride 2 on every axis, max-pool, shortcut
B with a biased downsample conv, global average pool, no fc) so that the demo and the tests run the
same code on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from monai.networks.nets import ResNet
from torch import nn

__all__ = ["BACKBONES", "backbone_output_dim", "build_backbone"]

_BLOCK_INPLANES = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}


@dataclass(frozen=True)
class _Spec:
    block: str
    layers: tuple[int, int, int, int]
    widen_factor: float

    @property
    def output_dim(self) -> int:
        # MONAI widens with int(x * widen_factor); the last stage sets the feature size.
        return int(_BLOCK_INPLANES[-1] * self.widen_factor) * _EXPANSION[self.block]


_SPECS: dict[str, _Spec] = {
    "resnet50x2": _Spec("bottleneck", (3, 4, 6, 3), 2.0),
    "resnet50": _Spec("bottleneck", (3, 4, 6, 3), 1.0),
    "resnet18": _Spec("basic", (2, 2, 2, 2), 1.0),
    "resnet10": _Spec("basic", (1, 1, 1, 1), 1.0),
    "resnet10_w025": _Spec("basic", (1, 1, 1, 1), 0.25),
}

BACKBONES: tuple[str, ...] = tuple(_SPECS)
"""Names accepted by :func:`build_backbone`, the paper's first."""


def _spec(name: str) -> _Spec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def backbone_output_dim(name: str) -> int:
    """Number of features the backbone ``name`` outputs per patch (4096 for ``resnet50x2``)."""
    return _spec(name).output_dim


def build_backbone(name: str = "resnet50x2") -> nn.Module:
    """Build a randomly initialised backbone of the FMCIB family.

    The module maps a batch of single-channel patches, shape (B, 1, D, H, W) with axes (z, y, x),
    to features of shape (B, F), F = :func:`backbone_output_dim`. Any D, H, W >= 1 work (the
    stride is 32 in total); in training mode batch norm needs more than one value per channel, so
    use B >= 2 for patches smaller than 33 voxels per side. Its state dict has plain MONAI keys
    (``conv1.weight``, ``layer1.0.conv1.weight``, ...), the layout of the published weights file.
    Convolutions start kaiming-normal (MONAI's initialisation), batch norms at weight 1, bias 0.

    Args:
        name: one of :data:`BACKBONES`.

    Returns:
        A ``monai.networks.nets.ResNet`` with ``feed_forward=False`` (no fc layer).

    Raises:
        ValueError: ``name`` is not a known backbone.
    """
    spec = _spec(name)
    return ResNet(
        block=spec.block,
        layers=list(spec.layers),
        block_inplanes=list(_BLOCK_INPLANES),
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_size=7,
        conv1_t_stride=2,
        no_max_pool=False,
        shortcut_type="B",
        widen_factor=spec.widen_factor,
        feed_forward=False,
        bias_downsample=True,
    )
