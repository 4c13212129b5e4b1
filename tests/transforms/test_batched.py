"""Batched SSL views: each step and the whole chain against per-item MONAI, draw distributions,
determinism, devices, shapes and bad inputs.

The oracles are the production chain itself: the members of ``ssl_view_transform()`` with their
random state set to the batched parameters of one sample and called with ``randomize=False``.

Tolerance. Every step reproduces MONAI's arithmetic; the crop's interpolation weights are rounded
differently, though (computed in float64 and rounded once; ``interpolate`` computes source
positions in float32). On uniform noise, where neighbouring voxels differ by up to 1, that gives
at most 5.1e-6 at 50^3 (1.4e-6 at 20^3), so 1e-5 holds with margin. In the whole chain the
histogram shift's piecewise-linear map then multiplies such an error by its steepest slope (and by
the shift of the sample's min/max that scales its control points), so the chain's bound is
1e-5 * (1 + steepest slope) per sample. Histogram shift, smoothing and clip alone agree with MONAI
to 3e-7.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from monai.transforms import (
    Flip,
    GaussianSmooth,
    RandAxisFlip,
    RandGaussianSmooth,
    RandHistogramShift,
    Resize,
    ThresholdIntensity,
)
from scipy import stats

from fmcib_core.transforms import (
    BatchedSSLViews,
    RandResizedCrop3d,
    ViewParams,
    apply_view_params,
    ssl_view_transform,
)
from fmcib_core.transforms.batched import (
    clip_below_zero,
    gaussian_smooth,
    histogram_shift,
    reference_control_points,
    resized_crop_flip,
)

ATOL = 1e-5
ALPHA = 1e-3  # significance of the distribution tests; seeded, so each passes or fails for good
DRAWS = 20_000


def _batch(b: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand((b, 1, *shape), generator=torch.Generator().manual_seed(seed))


def _params(seed: int, b: int, shape: tuple[int, int, int], p: float = 0.5) -> ViewParams:
    views = BatchedSSLViews(seed, flip_prob=p, hist_prob=p, smooth_prob=p)
    return views.draw_params(b, shape)


def _monai_crop(item: torch.Tensor, start, size) -> torch.Tensor:
    box = (slice(None),) + tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))
    return torch.as_tensor(Resize(item.shape[1:], mode="trilinear", align_corners=False)(item[box]))


def _monai_view(item: torch.Tensor, params: ViewParams, i: int) -> torch.Tensor:
    """Sample i's view by the production per-item chain, its random state set to ``params``."""
    _, crop, flip, hist, smooth, clip, _ = ssl_view_transform().transforms
    assert isinstance(crop, RandResizedCrop3d) and isinstance(flip, RandAxisFlip)
    assert isinstance(hist, RandHistogramShift) and isinstance(smooth, RandGaussianSmooth)
    assert isinstance(clip, ThresholdIntensity)
    crop._start = tuple(params.crop_start[i].tolist())
    crop._size = tuple(params.crop_size[i].tolist())
    flip._do_transform, flip._axis = bool(params.flip_axis[i] >= 0), int(params.flip_axis[i])
    hist._do_transform = bool(params.hist_shift[i])
    hist.reference_control_points = np.linspace(0, 1, params.hist_points.shape[1])
    hist.floating_control_points = params.hist_points[i].numpy()
    smooth._do_transform = bool(params.smooth[i])
    smooth.x, smooth.y, smooth.z = params.sigma[i].tolist()
    out = crop(item, randomize=False)
    out = flip(out, randomize=False)
    out = hist(out, randomize=False)
    out = smooth(out, randomize=False)
    return torch.as_tensor(clip(out))


def _steepest_slope(params: ViewParams, i: int) -> float:
    if not params.hist_shift[i]:
        return 0.0
    points = params.hist_points[i]
    return float((points.diff() / reference_control_points(points.shape[0]).diff()).max())


# Resized crop: a table of boxes in one batch of a non-cubic volume, so that each sample is
# checked against its own per-item MONAI result and axis mix-ups show.
BOXES_20_24_16 = [
    ((0, 0, 0), (20, 24, 16)),  # full box: identity
    ((3, 5, 2), (10, 12, 8)),
    ((10, 0, 8), (10, 24, 8)),  # touches the far faces
    ((7, 11, 4), (1, 1, 1)),  # one voxel: constant
    ((0, 12, 0), (13, 12, 9)),  # anisotropic box
    ((19, 23, 15), (1, 1, 1)),
]


