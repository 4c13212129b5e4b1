"""The SSL view augmentation applied to a whole batch at once, on any device.

:func:`fmcib_core.transforms.ssl_view_transform` augments one patch at a time with MONAI on the
CPU (docs/method.md section 4). :class:`BatchedSSLViews` computes the same chain on a batch
``(B, 1, D, H, W)`` where the batch lives (a GPU during pretraining), each sample with its own
independently drawn parameters:

1. random resized crop, always: side fraction ``s ~ U(0.5, 1)`` shared by the three axes, box
   side ``max(1, round(s * n))`` per axis, start uniform among the positions where the box fits,
   resized back trilinearly (MONAI ``Resize(mode="trilinear", align_corners=False)``, which calls
   ``torch.nn.functional.interpolate``; its ``anti_aliasing`` defaults to off and only ever acts
   when shrinking, which a crop resized back to full size never does);
2. flip along one uniformly chosen axis, p 0.5 (MONAI ``RandAxisFlip``);
3. histogram shift with 10 control points, p 0.5 (MONAI ``RandHistogramShift``): reference points
   ``linspace(0, 1, K)``, floating points ``f_0 = 0``, ``f_{K-1} = 1``,
   ``f_i ~ U(f_{i-1}, r_{i+1})`` drawn in order (so non-decreasing), both scaled to the sample's
   ``[min, max]``; voxels are mapped piecewise linearly; a constant sample is left as is;
4. Gaussian smoothing, p 0.5, per-axis sigma ``~ U(0.25, 1.5)`` voxels (MONAI
   ``RandGaussianSmooth``): the ``"erf"`` kernel, truncated at radius
   ``int(max(4 sigma, 0.5) + 0.5)``, not renormalised (it sums to slightly below 1, as MONAI's),
   separable, zero padding;
5. clip below at 0 (MONAI ``ThresholdIntensity(0, above=True, cval=0)``; NaN becomes 0 as there).

Steps 1 and 2 are separable: on each axis, one per-sample (n, n) interpolation matrix (the flip
reverses its rows), applied as a batched matrix product; step 4 is the same with a banded matrix
holding each sample's kernel. Histogram shift and smoothing compute only the samples they apply
to, in the tensor the crop step returned. Measured on this project's 2-core CPU (one thread,
batches of 8 views of 50^3, medians of 7 interleaved runs, 2026-12-01; the machine's speed varies
by up to 1.5x between runs): steps 1-2 take about 1.0 ms per view (one ``affine_grid`` +
``grid_sample`` pass took 7.1 ms in an earlier measurement), step 4 1.3 ms per smoothed view (a
grouped ``conv3d`` took 6.7 ms), step 3 1.3 ms per shifted view, and the whole chain with its
probabilities 2.6 ms per view (3.3 ms when each product copied a transposed input, the steps
copied the batch and the shift gathered with int64 indices). GPUs have not been measured.

Parameters are drawn with a CPU ``torch.Generator`` in float64 (MONAI draws float64 with numpy)
and cast to float32 where MONAI casts them; the crop's affine matrices and clamp bounds and the
smoothing kernels are built on the CPU, then moved to the input's device, so that a seed gives the
same parameters and, to float rounding, the same views on every device. :func:`apply_view_params`
applies given parameters, which is what the equivalence tests against MONAI rely on.

Difference from MONAI: none by design, only float32 rounding. The crop's interpolation weights
are computed in float64 and rounded once, where ``interpolate`` computes source positions in
float32; on uniform noise in [0, 1] (the steepest data in that range) the views differ by up to
4.5e-6 at 50^3 (1.2e-6 at 20^3). The histogram shift's map can steepen such a difference by its
largest slope; the smoothing (kernel sum below 1) and clip cannot. Histogram shift, smoothing and
clip alone agree with MONAI to 3e-7. tests/transforms/test_batched.py asserts 1e-5 per step and
1e-5 * (1 + steepest slope) for the whole chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "BatchedSSLViews",
    "ViewParams",
    "apply_view_params",
    "clip_below_zero",
    "gaussian_smooth",
    "histogram_shift",
    "reference_control_points",
    "resized_crop_flip",
]

# MONAI's gaussian_1d defaults: tail length in sigmas, and its float32 1/sqrt(2).
_TRUNCATED = 4.0
_INV_SQRT2 = 0.70710678


@dataclass(frozen=True)
class ViewParams:
    """Per-sample parameters of one batch of views; the first axis of every field is the sample.

    Attributes:
        crop_start: (B, 3) int64, first voxel of the crop box on each axis (z, y, x).
        crop_size: (B, 3) int64, side of the crop box on each axis, at least 1.
        flip_axis: (B,) int64, spatial axis flipped (0, 1, 2 for z, y, x), or -1 for no flip.
        hist_shift: (B,) bool, whether the histogram shift is applied.
        hist_points: (B, K) float64, floating control points in [0, 1], first 0 and last 1,
            non-decreasing; the reference points are ``reference_control_points(K)``. Rows where
            ``hist_shift`` is False are ignored.
        smooth: (B,) bool, whether Gaussian smoothing is applied.
        sigma: (B, 3) float64, the smoothing's standard deviation in voxels on each axis (z, y,
            x). Rows where ``smooth`` is False are ignored.
    """

    crop_start: torch.Tensor
    crop_size: torch.Tensor
    flip_axis: torch.Tensor
    hist_shift: torch.Tensor
    hist_points: torch.Tensor
    smooth: torch.Tensor
    sigma: torch.Tensor

    @property
    def batch_size(self) -> int:
        """B, the number of samples."""
        return int(self.flip_axis.shape[0])

    def check(self, spatial_shape: Sequence[int]) -> None:
        """Raise ValueError unless the fields' shapes agree and every crop box fits the volume.

        Args:
            spatial_shape: (D, H, W) of the volumes the parameters will be applied to.
        """
        b, k = self.batch_size, self.hist_points.shape[-1]
        expected = {
            "crop_start": (b, 3),
            "crop_size": (b, 3),
            "flip_axis": (b,),
            "hist_shift": (b,),
            "hist_points": (b, k),
            "smooth": (b,),
            "sigma": (b, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"{name} must have shape {shape}, got {got}")
        if k < 3:
            raise ValueError(f"hist_points needs at least 3 control points, got {k}")
        n = torch.as_tensor(tuple(spatial_shape), device=self.crop_size.device)
        end = self.crop_start + self.crop_size
        outside = (self.crop_size < 1) | (self.crop_start < 0) | (end > n)
        if bool(outside.any()):
            raise ValueError(
                f"every crop box must lie inside the volume of shape {tuple(spatial_shape)}"
            )


def reference_control_points(num_points: int) -> torch.Tensor:
    """MONAI's histogram-shift reference points, ``numpy.linspace(0, 1, K)``: (K,) float64."""
    step = 1.0 / (num_points - 1)
    points = torch.arange(num_points, dtype=torch.float64) * step
    points[-1] = 1.0  # numpy.linspace sets the stop exactly
    return points


