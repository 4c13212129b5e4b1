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
   ``[min, max]``; voxels are mapped piecewise linearly; a constant sample is left as is, and
   one holding NaN or inf becomes NaN everywhere, as in MONAI (the clip then makes it 0);
4. Gaussian smoothing, p 0.5, per-axis sigma ``~ U(0.25, 1.5)`` voxels (MONAI
   ``RandGaussianSmooth``): the ``"erf"`` kernel, truncated at radius
   ``int(max(4 sigma, 0.5) + 0.5)``, not renormalised (it sums to slightly below 1, as MONAI's),
   separable, zero padding;
5. clip below at 0 (MONAI ``ThresholdIntensity(0, above=True, cval=0)``; NaN becomes 0 as there).

Steps 1 and 2 are separable: on each axis, a per-sample linear interpolation between two source
planes, lines or voxels (the flip reverses the taps), computed x, then z, then y with two gathers
and one ``lerp`` per axis; the x pass, the only one that gathers voxel by voxel, reads just the
crop box (a fraction s^2 of the output's voxels), the z and y passes copy whole rows. Step 4 is one
batched matrix product per axis with a banded matrix holding each sample's kernel; when no
histogram shift comes between (a quarter of the views), it is folded into the crop: the product
of the smoothing and interpolation matrices, one matrix product per axis for both steps. The
histogram shift and smoothing compute only the samples they apply to, in the tensor the crop
returned. On the CPU the samples are computed one at a time (:func:`apply_view_params`'s
``chunk``): a batch's 4 MB intermediates went back to the operating system and were faulted in
again on every call (about 400-600 page faults per view), one sample's stay in the allocator.
There each sample goes from crop to clip into its slot of the output while it is in the cache,
and its histogram-shift tables (10 numbers) are computed with numpy, whose cost per operation on
such small arrays is a fraction of torch's; :meth:`BatchedSSLViews.views_of` computes the four
views of an SSL batch in one call, so that the per-batch tables (crop taps, smoothing matrices)
are built once for them.

Measured on this project's 2-core CPU (one thread, batches of 8 views of 50^3, the machine's speed
varies by up to 1.5x within an hour, so only figures from one run compare). 2026-12-01: one
``affine_grid`` + ``grid_sample`` pass took 7.1 ms per view, a grouped ``conv3d`` smoothing 6.7
ms; dense per-axis matrix products for the crop (about 1.0 ms) and the smoothing (1.3 ms) gave a
chain of 2.6 ms per view. 2026-12-02, the two versions interleaved in one process, 7 runs of 64
views each: 3.52 ms per view with those dense products against 1.58 ms with the steps above
(medians; a slow hour: the dense version had measured 1.8-2.0 ms an hour before). About a third
of what remains is the dispatch of small operations (0.4-0.6 ms per view on 8^3 views). GPUs have
not been measured.

Parameters are drawn with a CPU ``torch.Generator`` in float64 (MONAI draws float64 with numpy)
and cast to float32 where MONAI casts them; the crop's taps and gather indices and the
smoothing kernels are built on the CPU, then moved to the input's device, so that a seed gives the
same parameters and, to float rounding, the same views on every device. :func:`apply_view_params`
applies given parameters, which is what the equivalence tests against MONAI rely on.

Difference from MONAI: none by design, only float32 rounding. The crop's interpolation weights
are computed in float64 and rounded once, where ``interpolate`` computes source positions in
float32; on uniform noise in [0, 1] (the steepest data in that range) the views differ by up to
5.1e-6 at 50^3 (1.4e-6 at 20^3). The histogram shift's map can steepen such a difference by its
largest slope; the smoothing (kernel sum below 1) and clip cannot. Histogram shift, smoothing and
clip alone agree with MONAI to 3e-7. tests/transforms/test_batched.py asserts 1e-5 per step and
1e-5 * (1 + steepest slope) for the whole chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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

    @staticmethod
    def cat(parts: Sequence[ViewParams]) -> ViewParams:
        """The parameters of several batches, one after the other, as one batch's."""
        fields = ViewParams.__dataclass_fields__
        return ViewParams(**{f: torch.cat([getattr(p, f) for p in parts]) for f in fields})

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


def _axis_taps(
    start: torch.Tensor, size: torch.Tensor, flip: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample linear-interpolation taps of one axis: crop ``[start, start + size)``, resize to
    n, flip.

    Output voxel j reads source index ``max(0, (j + 0.5) * size / n - 0.5)`` within the box
    (``interpolate``'s, align_corners False): its two neighbours, clamped to the box, and the
    fraction between them. A flipped sample's taps are reversed.

    Args:
        start, size: (B,) int64, the box on this axis.
        flip: (B,) bool.
        n: the axis length (input and output).

    Returns:
        ``(lower, upper, weight)``: (B, n) int64 absolute voxel indices and (B, n) float32 weights
        of ``upper`` (computed in float64, rounded once), on the CPU.
    """
    # numpy: the same float64 operations, cheaper on arrays of this size.
    start = start.cpu().numpy().astype(np.float64)[:, None]
    size = size.cpu().numpy().astype(np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None]
    source = np.maximum((j + 0.5) * size / n - 0.5, 0)
    below = np.floor(source)
    taps = (start + below, start + np.minimum(below + 1, size - 1), source - below)
    flip = flip.cpu().numpy()[:, None]
    lower, upper, weight = (np.where(flip, tap[:, ::-1], tap) for tap in taps)
    return (
        torch.from_numpy(lower.astype(np.int64)),
        torch.from_numpy(upper.astype(np.int64)),
        torch.from_numpy(weight.astype(np.float32)),
    )


def _lerp_rows(
    rows: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Row i of the result is ``lerp(rows[lower[i]], rows[upper[i]], weight[i])``.

    Args:
        rows: (R, ...), any strides.
        lower, upper: (N,) int64 row indices on ``rows``' device.
        weight: (N,) float32.
    """
    weight = weight.view(-1, *(1,) * (rows.ndim - 1))
    return rows.index_select(0, lower).lerp_(rows.index_select(0, upper), weight)


def _crop_taps(
    start: torch.Tensor, size: torch.Tensor, flip_axis: torch.Tensor, spatial: Sequence[int]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`_axis_taps` of the three axes (z, y, x) for a whole batch, on the CPU."""
    flip_axis = flip_axis.cpu()
    return [
        _axis_taps(start[:, axis], size[:, axis], flip_axis == axis, n)
        for axis, n in enumerate(spatial)
    ]


@dataclass(frozen=True)
class _CropPlan:
    """A batch's crop taps as the gather indices of each chunk of ``chunk`` samples.

    Each chunk reads only ``boxes[c]`` (z, y, x slices: the union of its samples' crop boxes; one
    sample's own box when ``chunk`` is 1). The x pass gathers voxels of that box (indices
    relative to its first x); the z pass picks rows of the chunk's (y, x) planes, row
    ``i * dz + k`` for the chunk's sample i and plane k of the box; the y pass picks rows of
    the x lines, ``(i * d + k) * hy + m`` for output plane k and line m of the box.
    """

    chunk: int
    boxes: list[tuple[slice, slice, slice]]
    x_taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (B, W) each
    z_taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (B, D) each
    y_taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (B, D * H) each

    def crop(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Crop, resize and flip ``x``, the chunk of samples from ``start``: a new tensor."""
        b, _, d, h, w = x.shape
        part = slice(start, start + b)
        z_box, y_box, x_box = self.boxes[start // self.chunk]
        inside = x.view(b, d, h, w)[:, z_box, y_box, x_box]
        dz, hy = inside.shape[1:3]
        lower, upper, weight = (t[part][:, None, None] for t in self.x_taps)
        shape = (b, dz, hy, w)
        y = inside.gather(3, lower.expand(shape))
        y.lerp_(inside.gather(3, upper.expand(shape)), weight)
        y = _lerp_rows(y.view(b * dz, hy * w), *(t[part].reshape(-1) for t in self.z_taps))
        y = _lerp_rows(y.view(b * d * hy, w), *(t[part].reshape(-1) for t in self.y_taps))
        return y.view(b, 1, d, h, w)


def _crop_plan(
    taps: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    spatial: Sequence[int],
    chunk: int,
    device: torch.device,
) -> _CropPlan:
    """The :class:`_CropPlan` of a batch's :func:`_crop_taps`, its tensors on ``device``."""
    d, h, _ = spatial
    # numpy: integer arithmetic on a few hundred indices, cheaper than torch's per operation.
    (z_lo, z_hi, z_w), (y_lo, y_hi, y_w), (x_lo, x_hi, x_w) = (
        tuple(t.numpy() for t in axis) for axis in taps
    )
    b = z_lo.shape[0]
    pos = np.arange(b) % chunk
    starts = np.arange(0, b, chunk)
    boxes, first, length = [], [], []
    for lower, upper in ((z_lo, z_hi), (y_lo, y_hi), (x_lo, x_hi)):
        low = np.minimum.reduceat(lower.min(1), starts)
        high = np.maximum.reduceat(upper.max(1) + 1, starts)
        boxes.append(list(zip(low.tolist(), high.tolist(), strict=True)))
        first.append(np.repeat(low, chunk)[:b])
        length.append(np.repeat(high - low, chunk)[:b])
    dz, hy = length[0][:, None], length[1][:, None, None]
    z_rows = pos[:, None] * dz - first[0][:, None]
    y_rows = (pos[:, None, None] * d + np.arange(d)[None, :, None]) * hy - first[1][:, None, None]
    flat = (b, -1)
    first_x = first[2][:, None]
    taps = (
        (x_lo - first_x, x_hi - first_x, x_w),
        (z_lo + z_rows, z_hi + z_rows, z_w),
        ((y_lo[:, None] + y_rows).reshape(flat), (y_hi[:, None] + y_rows).reshape(flat),
         np.repeat(y_w[:, None], d, axis=1).reshape(flat)),
    )  # fmt: skip
    x_taps, z_taps, y_taps = (
        tuple(torch.from_numpy(np.ascontiguousarray(t)).to(device) for t in axis) for axis in taps
    )
    return _CropPlan(
        chunk=chunk,
        boxes=[tuple(slice(*box) for box in axes) for axes in zip(*boxes, strict=True)],
        x_taps=x_taps,
        z_taps=z_taps,
        y_taps=y_taps,
    )


def resized_crop_flip(
    x: torch.Tensor, start: torch.Tensor, size: torch.Tensor, flip_axis: torch.Tensor
) -> torch.Tensor:
    """Crop each sample's box, resize it back trilinearly and flip it: one pass per axis.

    Reproduces MONAI ``Resize(shape, mode="trilinear", align_corners=False)`` of ``x[box]``
    followed by ``Flip(spatial_axis=flip_axis)``. Trilinear interpolation on an axis-aligned box
    is separable: each axis is a per-sample linear interpolation between two source planes, rows
    or voxels (``interpolate``'s source index and edge clamping; the flip reverses the taps),
    applied x, z, y with two gathers and one ``lerp`` per axis (see the module docstring for the
    costs measured against ``grid_sample`` and dense matrix products); the taps' weights are
    computed in float64 and rounded once.

    Args:
        x: (B, 1, D, H, W) float32.
        start: (B, 3) int64, first voxel of each box (z, y, x).
        size: (B, 3) int64, side of each box.
        flip_axis: (B,) int64, spatial axis to flip, -1 for none.

    Returns:
        (B, 1, D, H, W) float32.
    """
    if x.shape[0] == 0:
        return x.clone()
    taps = _crop_taps(start, size, flip_axis, x.shape[2:])
    return _crop_plan(taps, x.shape[2:], x.shape[0], x.device).crop(x, 0)


def _interpolation_matrices(
    taps: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], spatial: Sequence[int]
) -> list[torch.Tensor]:
    """The taps (CPU) as dense per-sample (n, n) float64 interpolation matrices, z, y, x: row j
    holds output voxel j's two weights."""
    matrices = []
    for (lower, upper, weight), n in zip(taps, spatial, strict=True):
        w = weight.double()[..., None]
        m = torch.zeros(lower.shape[0], n, n, dtype=torch.float64)
        m.scatter_add_(2, lower[..., None], 1 - w).scatter_add_(2, upper[..., None], w)
        matrices.append(m)
    return matrices


def _on(device: torch.device, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


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


def _shift_every_(x: torch.Tensor, points: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """:func:`histogram_shift` of every sample of a contiguous ``x``, written into it.

    Args:
        x: (B, 1, D, H, W) float32, contiguous.
        points: (B, K) float32 floating control points on ``x``'s device.
        reference: (1, K) float32 reference points on ``x``'s device.
    """
    b, k = points.shape
    flat = x.view(b, -1)
    # amin and amax: aminmax along a dim took 25 times as long here (CPU, 2026-12-02).
    lo = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - lo
    xp, fp = reference * span + lo, points * span + lo
    slope = fp.diff(dim=1) / xp.diff(dim=1)
    intercept = fp[:, :-1] - slope * xp[:, :-1]
    # MONAI returns a constant sample as it is (slope 1, intercept 0). A sample holding NaN or
    # inf has a span that is not finite and NaN tables, which make every voxel NaN, as MONAI's
    # (the clip then makes them 0); its segments are NaN, mapped to 0 to stay in the tables.
    constant = span == 0
    slope, intercept = slope.where(~constant, 1.0), intercept.where(~constant, 0.0)
    scale = torch.where(constant, 0.0, (k - 1) / span)
    # Each voxel's segment as an int32 row of the samples' flattened (b * (K - 1)) tables.
    segment = torch.sub(flat, lo).mul_(scale).nan_to_num_(0.0).clamp_(0, k - 2).int()
    if b > 1:
        segment += torch.arange(0, b * (k - 1), k - 1, dtype=torch.int32, device=x.device)[:, None]
    segment = segment.view(-1)
    torch.addcmul(
        intercept.reshape(-1).index_select(0, segment),
        slope.reshape(-1).index_select(0, segment),
        flat.reshape(-1),
        out=flat.view(-1),
    )
    return x


def _shift_one_(x: torch.Tensor, points: np.ndarray, reference: np.ndarray) -> None:
    """:func:`_shift_every_` of one contiguous CPU sample, written into it, with its (K - 1)
    tables computed by numpy in float32: the same IEEE operations, so the same values, at a
    fraction of the per-operation cost of torch on tensors of 10 elements.

    Args:
        x: a contiguous float32 CPU tensor, one sample.
        points: (K,) float32 floating control points.
        reference: (K,) float32 reference points.
    """
    flat = x.view(-1)
    lo, hi = np.float32(flat.amin().item()), np.float32(flat.amax().item())
    span = hi - lo
    if span == 0:  # MONAI returns a constant sample as it is
        return
    if not np.isfinite(span):  # NaN or inf in the sample: every voxel NaN, as MONAI's
        flat.fill_(float("nan"))
        return
    xp, fp = reference * span + lo, points * span + lo
    slope = np.diff(fp) / np.diff(xp)
    intercept = fp[:-1] - slope * xp[:-1]
    scale = (np.float32(1) / span) * np.float32(len(points) - 1)  # torch's (K - 1) / span
    segment = torch.sub(flat, float(lo)).mul_(float(scale)).clamp_(0, len(points) - 2).int()
    torch.addcmul(
        torch.from_numpy(intercept).index_select(0, segment),
        torch.from_numpy(slope).index_select(0, segment),
        flat,
        out=flat,
    )


def _histogram_shift_(x: torch.Tensor, points: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """:func:`histogram_shift` written into ``x`` itself (the samples applied), which it returns."""
    chosen = apply.cpu().nonzero().flatten()
    if len(chosen) == 0:
        return x
    chosen_points = points.cpu()[chosen].float().to(x.device)
    reference = reference_control_points(points.shape[1]).float().to(x.device)[None]
    if len(chosen) == x.shape[0] and x.is_contiguous():
        return _shift_every_(x, chosen_points, reference)
    index = chosen.to(x.device)
    x[index] = _shift_every_(x[index].contiguous(), chosen_points, reference)
    return x


def _along_axes(
    x: torch.Tensor, matrices: Sequence[torch.Tensor], *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply one (B, n_out, n_in) matrix per spatial axis, z then y then x: ``M @ x`` per axis.

    Each product is one ``bmm`` that contracts the first spatial axis of the layout and writes
    the result with that axis last: (z, y, x) -> (y, x, z') -> (x, z', y') -> (z', y', x'). The
    transposed operands are strided views, which ``bmm`` takes as they are, so no product copies
    its input and the result comes back in (z, y, x) order.

    Args:
        x: (B, 1, D, H, W) float32 (D, H, W the matrices' n_in).
        matrices: three (B, n_out, n_in) float32 tensors on ``x``'s device, for z, y and x.
        out: a contiguous tensor of B * D' * H' * W' elements that the last product writes (it
            may be ``x`` itself: the first product has read ``x`` by then), or None for a new one.

    Returns:
        (B, 1, D', H', W'), the matrices' n_out (``out``'s storage when given).
    """
    b, _, d, h, w = x.shape
    d2, h2, w2 = (m.shape[1] for m in matrices)
    y = x.reshape(b, d, h * w)
    for m, rest in zip(matrices[:2], ((h, w * d2), (w, d2 * h2)), strict=True):
        y = torch.bmm(y.transpose(1, 2), m.transpose(1, 2)).reshape(b, *rest)
    last = out.view(b, d2 * h2, w2) if out is not None else None
    y = torch.bmm(y.transpose(1, 2), matrices[2].transpose(1, 2), out=last)
    return y.view(b, 1, d2, h2, w2)


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


def _smooth_matrices(sigma: torch.Tensor, spatial: Sequence[int]) -> list[torch.Tensor]:
    """Each sample's banded (n, n) smoothing matrix per axis (z, y, x): three (B, n, n) float32
    on the CPU (see :func:`gaussian_smooth`)."""
    kernels = _gaussian_kernels(sigma.cpu(), torch.ones(sigma.shape[0], dtype=torch.bool))
    b, _, taps = kernels.shape
    radius = (taps - 1) // 2
    matrices = []
    for axis, n in enumerate(spatial):
        # Row i of a Toeplitz matrix is the window [n - 1 - i, 2n - 1 - i) of the kernel padded
        # to 2n - 1 taps centred at n - 1: windows of the padded kernel in reverse order.
        padded = kernels.new_zeros(b, 2 * n - 1 + 2 * radius)
        padded[:, n - 1 : n + 2 * radius] = kernels[:, axis]
        matrices.append(padded[:, radius : 2 * n - 1 + radius].unfold(1, n, 1).flip(1))
    return matrices


def _smooth_with_(
    x: torch.Tensor, matrices: Sequence[torch.Tensor], apply: torch.Tensor
) -> torch.Tensor:
    """Smooth the samples in ``apply`` with their matrices (on ``x``'s device, all B samples'):
    ``x`` written into, or a new tensor when every sample is smoothed; returned."""
    chosen = apply.cpu().nonzero().flatten()
    if len(chosen) == 0:
        return x
    if len(chosen) == x.shape[0]:
        return _along_axes(x, matrices)
    index = chosen.to(x.device)
    x[index] = _along_axes(x[index], [m[index] for m in matrices])
    return x


def _gaussian_smooth_(x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_smooth` written into ``x`` itself or into a new tensor, which it returns."""
    if not bool(apply.any()):
        return x
    return _smooth_with_(x, _on(x.device, _smooth_matrices(sigma, x.shape[2:])), apply)


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


def _one_sample_at_a_time(
    samples: Sequence[torch.Tensor],
    out: torch.Tensor,
    plan: _CropPlan,
    params: ViewParams,
    matrices: Sequence[torch.Tensor] | None,
    folded: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> None:
    """Compute every view into ``out`` one sample at a time (``chunk`` 1, the CPU's default).

    The same operations as the chunked loop of :func:`apply_view_params` on one sample, in the
    same order, so the same values bit for bit; each sample goes from crop to clip while its
    voxels are in the cache, the crop's last pass and the last smoothing product write into the
    sample's slot of ``out``, and the per-sample index tables are split once per batch, which
    leaves about a third of the chunked loop's small operations per sample.

    Args:
        samples: B (D, H, W) float32 inputs.
        out: (B, 1, D, H, W) float32, written.
        plan: the batch's :class:`_CropPlan` with ``chunk`` 1.
        params: the batch's parameters (CPU flags).
        matrices: the per-axis (B, n, n) smoothing matrices on ``out``'s device, or None when no
            sample is smoothed.
        folded: the (n, n) products of smoothing and interpolation matrices per axis of each
            sample smoothed without a histogram shift, by sample.
    """
    d, h, w = out.shape[2:]
    hist, smooth = params.hist_shift.tolist(), params.smooth.tolist()
    x_lo, x_hi, x_w = (t[:, None, None].unbind(0) for t in plan.x_taps)
    z_lo, z_hi = (t.unbind(0) for t in plan.z_taps[:2])
    y_lo, y_hi = (t.unbind(0) for t in plan.y_taps[:2])
    z_w, y_w = (t[2][..., None].unbind(0) for t in (plan.z_taps, plan.y_taps))
    points = params.hist_points.cpu().float().numpy()
    reference = reference_control_points(points.shape[1]).float().numpy()
    smoothing = [m.split(1) for m in matrices] if matrices is not None else None
    for i, (x, slot) in enumerate(zip(samples, out[:, 0], strict=True)):
        box = plan.boxes[i]
        inside = x[box]
        if smooth[i] and not hist[i]:
            # The folded matrices' columns outside the crop box are zero: only the voxels
            # inside are multiplied.
            m = [f[None, :, cut] for f, cut in zip(folded[i], box, strict=True)]
            _along_axes(inside[None, None], m, out=slot)
        else:
            dz, hy = inside.shape[:2]
            shape = (dz, hy, w)
            y = inside.gather(2, x_lo[i].expand(shape))
            rows = y.lerp_(inside.gather(2, x_hi[i].expand(shape)), x_w[i]).view(dz, hy * w)
            y = rows.index_select(0, z_lo[i]).lerp_(rows.index_select(0, z_hi[i]), z_w[i])
            rows, lines = y.view(d * hy, w), slot.view(d * h, w)
            torch.index_select(rows, 0, y_lo[i], out=lines)
            lines.lerp_(rows.index_select(0, y_hi[i]), y_w[i])
            if hist[i]:
                _shift_one_(slot, points[i], reference)
            if smooth[i]:
                _along_axes(slot[None, None], [m[i] for m in smoothing], out=slot)
        _clip_below_zero_(slot)


def apply_view_params(
    x: torch.Tensor, params: ViewParams, *, chunk: int | None = None
) -> torch.Tensor:
    """Apply given per-sample view parameters to a batch.

    Args:
        x: (B, 1, D, H, W) floating tensor on any device; computed in float32.
        params: B samples' parameters (any device; small tensors are built on the CPU).
        chunk: samples computed together; the default is 1 on the CPU and the whole batch
            elsewhere. The result does not depend on it beyond float rounding. On the CPU a
            whole batch's intermediate tensors (4 MB each for 8 views of 50^3) are returned to
            the operating system and faulted in again on every call, while one sample's stay in
            the allocator and the cache: measured here (2026-12-02, one thread), 1.32 ms per view
            and 14 page faults one sample at a time, 2.70 ms and 469 in chunks of 8.

    Returns:
        (B, 1, D, H, W) tensor of ``x``'s dtype and device, values >= 0.

    Raises:
        ValueError: if ``x`` is not a floating (B, 1, D, H, W) tensor or ``params`` do not fit it,
            or ``chunk`` is below 1.
    """
    _check_input(x)
    if params.batch_size != x.shape[0]:
        raise ValueError(f"params are for {params.batch_size} samples, x has {x.shape[0]}")
    return _apply([x], params, chunk)[0]


def _apply(
    batches: Sequence[torch.Tensor], params: ViewParams, chunk: int | None
) -> list[torch.Tensor]:
    """:func:`apply_view_params` of the batches' samples in order, ``params`` for all of them:
    one view per batch, each of its batch's shape (the batches checked to agree)."""
    x = batches[0]
    spatial = x.shape[2:]
    params.check(spatial)
    b = params.batch_size
    if chunk is None:
        chunk = 1 if x.device.type == "cpu" else max(1, b)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    out = torch.empty((b, 1, *spatial), dtype=torch.float32, device=x.device)
    sizes = [batch.shape[0] for batch in batches]
    if b == 0:
        return list(out.to(x.dtype).split(sizes))
    # The small per-sample tables are built once for the batch, then sliced per chunk.
    taps = _crop_taps(params.crop_start, params.crop_size, params.flip_axis, spatial)
    plan = _crop_plan(taps, spatial, chunk, x.device)
    hist, smooth = params.hist_shift.cpu(), params.smooth.cpu()
    # Smoothing right after the crop (no histogram shift in between) is folded into the crop:
    # on each axis, one product with the smoothing matrix times the interpolation matrix.
    fold = smooth & ~hist
    matrices = _smooth_matrices(params.sigma, spatial) if bool(smooth.any()) else None
    on_device = _on(x.device, matrices) if matrices is not None else None
    products, index = None, fold.nonzero().flatten()
    if matrices is not None and len(index):
        crops = _interpolation_matrices([[t[index] for t in tap] for tap in taps], spatial)
        products = [(m[index].double() @ r).float() for m, r in zip(matrices, crops, strict=True)]
    if chunk == 1:
        samples = [sample[0] for batch in batches for sample in batch.float().unbind(0)]
        folded = {}
        if products is not None:
            per_sample = zip(*(p.unbind(0) for p in _on(x.device, products)), strict=True)
            folded = dict(zip(index.tolist(), per_sample, strict=True))
        _one_sample_at_a_time(samples, out, plan, params, on_device, folded)
        return list(out.to(x.dtype).split(sizes))
    folded = None
    if products is not None:
        folded = _on(
            x.device, [p.new_zeros((b, *p.shape[1:])).index_copy_(0, index, p) for p in products]
        )
    x32 = torch.cat([batch.float() for batch in batches]) if len(batches) > 1 else x.float()
    points = params.hist_points.to(x.device, torch.float32)
    reference = reference_control_points(points.shape[1]).float().to(x.device)[None]
    hist_all = [bool(part.all()) for part in hist.split(chunk)]
    hist_any = [bool(part.any()) for part in hist.split(chunk)]
    smooth_any = [bool(part.any()) for part in (smooth & ~fold).split(chunk)]
    fold_all = [bool(part.all()) for part in fold.split(chunk)]
    for c, start in enumerate(range(0, b, chunk)):
        part = slice(start, start + chunk)
        if fold_all[c]:
            # The folded matrices' columns outside the chunk's crop boxes are zero: only the
            # voxels inside are multiplied.
            box = plan.boxes[c]
            inside = x32[part][(slice(None), slice(None), *box)]
            y = _along_axes(inside, [m[part][..., cut] for m, cut in zip(folded, box, strict=True)])
        else:
            # The crop returns a new tensor: the other steps write into it.
            y = plan.crop(x32[part], start)
            if hist_all[c]:
                y = _shift_every_(y, points[part], reference)
            elif hist_any[c]:
                y = _histogram_shift_(y, params.hist_points[part], hist[part])
            if smooth_any[c]:
                y = _smooth_with_(y, [m[part] for m in on_device], smooth[part])
        torch.clamp(y, min=0, out=out[part]).nan_to_num_(nan=0.0, posinf=float("inf"))
    return list(out.to(x.dtype).split(sizes))


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

    def _uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> np.ndarray:
        # Drawn by torch's generator, computed on with numpy: the same float64 operations at a
        # fraction of torch's cost per operation on arrays of a batch's size.
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64).numpy()
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
        n = np.array(tuple(spatial_shape), dtype=np.float64)
        frac = self._uniform(b, 1, low=self.scale[0], high=self.scale[1])
        size = np.maximum(np.round(frac * n), 1)  # numpy rounds half to even, as torch
        start = np.minimum(np.floor(self._uniform(b, 3) * (n - size + 1)), n - size)
        flip = self._uniform(b) < self.flip_prob
        axis = torch.randint(0, 3, (b,), generator=self.generator).numpy()
        hist = self._uniform(b) < self.hist_prob
        ref = reference_control_points(k).numpy()
        steps = self._uniform(b, k - 2)
        points = np.tile(ref, (b, 1))
        for i in range(1, k - 1):
            previous = points[:, i - 1]
            points[:, i] = previous + (ref[i + 1] - previous) * steps[:, i - 1]
        smooth = self._uniform(b) < self.smooth_prob
        sigma = self._uniform(b, 3, low=self.sigma[0], high=self.sigma[1])
        return ViewParams(
            crop_start=torch.from_numpy(start.astype(np.int64)),
            crop_size=torch.from_numpy(size.astype(np.int64)),
            flip_axis=torch.from_numpy(np.where(flip, axis, -1)),
            hist_shift=torch.from_numpy(hist),
            hist_points=torch.from_numpy(points),
            smooth=torch.from_numpy(smooth),
            sigma=torch.from_numpy(sigma),
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

    def views_of(self, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One augmented view of every sample of each batch, the batches computed together.

        The parameters are drawn batch after batch, as calling the module on each in turn draws
        them, so the views are those calls' (bit for bit on the CPU, where samples are computed
        one at a time), while the per-batch tables are built once for all of them: the four
        views of an SSL batch, ``views_of([lesion, lesion, negative, negative])``, cost about
        a fifth less CPU time this way than in four calls (batches of 8 of 50^3).

        Args:
            batches: (B_i, 1, D, H, W) floating tensors of one dtype, device and spatial shape.

        Returns:
            One (B_i, 1, D, H, W) tensor per batch, of the batches' dtype and device, values >= 0.
        """
        if not batches:
            raise ValueError("views_of needs at least one batch")
        for x in batches:
            _check_input(x)
        first = batches[0]
        for x in batches[1:]:
            if x.shape[1:] != first.shape[1:] or x.dtype != first.dtype or x.device != first.device:
                raise ValueError(
                    f"every batch must match the first one's dtype, device and shape "
                    f"{tuple(first.shape[1:])}; got {x.dtype} {x.device} {tuple(x.shape[1:])}"
                )
        params = ViewParams.cat([self.draw_params(x.shape[0], x.shape[2:]) for x in batches])
        return _apply(batches, params, None)

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, flip_prob={self.flip_prob}, hist_prob={self.hist_prob}, "
            f"num_control_points={self.num_control_points}, smooth_prob={self.smooth_prob}, "
            f"sigma={self.sigma}"
        )