def test_crop_table_matches_monai_resize_per_sample() -> None:
    shape = (20, 24, 16)
    x = _batch(len(BOXES_20_24_16), shape)
    start = torch.tensor([box[0] for box in BOXES_20_24_16])
    size = torch.tensor([box[1] for box in BOXES_20_24_16])
    no_flip = torch.full((len(BOXES_20_24_16),), -1)
    out = resized_crop_flip(x, start, size, no_flip)
    for i, (a, s) in enumerate(BOXES_20_24_16):
        torch.testing.assert_close(out[i], _monai_crop(x[i], a, s), atol=ATOL, rtol=0)


@pytest.mark.parametrize("n", [20, 24, 50])
def test_drawn_crops_match_randresizedcrop3d(n: int) -> None:
    b = 4 if n == 50 else 8
    params = _params(n, b, (n, n, n), p=0.0)
    x = _batch(b, (n, n, n), seed=n)
    out = resized_crop_flip(x, params.crop_start, params.crop_size, params.flip_axis)
    crop = RandResizedCrop3d()
    for i in range(b):
        crop._start = tuple(params.crop_start[i].tolist())
        crop._size = tuple(params.crop_size[i].tolist())
        torch.testing.assert_close(out[i], crop(x[i], randomize=False), atol=ATOL, rtol=0)


def test_flip_matches_monai_flip_per_sample() -> None:
    shape = (20, 24, 16)
    axes = torch.tensor([-1, 0, 1, 2, 2, 0])
    x = _batch(len(axes), shape)
    start = torch.zeros(len(axes), 3, dtype=torch.long)
    size = torch.tensor([shape] * len(axes))
    out = resized_crop_flip(x, start, size, axes)
    for i, axis in enumerate(axes.tolist()):
        expected = x[i] if axis < 0 else torch.as_tensor(Flip(spatial_axis=axis)(x[i]))
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_histogram_shift_matches_monai_per_sample() -> None:
    params = _params(1, 6, (20, 20, 20), p=1.0)
    apply = params.hist_shift.clone()
    apply[4] = False
    x = _batch(6, (20, 20, 20)) * 3 - 1  # any range: MONAI rescales to each sample's min and max
    x[5] = 0.25  # constant: returned as is
    out = histogram_shift(x, params.hist_points, apply)
    for i in range(6):
        shift = RandHistogramShift(num_control_points=10, prob=1.0)
        shift._do_transform = bool(apply[i])
        shift.reference_control_points = np.linspace(0, 1, 10)
        shift.floating_control_points = params.hist_points[i].numpy()
        if i == 5:
            with pytest.warns(UserWarning, match="single value"):
                expected = torch.as_tensor(shift(x[i], randomize=False))
        else:
            expected = torch.as_tensor(shift(x[i], randomize=False))
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(out[4:], x[4:], atol=0, rtol=0)


@pytest.mark.parametrize("chunk", [1, 6])
def test_histogram_shift_of_a_sample_holding_nan_or_inf_is_nan_as_in_monai(chunk: int) -> None:
    """MONAI's map of a sample whose min or max is not finite is NaN everywhere (the clip then
    gives 0); the batched shift gave an IndexError from its table look-up before."""
    x = _batch(6, (12, 12, 12)) * 2 - 0.5
    x[1, 0, 3, 4, 5], x[4, 0, 0, 0, 0] = float("nan"), float("inf")
    params = replace(
        _params(2, 6, (12, 12, 12), p=1.0),
        smooth=torch.zeros(6, dtype=torch.bool),
        crop_start=torch.zeros(6, 3, dtype=torch.long),
        crop_size=torch.full((6, 3), 12),
        flip_axis=torch.full((6,), -1),
    )
    shift = RandHistogramShift(num_control_points=10, prob=1.0)
    shift.set_random_state(0)
    assert bool(torch.as_tensor(shift(x[1])).isnan().all())
    out = apply_view_params(x, params, chunk=chunk)
    assert float(out[[1, 4]].abs().max()) == 0.0
    rest = [0, 2, 3, 5]
    torch.testing.assert_close(out[rest], apply_view_params(x[rest], _take(params, rest)))
    assert bool(histogram_shift(x, params.hist_points, params.hist_shift)[[1, 4]].isnan().all())


def _take(params: ViewParams, rows: list[int]) -> ViewParams:
    fields = ViewParams.__dataclass_fields__
    return ViewParams(**{f: getattr(params, f)[rows] for f in fields})