def _resize_matrices(
    start: torch.Tensor, size: torch.Tensor, flip: torch.Tensor, n: int
) -> torch.Tensor:
    """Per-sample (n, n) matrices of one axis: crop ``[start, start + size)``, resize to n, flip.

    Row j holds the linear-interpolation weights of output voxel j: source index
    ``max(0, (j + 0.5) * size / n - 0.5)`` within the box (``interpolate``'s, align_corners
    False), its two neighbours clamped to the box. A flipped sample's rows are reversed.

    Args:
        start, size: (B,) int64, the box on this axis.
        flip: (B,) bool.
        n: the axis length (input and output).

    Returns:
        (B, n, n) float64 on the CPU.
    """
    start, size = start.cpu().double()[:, None], size.cpu().double()[:, None]
    j = torch.arange(n, dtype=torch.float64)[None]
    source = ((j + 0.5) * size / n - 0.5).clamp(min=0)
    below = source.floor()
    frac = source - below
    above = torch.minimum(below + 1, size - 1)
    rows = torch.zeros(start.shape[0], n, n, dtype=torch.float64)
    rows.scatter_add_(2, (start + below).long()[..., None], (1 - frac)[..., None])
    rows.scatter_add_(2, (start + above).long()[..., None], frac[..., None])
    return torch.where(flip.cpu()[:, None, None], rows.flip(1), rows)


