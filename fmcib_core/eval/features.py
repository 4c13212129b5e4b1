"""Frozen-backbone features of lesion patches (docs/method.md section 6).

The backbone runs in eval mode under ``torch.inference_mode`` on batches of patches streamed from
:func:`fmcib_core.data.patches.iter_patches` (each image read once, one volume and a few batches
in memory at a time), so memory stays flat in the number of lesions. The random-init control of
the paper is a backbone built under its own seed, without touching the global random state.
:func:`extract_feature_sources` feeds each batch to several backbones, and each patch to
per-patch functions (the handcrafted descriptor), in that one pass; :func:`extract_features` is
its one-backbone case.

Reading and sampling run in a background thread (:func:`prefetch`) while the forward pass runs:
image decoding (SimpleITK) and numpy release the GIL, so reading the next scan overlaps the
forward pass of the current one instead of waiting in turn. :func:`get_features` starts reading
before it loads the weights, and a trained backbone is built on the meta device and then takes
the file's tensors, so no random 184 M-parameter initialisation is computed only to be
overwritten. ``benchmarks/features.py`` measures both against the forward pass alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from fmcib_core.data.patches import images_for_first, iter_patches
from fmcib_core.io.features import FEATURE_PREFIX, feature_names
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.io.weights import load_into, load_weights
from fmcib_core.models.backbone import build_backbone, empty_backbone

__all__ = [
    "PRECISIONS",
    "extract_feature_sources",
    "extract_features",
    "features_of_patches",
    "get_features",
    "load_backbone",
    "prefetch",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
_PREFETCH_PATCHES = 64  # patches read ahead: ~32 MB at 50^3, more than one batch of 16 or 32
# At most this many scans decoded side by side for the first batch (each one in memory).
_MAX_FIRST_READS = 4

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""``fp32``: plain float32. ``bf16``: the forward pass under bfloat16 autocast, features cast
back to float32 (faster on GPUs and on CPUs with AVX512-BF16/AMX; differs in the 3rd digit)."""

PatchFunction = Callable[[np.ndarray], np.ndarray]
"""A per-patch feature function: one (1, S, S, S) float32 patch -> its (F,) values."""


def load_backbone(
    name: str, weights: str | Path | None = None, *, seed: int | None = None
) -> nn.Module:
    """A backbone in eval mode, with trained weights or seeded random ones.

    Args:
        name: a backbone of :data:`fmcib_core.models.BACKBONES` (``resnet50x2`` for FMCIB).
        weights: a weights file (FMCIB format, our Lightning checkpoint or a bare state dict),
            loaded strictly into the trunk; None for the random-init control.
        seed: the random-init control's seed (required when ``weights`` is None; unused
            otherwise). The initialisation draws from a forked random state, so the caller's
            global torch random state is unchanged.

    Returns:
        The backbone on the CPU in eval mode: (B, 1, D, H, W) -> (B, F).

    Raises:
        WeightsError: the file is missing or unreadable, or its keys or shapes do not fit.
        ValueError: unknown backbone, or neither weights nor seed.
    """
    if weights is None and seed is None:
        raise ValueError("a random-init backbone needs a seed (or give a weights file)")
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = build_backbone(name)
        log.info("random-init %s backbone (seed %d)", name, seed)
        return backbone.eval()
    loaded = load_weights(weights)
    backbone = empty_backbone(name)  # shapes only: the weights file fills every tensor
    load_into(backbone, loaded.trunk, what="backbone", source=loaded.path, assign=True)
    log.info("loaded %s backbone weights from %s", name, loaded.path)
    return backbone.eval()


class _Failed:
    """What the producer thread of :func:`prefetch` passes on when its iterator raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    The iterator starts at once (before the first ``next``). An exception raised by ``items`` is
    raised again in the consumer, at the position where it happened. When the consumer stops
    early (or is garbage-collected), the producer stops at its next item.

    Args:
        items: any iterator; it runs in one other thread, so it must not share unprotected state
            with the consumer.
        depth: queue length, at least 1.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1; got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # handed over to the consumer, raised there
            put(_Failed(err))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="fmcib-prefetch", daemon=True)
    thread.start()
    return _consume(ready, stop, thread)


def _consume(ready: queue.Queue, stop: threading.Event, thread: threading.Thread) -> Iterator:
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def _prefetched_patches(
    table: pd.DataFrame,
    base_dir: str | Path | None,
    patch_size: int,
    batch_size: int,
    progress: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    """``iter_patches`` in a :func:`prefetch` thread, started now. The scans the first batch
    needs are decoded side by side (up to this process's torch threads, at most
    ``_MAX_FIRST_READS``): nothing else runs before that batch, so the cores would idle."""
    first = min(
        images_for_first(table, batch_size, base_dir), torch.get_num_threads(), _MAX_FIRST_READS
    )
    patches = iter_patches(table, base_dir, patch_size, progress=progress, first_reads=first)
    return prefetch(patches, _PREFETCH_PATCHES)


def _batches(
    patches: Iterator[tuple[int, np.ndarray]], batch_size: int, size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Group ``(row, patch)`` pairs into ``(rows, (B, 1, S, S, S) array)``; the last may be short.

    The yielded array is a view of one reused buffer: consume it before asking for the next.
    """
    buffer = np.empty((batch_size, 1, size, size, size), dtype=np.float32)
    rows: list[int] = []
    for row, patch in patches:
        buffer[len(rows)] = patch
        rows.append(row)
        if len(rows) == batch_size:
            yield np.asarray(rows), buffer
            rows = []
    if rows:
        yield np.asarray(rows), buffer[: len(rows)]