@pytest.mark.parametrize("k", [3, 10, 17])
def test_reference_points_are_numpy_linspace(k: int) -> None:
    np.testing.assert_array_equal(reference_control_points(k).numpy(), np.linspace(0, 1, k))


# Sigma per sample and axis (z, y, x): the range's ends, values either side of MONAI's radius
# steps (radius int(max(4 sigma, 0.5) + 0.5) moves from 1 to 2 at sigma 0.375), and a sample
# left unsmoothed.
SIGMAS = [
    ((0.25, 0.25, 0.25), True),
    ((1.5, 1.5, 1.5), True),
    ((0.37, 0.38, 0.625), True),
    ((1.3, 0.3, 0.9), True),
    ((0.5, 1.0, 1.49), True),
    ((1.4, 1.4, 1.4), False),
]


def test_gaussian_smooth_matches_monai_per_sample() -> None:
    sigma = torch.tensor([s for s, _ in SIGMAS], dtype=torch.float64)
    apply = torch.tensor([a for _, a in SIGMAS])
    x = _batch(len(SIGMAS), (20, 24, 16))
    out = gaussian_smooth(x, sigma, apply)
    for i, (s, applied) in enumerate(SIGMAS):
        expected = torch.as_tensor(GaussianSmooth(sigma=s)(x[i])) if applied else x[i]
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_gaussian_smooth_of_nothing_is_identity() -> None:
    x = _batch(2, (8, 8, 8))
    out = gaussian_smooth(x, torch.ones(2, 3), torch.tensor([False, False]))
    assert torch.equal(out, x)


def test_clip_matches_threshold_intensity() -> None:
    values = torch.tensor([-1.0, -1e-8, -0.0, 0.0, 1e-8, 0.5, 2.0, float("nan")])
    x = values.reshape(1, 1, 2, 2, 2)
    expected = torch.as_tensor(ThresholdIntensity(threshold=0.0, above=True, cval=0.0)(x[0]))
    assert torch.equal(clip_below_zero(x)[0], expected)


@pytest.mark.parametrize("chunk", [None, 3, 8])
@pytest.mark.parametrize(("n", "b", "p"), [(24, 8, 0.5), (20, 6, 1.0), (50, 2, 1.0)])
def test_chain_matches_per_item_monai_chain(n: int, b: int, p: float, chunk: int | None) -> None:
    params = _params(100 + n, b, (n, n, n), p=p)
    x = _batch(b, (n, n, n), seed=n) * 1.2 - 0.1  # some voxels below 0 for the clip
    out = apply_view_params(x, params, chunk=chunk)  # None: one sample at a time on the CPU
    for i in range(b):
        bound = ATOL * (1 + _steepest_slope(params, i))
        torch.testing.assert_close(out[i], _monai_view(x[i], params, i), atol=bound, rtol=0)


def test_smoothing_folded_into_the_crop_matches_monai_and_the_batched_path() -> None:
    # Smoothed without a histogram shift: one sample at a time, the smoothing is folded into the
    # crop's interpolation matrices; in one chunk of 6 (mixed) it is not.
    n, b = 20, 6
    params = replace(
        _params(7, b, (n, n, n), p=0.5),
        hist_shift=torch.tensor([False, False, False, True, False, True]),
        smooth=torch.tensor([True, True, False, True, True, False]),
    )
    x = _batch(b, (n, n, n), seed=3)
    one_by_one = apply_view_params(x, params, chunk=1)
    together = apply_view_params(x, params, chunk=b)
    torch.testing.assert_close(one_by_one, together, atol=1e-6, rtol=0)
    for i in range(b):
        bound = ATOL * (1 + _steepest_slope(params, i))
        torch.testing.assert_close(one_by_one[i], _monai_view(x[i], params, i), atol=bound, rtol=0)


def test_each_step_takes_a_permuted_input() -> None:
    # Dense but not contiguous: clone() keeps such strides, so no step may assume a view works.
    x = _batch(3, (12, 12, 12)).permute(0, 1, 4, 3, 2)
    params = _params(11, 3, (12, 12, 12), p=1.0)
    steps = [
        lambda v: resized_crop_flip(v, params.crop_start, params.crop_size, params.flip_axis),
        lambda v: histogram_shift(v, params.hist_points, params.hist_shift),
        lambda v: histogram_shift(v, params.hist_points, torch.tensor([True, False, True])),
        lambda v: gaussian_smooth(v, params.sigma, params.smooth),
        lambda v: apply_view_params(v, params),
    ]
    for step in steps:
        torch.testing.assert_close(step(x), step(x.contiguous()), atol=1e-6, rtol=0)


