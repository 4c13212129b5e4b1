"""The FMCIB backbone: a family of MONAI 3D ResNets without classifier (docs/method.md section 3).

``resnet50x2`` is the paper's trunk (184,477,824 parameters, 4096 features). The smaller members
share its layout (1 input channel, 7^3 first conv with stride 2 on every axis, max-pool, shortcut
B with a biased downsample conv, global average pool, no fc) so that the demo and the tests run the
same code on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["BACKBONES", "backbone_output_dim", "build_backbone", "empty_backbone"]

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
        A ``monai.networks.nets.ResNet`` with ``feed_forward=False`` (no fc layer), its max-pool
        a :class:`ChannelsLastMaxPool3d` (the same values, faster on the CPU).

    Raises:
        ValueError: ``name`` is not a known backbone.
    """
    spec = _spec(name)
    model = ResNet(
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
    pool = model.maxpool
    model.maxpool = ChannelsLastMaxPool3d(
        pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode
    )
    return model


def empty_backbone(name: str = "resnet50x2") -> nn.Module:
    """:func:`build_backbone` on the meta device, without its random initialisation: the
    tensors have shapes but no values, for a weights file to fill (``load_state_dict`` with
    ``assign=True``).

    MONAI's ResNet initialises every convolution in its constructor. On meta tensors those
    calls change nothing, but the first one imports ``torch._dynamo`` (1.7 s on this project's
    2-core CPU), so they are skipped here.
    """
    with torch.device("meta"), _SkipInitOnMeta():
        return build_backbone(name)


class _SkipInitOnMeta(TorchFunctionMode):
    """Skips the in-place initialisers of ``torch.nn.init`` on meta tensors (they have no values
    to set); every other call goes through unchanged."""

    _INIT = frozenset(
        {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._INIT and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


class ChannelsLastMaxPool3d(nn.MaxPool3d):
    """``nn.MaxPool3d`` that, on the CPU, runs PyTorch's channels_last_3d kernel.

    The values are the same bit for bit (a maximum is exact). The gradient is PyTorch's own
    (contiguous) backward kernel applied to that kernel's indices, so it is the same as
    ``nn.MaxPool3d``'s unless a window holds two equal maxima and the two kernels pick different
    ones; after the backbone's ReLU such ties are zeros, whose gradient the ReLU drops anyway
    (the tests compare every parameter's gradient bit for bit). Measured on this project's
    2-core CPU, on the demo backbone's pool input (32 x 16 x 25^3 after a ReLU), one thread: the
    default contiguous kernel 89.5 ms forward and 13.9 ms backward, the channels_last_3d kernel
    22.7 ms forward; the whole demo backbone, forward and backward of 32 patches, two threads,
    0.226 -> 0.199 s. On other devices, and for input already in channels_last_3d, it is plain
    ``nn.MaxPool3d``. No parameters: state dicts are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dim() != 5
            or x.is_contiguous(memory_format=torch.channels_last_3d)
            or self.return_indices
        ):
            return super().forward(x)
        args = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ChannelsLastMaxPool.apply(x, *args)
        cl = x.contiguous(memory_format=torch.channels_last_3d)
        return F.max_pool3d(cl, *args[:4], ceil_mode=self.ceil_mode).contiguous()


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Forward with the channels_last_3d kernel, backward with the contiguous one (the faster
    of the two on the CPU), both on the same indices."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        cl = x.contiguous(memory_format=torch.channels_last_3d)
        out, indices = F.max_pool3d(
            cl, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True
        )
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.args = (kernel_size, stride, padding, dilation, ceil_mode)
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, indices = ctx.saved_tensors
        kernel_size, stride, padding, dilation, ceil_mode = ctx.args
        grad_x = torch.ops.aten.max_pool3d_with_indices_backward(
            grad.contiguous(),
            x.contiguous(),
            _triple(kernel_size),
            _triple(stride),
            _triple(padding),
            _triple(dilation),
            ceil_mode,
            indices,
        )
        return grad_x, None, None, None, None, None


def _triple(value: int | tuple[int, ...]) -> list[int]:
    return list(value) if isinstance(value, tuple) else [value] * 3