def _along_axes(x: torch.Tensor, matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Apply one (B, n, n) matrix per spatial axis, z then y then x: ``out = M @ x`` per axis.

    Each product is one ``bmm`` that contracts the first spatial axis of the layout and writes
    the result with that axis last: (z, y, x) -> (y, x, z') -> (x, z', y') -> (z', y', x'). The
    transposed operands are strided views, which ``bmm`` takes as they are, so no product copies
    its input and the result comes back in (z, y, x) order.

    Args:
        x: (B, 1, D, H, W) float32.
        matrices: three (B, n, n) float32 tensors on ``x``'s device, for z, y and x.
    """
    b, _, d, h, w = x.shape
    y = x.reshape(b, d, h * w)
    for m, rest in zip(matrices, ((h, w * d), (w, d * h), (d, h * w)), strict=True):
        y = torch.bmm(y.transpose(1, 2), m.transpose(1, 2)).reshape(b, *rest)
    return y.reshape(b, 1, d, h, w)


def resized_crop_flip(
    x: torch.Tensor, start: torch.Tensor, size: torch.Tensor, flip_axis: torch.Tensor
) -> torch.Tensor:
    """Crop each sample's box, resize it back trilinearly and flip it: three batched matmuls.

    Reproduces MONAI ``Resize(shape, mode="trilinear", align_corners=False)`` of ``x[box]``
    followed by ``Flip(spatial_axis=flip_axis)``. Trilinear interpolation on an axis-aligned box
    is separable, so each axis is one per-sample (n, n) interpolation matrix (two weights per row,
    ``interpolate``'s source index and edge clamping; the flip reverses the rows), applied as a
    batched matrix product (see the module docstring for why not ``grid_sample``); the weights
    are computed in float64 and rounded once.

    Args:
        x: (B, 1, D, H, W) float32.
        start: (B, 3) int64, first voxel of each box (z, y, x).
        size: (B, 3) int64, side of each box.
        flip_axis: (B,) int64, spatial axis to flip, -1 for none.

    Returns:
        (B, 1, D, H, W) float32.
    """
    spatial = x.shape[2:]
    flip_axis = flip_axis.cpu()
    matrices = [
        _resize_matrices(start[:, axis], size[:, axis], flip_axis == axis, spatial[axis])
        .float()
        .to(x.device)
        for axis in range(3)
    ]
    return _along_axes(x, matrices)


def histogram_shift(x: torch.Tensor, points: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """MONAI ``RandHistogramShift``'s intensity map with given floating control points.

    For each sample, reference points ``reference_control_points(K)`` and ``points`` are scaled
    to the sample's ``[min, max]`` and every voxel is mapped by linear interpolation between them
    (MONAI's torch branch: slope and intercept per segment). The reference points are evenly
    spaced, so a voxel's segment is ``floor((v - min) / (max - min) * (K - 1))`` (MONAI finds it
    with ``searchsorted``; on a segment boundary both give the same value, the map being
    continuous). Samples not applied, and constant samples (which MONAI returns as they are),
    are unchanged; only the applied ones are computed.

    Args:
        x: (B, 1, D, H, W) float32.
        points: (B, K) float, floating control points in [0, 1].
        apply: (B,) bool.

    Returns:
        (B, 1, D, H, W) float32, a new tensor.
    """
    return _histogram_shift_(x.clone(), points, apply)


def _histogram_shift_(x: torch.Tensor, points: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """:func:`histogram_shift` written into ``x`` itself (the samples applied), which it returns."""
    chosen = apply.cpu().nonzero().flatten()
    if len(chosen) == 0:
        return x
    b, k = len(chosen), points.shape[1]
    index = chosen.to(x.device)
    flat = x[index].reshape(b, -1)
    lo, hi = torch.aminmax(flat, dim=1, keepdim=True)
    span = hi - lo
    ref = reference_control_points(k).float().to(x.device)[None]
    xp = ref * span + lo
    fp = points.cpu()[chosen].float().to(x.device) * span + lo
    slope = (fp[:, 1:] - fp[:, :-1]) / (xp[:, 1:] - xp[:, :-1])
    intercept = fp[:, :-1] - slope * xp[:, :-1]
    scale = torch.where(span > 0, (k - 1) / span, 0.0)
    # Each voxel's segment as an int32 row of the samples' flattened (b * (K - 1)) tables.
    segment = ((flat - lo) * scale).clamp_(0, k - 2).int()
    segment += torch.arange(0, b * (k - 1), k - 1, dtype=torch.int32, device=x.device)[:, None]
    segment = segment.view(-1)
    mapped = torch.addcmul(
        intercept.reshape(-1).index_select(0, segment),
        slope.reshape(-1).index_select(0, segment),
        flat.reshape(-1),
    ).view(b, -1)
    constant = span[:, 0] == 0
    if bool(constant.any()):  # MONAI returns a constant sample as it is
        mapped[constant] = flat[constant]
    x[index] = mapped.view(b, *x.shape[1:])
    return x


def _gaussian_kernels(sigma: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """MONAI's ``gaussian_1d(sigma, truncated=4.0, approx="erf")`` per sample and axis, on the CPU.

    Args:
        sigma: (B, 3) float.
        apply: (B,) bool; samples not applied get the unit kernel.

    Returns:
        (B, 3, 2R + 1) float32 kernels centred at R, zero beyond each kernel's own radius, where R
        is the largest radius in the batch (0 when no sample is smoothed).
    """
    sig = sigma.cpu().float()
    apply = apply.cpu()
    tail = torch.floor(torch.clamp(sig.double() * _TRUNCATED, min=0.5) + 0.5).long()
    tail = torch.where(apply[:, None], tail, 0)
    radius = int(tail.max())
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    t = (_INV_SQRT2 / sig.abs())[..., None]
    kernels = (0.5 * ((t * (offsets + 0.5)).erf() - (t * (offsets - 0.5)).erf())).clamp(min=0)
    kernels = torch.where(offsets.abs() <= tail[..., None], kernels, 0.0)
    return torch.where(apply[:, None, None], kernels, (offsets == 0).float())


def gaussian_smooth(x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """MONAI ``GaussianSmooth(sigma)`` per sample: separable erf kernels, zero padding.

    Each axis is a per-sample banded (n, n) matrix holding that sample's kernel (rows cut at the
    borders, which is zero padding), applied as a batched matrix product, z then y then x as
    MONAI filters. Only the samples in ``apply`` are computed.

    Args:
        x: (B, 1, D, H, W) float32.
        sigma: (B, 3) float, standard deviation in voxels per axis (z, y, x).
        apply: (B,) bool; samples not applied are unchanged.

    Returns:
        (B, 1, D, H, W) float32, a new tensor.
    """
    return _gaussian_smooth_(x.clone(), sigma, apply)


def _gaussian_smooth_(x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_smooth` written into ``x`` itself (the samples applied), which it returns."""
    chosen = apply.cpu().nonzero().flatten()
    if len(chosen) == 0:
        return x
    kernels = _gaussian_kernels(sigma.cpu()[chosen], torch.ones(len(chosen), dtype=torch.bool))
    radius = (kernels.shape[-1] - 1) // 2
    matrices = []
    for axis, n in enumerate(x.shape[2:]):
        offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # column - row
        inside = offset.abs() <= radius
        taps = kernels[:, axis][:, (offset.clamp(-radius, radius) + radius)]
        matrices.append(torch.where(inside, taps, 0.0).to(x.device))
    index = chosen.to(x.device)
    x[index] = _along_axes(x[index], matrices)
    return x


def clip_below_zero(x: torch.Tensor) -> torch.Tensor:
    """MONAI ``ThresholdIntensity(0.0, above=True, cval=0.0)``: values not above 0 become 0."""
    return _clip_below_zero_(x.clone())


def _clip_below_zero_(x: torch.Tensor) -> torch.Tensor:
    """:func:`clip_below_zero` in place: negative values and NaN become 0, +inf stays."""
    return x.clamp_(min=0).nan_to_num_(nan=0.0, posinf=float("inf"))


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(
            f"x must be a floating tensor of shape (B, 1, D, H, W), got {x.dtype} {tuple(x.shape)}"
        )


def apply_view_params(x: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Apply given per-sample view parameters to a batch.

    Args:
        x: (B, 1, D, H, W) floating tensor on any device; computed in float32.
        params: B samples' parameters (any device; small tensors are built on the CPU).

    Returns:
        (B, 1, D, H, W) tensor of ``x``'s dtype and device, values >= 0.

    Raises:
        ValueError: if ``x`` is not a floating (B, 1, D, H, W) tensor or ``params`` do not fit it.
    """
    _check_input(x)
    if params.batch_size != x.shape[0]:
        raise ValueError(f"params are for {params.batch_size} samples, x has {x.shape[0]}")
    params.check(x.shape[2:])
    # resized_crop_flip returns a new tensor: the other steps write into it.
    y = resized_crop_flip(x.float(), params.crop_start, params.crop_size, params.flip_axis)
    y = _histogram_shift_(y, params.hist_points, params.hist_shift)
    y = _gaussian_smooth_(y, params.sigma, params.smooth)
    return _clip_below_zero_(y).to(x.dtype)


class BatchedSSLViews(nn.Module):
    """One augmented view of every sample of a batch (docs/method.md section 4), on its device.

    Draws independent parameters per sample (see :meth:`draw_params`) from a CPU
    ``torch.Generator`` and applies them with :func:`apply_view_params`; the defaults are the
    method's. The generator advances with every call: under DDP give each rank its own seed.

    Args:
        seed: an int seeds a new CPU generator; a CPU ``torch.Generator`` is used (and advanced)
            as it is.
        scale: (low, high) range of the crop's kept fraction of every side, 0 < low <= high <= 1.
        flip_prob: probability of a flip.
        hist_prob: probability of the histogram shift.
        num_control_points: K, control points of the histogram shift, at least 3.
        smooth_prob: probability of Gaussian smoothing.
        sigma: (low, high) range of the smoothing's per-axis sigma in voxels, low > 0.
    """

    def __init__(
        self,
        seed: int | torch.Generator,
        *,
        scale: tuple[float, float] = (0.5, 1.0),
        flip_prob: float = 0.5,
        hist_prob: float = 0.5,
        num_control_points: int = 10,
        smooth_prob: float = 0.5,
        sigma: tuple[float, float] = (0.25, 1.5),
    ) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        for name, p in (
            ("flip_prob", flip_prob),
            ("hist_prob", hist_prob),
            ("smooth_prob", smooth_prob),
        ):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if num_control_points < 3:
            raise ValueError(f"num_control_points must be at least 3, got {num_control_points}")
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma must satisfy 0 < low <= high, got {sigma}")
        if isinstance(seed, torch.Generator):
            if seed.device.type != "cpu":
                raise ValueError(f"the generator must live on the CPU, got {seed.device}")
            self.generator = seed
        else:
            self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.scale, self.sigma = tuple(scale), tuple(sigma)
        self.flip_prob, self.hist_prob, self.smooth_prob = flip_prob, hist_prob, smooth_prob
        self.num_control_points = num_control_points

    def _uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return low + (high - low) * u

    def draw_params(self, batch_size: int, spatial_shape: Sequence[int]) -> ViewParams:
        """Draw B samples' parameters on the CPU, as the per-item MONAI chain draws them.

        Every draw is made for every sample, applied or not, so that the generator advances by
        the same amount per call. Crop: ``s ~ U(scale)``, side ``max(1, round(s * n))`` (round
        half to even, as Python's ``round``), start uniform in ``[0, n - side]``. Flip axis
        uniform in {0, 1, 2}. Control points as MONAI's ``RandHistogramShift.randomize``. Sigma
        ``~ U(sigma)`` per axis.

        Args:
            batch_size: B.
            spatial_shape: (D, H, W) of the volumes.

        Returns:
            The parameters, every tensor on the CPU.
        """
        if len(spatial_shape) != 3:
            raise ValueError(f"spatial_shape must be (D, H, W), got {tuple(spatial_shape)}")
        b, k = batch_size, self.num_control_points
        n = torch.tensor(tuple(spatial_shape), dtype=torch.float64)
        frac = self._uniform(b, 1, low=self.scale[0], high=self.scale[1])
        size = torch.clamp(torch.round(frac * n), min=1)
        start = torch.minimum(torch.floor(self._uniform(b, 3) * (n - size + 1)), n - size)
        flip = self._uniform(b) < self.flip_prob
        axis = torch.randint(0, 3, (b,), generator=self.generator)
        hist = self._uniform(b) < self.hist_prob
        ref = reference_control_points(k)
        steps = self._uniform(b, k - 2)
        points = ref.repeat(b, 1)
        for i in range(1, k - 1):
            previous = points[:, i - 1]
            points[:, i] = previous + (ref[i + 1] - previous) * steps[:, i - 1]
        smooth = self._uniform(b) < self.smooth_prob
        sigma = self._uniform(b, 3, low=self.sigma[0], high=self.sigma[1])
        return ViewParams(
            crop_start=start.long(),
            crop_size=size.long(),
            flip_axis=torch.where(flip, axis, -1),
            hist_shift=hist,
            hist_points=points,
            smooth=smooth,
            sigma=sigma,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment every sample with its own fresh parameters.

        Args:
            x: (B, 1, D, H, W) floating tensor (float32, bfloat16, float16) on any device.

        Returns:
            (B, 1, D, H, W) tensor of ``x``'s dtype and device, values >= 0.
        """
        _check_input(x)
        return apply_view_params(x, self.draw_params(x.shape[0], x.shape[2:]))

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, flip_prob={self.flip_prob}, hist_prob={self.hist_prob}, "
            f"num_control_points={self.num_control_points}, smooth_prob={self.smooth_prob}, "
            f"sigma={self.sigma}"
        )