def extract_features(
    backbone: nn.Module,
    table: pd.DataFrame,
    *,
    base_dir: str | Path | None = None,
    patch_size: int = 50,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Backbone features of every lesion of ``table``, in table order.

    Args:
        backbone: maps (B, 1, S, S, S) patches to (B, F) features; it is moved to ``device`` and
            put in eval mode (in place).
        table: lesion table (``image_path``, ``coordX/Y/Z`` in LPS mm), at least one row.
        base_dir: folder relative image paths are relative to (else they must be absolute).
        patch_size: patch side S in 1 mm voxels (50 in the paper).
        batch_size: patches per forward pass; changes the features only by float rounding
            (about 1e-7: kernels depend on the batch shape, see ``fmcib_core.eval.shards``).
        device: where the forward pass runs (chosen by the caller; never probed here).
        precision: one of :data:`PRECISIONS`.
        channels_last: run in the ``channels_last_3d`` memory format (same features to 1e-5).
        progress: show a progress bar (one step per lesion).

    Returns:
        float32 array of shape (N, F), row i the features of table row i.

    Raises:
        PatchError: a seed outside its image (the message names the row and the image).
        ValueError: an empty table, a batch size below 1 or an unknown precision.
    """
    sources = extract_feature_sources(
        {"features": backbone}, table, base_dir=base_dir, patch_size=patch_size,
        batch_size=batch_size, device=device, precision=precision, channels_last=channels_last,
        progress=progress,
    )  # fmt: skip
    return sources["features"]


def extract_feature_sources(
    backbones: Mapping[str, nn.Module],
    table: pd.DataFrame,
    *,
    per_patch: Mapping[str, PatchFunction] | None = None,
    base_dir: str | Path | None = None,
    patch_size: int = 50,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Features of every lesion of ``table`` from several sources in one pass over its patches.

    Each image is read once and each patch sampled once; every batch goes through every backbone
    and every patch through every per-patch function. The batches are those of
    :func:`extract_features` (``batch_size`` consecutive patches in ``iter_patches`` order), so a
    backbone's features equal its own :func:`extract_features` call's to the bit. Memory holds the
    results, one volume and a few batches, whatever the number of rows.

    Args:
        backbones: name -> backbone, as ``backbone`` of :func:`extract_features` (each is moved
            to ``device`` and put in eval mode, in place).
        table: lesion table (``image_path``, ``coordX/Y/Z`` in LPS mm), at least one row.
        per_patch: name -> function of one patch to its (F,) values (e.g.
            :func:`~fmcib_core.eval.handcrafted.lesion_descriptor`), run on each
            ``patch_size`` patch in this thread, before its batch; it must not change the patch.
            Names other than the backbones'.
        base_dir, patch_size, batch_size, device, precision, channels_last, progress: as in
            :func:`extract_features`.

    Returns:
        name -> float32 array of shape (N, F), row i the features of table row i; every name of
        ``backbones`` and ``per_patch``.

    Raises:
        PatchError: a seed outside its image (the message names the row and the image).
        ValueError: an empty table, a batch size below 1, an unknown precision, no source, or a
            name in both mappings.
    """
    per_patch = dict(per_patch or {})
    _check_options(table, batch_size, precision)
    if not backbones and not per_patch:
        raise ValueError("no feature source: give a backbone or a per-patch function")
    if both := sorted(set(backbones) & set(per_patch)):
        raise ValueError(f"names both of a backbone and of a per-patch function: {both}")
    patches = _prefetched_patches(table, base_dir, patch_size, batch_size, progress)
    return _sources_of_patches(
        backbones, patches, len(table), per_patch=per_patch, patch_size=patch_size,
        batch_size=batch_size, device=device, precision=precision, channels_last=channels_last,
    )  # fmt: skip


def _check_options(table: pd.DataFrame, batch_size: int, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if len(table) == 0:
        raise ValueError("the lesion table has no rows; there is nothing to extract")


def features_of_patches(
    backbone: nn.Module,
    patches: Iterator[tuple[int, np.ndarray]],
    n_rows: int,
    *,
    patch_size: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> np.ndarray:
    """(n_rows, F) float32 features of ``(row, patch)`` pairs, batched through the backbone.

    On a CUDA device each batch is copied through pinned memory without blocking, so the next
    batch is assembled while the GPU computes.

    Args:
        backbone: (B, 1, S, S, S) -> (B, F); moved to ``device`` and put in eval mode (in place).
        patches: ``(row, (1, S, S, S) float32 patch)`` pairs, every row in ``range(n_rows)`` once.
        n_rows: rows of the result.
        patch_size, batch_size, device, precision: as in :func:`extract_features`.
        channels_last: run the backbone and batches in ``torch.channels_last_3d`` memory format.
    """
    sources = _sources_of_patches(
        {"features": backbone}, patches, n_rows, patch_size=patch_size, batch_size=batch_size,
        device=device, precision=precision, channels_last=channels_last,
    )  # fmt: skip
    return sources["features"]


def _sources_of_patches(
    backbones: Mapping[str, nn.Module],
    patches: Iterator[tuple[int, np.ndarray]],
    n_rows: int,
    *,
    per_patch: Mapping[str, PatchFunction] | None = None,
    patch_size: int,
    batch_size: int,
    device: str | torch.device,
    precision: str,
    channels_last: bool,
) -> dict[str, np.ndarray]:
    """name -> (n_rows, F) float32 of every backbone (on each batch) and per-patch function (on
    each patch) of ``(row, patch)`` pairs: :func:`features_of_patches` for several sources."""
    device = torch.device(device)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    models = {
        name: backbone.to(device, memory_format=memory_format).eval()
        for name, backbone in backbones.items()
    }
    features: dict[str, np.ndarray] = {}
    described = _described(patches, per_patch or {}, n_rows, features)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    pinned = device.type == "cuda"
    with torch.inference_mode(), autocast:
        for rows, batch in _batches(described, batch_size, patch_size):
            inputs = torch.from_numpy(batch)
            inputs = inputs.pin_memory() if pinned else inputs
            inputs = inputs.to(device, non_blocking=pinned, memory_format=memory_format)
            for name, model in models.items():
                _store(features, name, n_rows, rows, model(inputs).float().cpu().numpy())
    return features


def _described(
    patches: Iterator[tuple[int, np.ndarray]],
    functions: Mapping[str, PatchFunction],
    n_rows: int,
    features: dict[str, np.ndarray],
) -> Iterator[tuple[int, np.ndarray]]:
    """``patches`` passed on unchanged, each function's values of each patch stored first."""
    for row, patch in patches:
        for name, function in functions.items():
            _store(features, name, n_rows, row, np.asarray(function(patch)))
        yield row, patch


def _store(
    features: dict[str, np.ndarray], name: str, n_rows: int, rows, values: np.ndarray
) -> None:
    """``features[name][rows] = values``; the (n_rows, F) float32 array is made on first use."""
    if name not in features:
        features[name] = np.empty((n_rows, values.shape[-1]), dtype=np.float32)
    features[name][rows] = values


def _located_table(
    table_or_path: pd.DataFrame | str | Path, base_dir: str | Path | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table as given, table whose image paths iter_patches can open with base_dir)``."""
    if isinstance(table_or_path, pd.DataFrame):
        return table_or_path, table_or_path
    if base_dir is not None:
        raise ValueError("base_dir is for a DataFrame; a table file's own folder is used")
    table = read_table(table_or_path)
    return table, table.assign(image_path=resolve_image_paths(table, table_or_path))


def get_features(
    table_or_path: pd.DataFrame | str | Path,
    weights: str | Path | None,
    *,
    backbone: str = "resnet50x2",
    seed: int | None = None,
    base_dir: str | Path | None = None,
    patch_size: int = 50,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = True,
) -> pd.DataFrame:
    """The lesion table with its features: one call for notebooks.

    Example: ``fmcib_core.get_features("lesions.csv", "model_weights.torch")``.

    Args:
        table_or_path: a lesion table, or a CSV/parquet file (relative image paths are then
            relative to the file's folder).
        weights: an FMCIB weights file, or None with ``seed`` for the random-init control.
        backbone: the backbone the weights belong to.
        seed: the random-init control's seed (unused with ``weights``).
        base_dir: for a DataFrame, the folder relative image paths are relative to.
        patch_size, batch_size, device, precision, progress: as in :func:`extract_features`.

    Returns:
        The table's columns (index reset) followed by float32 ``pred_0`` ... ``pred_{F-1}``.
    """
    table, located = _located_table(table_or_path, base_dir)
    clashes = [str(c) for c in table.columns if str(c).startswith(FEATURE_PREFIX)]
    if clashes:
        raise ValueError(f"the table already has feature-like columns {clashes[:5]}")
    _check_options(table, batch_size, precision)
    # Reading starts now, so that the first scans are decoded while the weights load.
    patches = _prefetched_patches(located, base_dir, patch_size, batch_size, progress)
    model = load_backbone(backbone, weights, seed=seed)
    features = features_of_patches(
        model,
        patches,
        len(table),
        patch_size=patch_size,
        batch_size=batch_size,
        device=device,
        precision=precision,
    )
    block = pd.DataFrame(features, columns=feature_names(features.shape[1]))
    return pd.concat([table.reset_index(drop=True), block], axis=1)