def test_empty_batch_and_bad_chunk() -> None:
    views = BatchedSSLViews(0)
    assert views(torch.rand(0, 1, 8, 8, 8)).shape == (0, 1, 8, 8, 8)
    params = views.draw_params(2, (8, 8, 8))
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        apply_view_params(torch.rand(2, 1, 8, 8, 8), params, chunk=0)


# Distributions of the drawn parameters (no volumes: cheap for many draws).


def _draw(shape: tuple[int, int, int], seed: int = 0) -> ViewParams:
    return BatchedSSLViews(seed).draw_params(DRAWS, shape)


def test_scale_is_uniform_and_shared_by_the_axes() -> None:
    big = (10**6, 2 * 10**6, 4 * 10**6)  # sides fine enough that side / n is the drawn scale
    params = _draw(big)
    frac = params.crop_size.double() / torch.tensor(big, dtype=torch.float64)
    assert float((frac - frac[:, :1]).abs().max()) <= 1e-6
    assert stats.kstest(frac[:, 0].numpy(), stats.uniform(0.5, 0.5).cdf).pvalue > ALPHA


def test_crop_side_distribution_of_a_24_patch() -> None:
    params = _draw((24, 24, 24))
    assert torch.equal(params.crop_size, params.crop_size[:, :1].expand(-1, 3))
    # 24 s ~ U(12, 24) rounded half to even: 12 and 24 take half a unit, 13..23 a whole one.
    expected = np.array([0.5] + [1.0] * 11 + [0.5]) / 12
    observed = np.bincount(params.crop_size[:, 0].numpy() - 12, minlength=13)
    assert len(observed) == 13
    assert stats.chisquare(observed, expected * DRAWS).pvalue > ALPHA


@pytest.mark.parametrize("shape", [(24, 24, 24), (20, 24, 16)])
def test_crop_start_is_uniform_over_valid_positions(shape: tuple[int, int, int]) -> None:
    params = _draw(shape, seed=1)
    n = torch.tensor(shape)
    assert bool((params.crop_start >= 0).all()) and bool(
        (params.crop_start + params.crop_size <= n).all()
    )
    positions = (n - params.crop_size + 1).double()
    jitter = torch.rand(params.crop_start.shape, generator=torch.Generator().manual_seed(2))
    pit = (params.crop_start.double() + jitter.double()) / positions  # U(0, 1) iff start uniform
    for axis in range(3):
        assert stats.kstest(pit[:, axis].numpy(), "uniform").pvalue > ALPHA


def test_application_probabilities_are_one_half() -> None:
    params = _draw((24, 24, 24), seed=3)
    for applied in (params.flip_axis >= 0, params.hist_shift, params.smooth):
        assert stats.binomtest(int(applied.sum()), DRAWS, 0.5).pvalue > ALPHA


def test_flip_axis_is_uniform_over_the_three_axes() -> None:
    axes = _draw((24, 24, 24), seed=4).flip_axis
    counts = np.bincount(axes[axes >= 0].numpy(), minlength=3)
    assert len(counts) == 3
    assert stats.chisquare(counts).pvalue > ALPHA


def test_sigma_is_uniform_per_axis() -> None:
    params = _draw((24, 24, 24), seed=5)
    for axis in range(3):
        sigma = params.sigma[params.smooth, axis].numpy()
        assert stats.kstest(sigma, stats.uniform(0.25, 1.25).cdf).pvalue > ALPHA


def test_control_points_are_drawn_as_monai_draws_them() -> None:
    points = _draw((24, 24, 24), seed=6).hist_points
    ref = reference_control_points(10)
    assert bool((points[:, 0] == 0).all()) and bool((points[:, -1] == 1).all())
    assert bool((points.diff(dim=1) >= 0).all())
    # MONAI: f_i ~ U(f_{i-1}, r_{i+1}) in turn, so each step's relative position is U(0, 1).
    steps = (points[:, 1:-1] - points[:, :-2]) / (ref[2:] - points[:, :-2])
    for i in range(8):
        assert stats.kstest(steps[:, i].numpy(), "uniform").pvalue > ALPHA
    monai = RandHistogramShift(num_control_points=10, prob=1.0)
    monai.set_random_state(7)
    theirs = []
    for _ in range(4000):
        monai.randomize()
        theirs.append(monai.floating_control_points)
    theirs = np.stack(theirs)
    for i in range(1, 9):
        assert stats.ks_2samp(points[:, i].numpy(), theirs[:, i]).pvalue > ALPHA


# Determinism, devices, the module's output, bad inputs.


def test_same_seed_same_views_different_seed_different_views() -> None:
    x = _batch(4, (20, 20, 20))
    first, again, other = BatchedSSLViews(3), BatchedSSLViews(3), BatchedSSLViews(4)
    views = [first(x) for _ in range(2)]
    assert all(torch.equal(v, again(x)) for v in views)
    assert not torch.equal(views[0], views[1])  # the generator advances
    assert not torch.equal(views[0], other(x))
    shared = BatchedSSLViews(torch.Generator().manual_seed(3))
    assert torch.equal(shared(x), views[0])


def test_views_of_several_batches_are_the_views_of_one_call_per_batch() -> None:
    """views_of draws batch after batch as successive calls do and, on the CPU, where samples
    are computed one at a time, gives the same views bit for bit."""
    lesion, negative = _batch(4, (20, 20, 20)) * 2 - 0.5, _batch(4, (20, 20, 20), seed=1)
    together, apart = BatchedSSLViews(11), BatchedSSLViews(11)
    for _ in range(3):
        views = together.views_of([lesion, lesion, negative, negative])
        expected = [apart(x) for x in (lesion, lesion, negative, negative)]
        assert all(torch.equal(v, e) for v, e in zip(views, expected, strict=True))
    assert not torch.equal(views[0], views[1])
    single = BatchedSSLViews(12).views_of([_batch(3, (9, 9, 9)).half()])
    assert len(single) == 1 and single[0].dtype == torch.float16
    assert torch.equal(single[0], BatchedSSLViews(12)(_batch(3, (9, 9, 9)).half()))


def test_views_of_rejects_no_batch_and_batches_that_differ() -> None:
    views = BatchedSSLViews(0)
    with pytest.raises(ValueError, match="at least one batch"):
        views.views_of([])
    with pytest.raises(ValueError, match="must match the first"):
        views.views_of([torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 9)])
    with pytest.raises(ValueError, match="must match the first"):
        views.views_of([torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8).double()])
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        views.views_of([torch.rand(2, 8, 8, 8)])


def test_pickled_module_continues_the_same_stream() -> None:
    views = BatchedSSLViews(5)
    x = _batch(2, (16, 16, 16))
    views(x)
    copy = pickle.loads(pickle.dumps(views))
    assert torch.equal(copy(x), views(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _batch(6, (24, 24, 24)) * 1.2 - 0.1
    params = _params(9, 6, (24, 24, 24), p=1.0)
    on_cuda = apply_view_params(x.cuda(), params)
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), apply_view_params(x, params), atol=1e-5, rtol=0)
    module_cpu, module_cuda = BatchedSSLViews(9), BatchedSSLViews(9)
    torch.testing.assert_close(module_cuda(x.cuda()).cpu(), module_cpu(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1, 16, 16, 16), (5, 1, 20, 24, 16)])
def test_module_keeps_shape_and_dtype_and_clips(dtype: torch.dtype, shape) -> None:
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) - 0.3).to(dtype)
    out = BatchedSSLViews(0)(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert float(out.min()) >= 0.0 and bool(torch.isfinite(out).all())


def test_full_batch_views_differ_per_sample() -> None:
    x = _batch(1, (20, 20, 20)).expand(4, -1, -1, -1, -1)
    out = BatchedSSLViews(0)(x)
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"scale": (0.8, 0.5)}, "scale"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"hist_prob": -0.1}, "hist_prob"),
        ({"smooth_prob": 2.0}, "smooth_prob"),
        ({"num_control_points": 2}, "num_control_points"),
        ({"sigma": (0.0, 1.0)}, "sigma"),
    ],
)
def test_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchedSSLViews(0, **kwargs)


def test_rejects_bad_inputs() -> None:
    views = BatchedSSLViews(0)
    params = views.draw_params(2, (16, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        views(torch.rand(2, 16, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        views(torch.zeros(2, 1, 16, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="x has 3"):
        apply_view_params(torch.rand(3, 1, 16, 16, 16), params)
    with pytest.raises(ValueError, match="inside the volume"):
        apply_view_params(torch.rand(2, 1, 8, 8, 8), params)
    with pytest.raises(ValueError, match="sigma must have shape"):
        apply_view_params(torch.rand(2, 1, 16, 16, 16), replace(params, sigma=params.sigma[:, :2]))
    with pytest.raises(ValueError, match="spatial_shape"):
        views.draw_params(2, (16, 16))
