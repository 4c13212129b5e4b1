"""Benchmark: the SSL input path's CPU cost per item, and a step fed by it vs on a batch in memory.

Part 1, CPU milliseconds per SSL item (lesion + random negative, four augmented views), measured
in one process on the same lesions, one after the other:

- today's path (the one before the grid cache): the scan's raw voxels memory-mapped
  (``write_volume_cache``), both windows interpolated with ``sample_patch``, each view augmented
  per item with the MONAI chain ``ssl_view_transform``;
- the new path: the scan's 1 mm grid cache (``write_grid_cache``), both windows sliced, the four
  views of a whole batch augmented in one call, ``BatchedSSLViews.views_of``, on the CPU, as
  pretraining with ``augment_on: device`` does.

Both are process CPU time per item with ``--threads`` torch threads, the three (today's, the
slices alone, the new path) run one after the other in each of ``--repeats`` rounds; medians over
the rounds are printed, and each ratio's range over the rounds. Two ratios against today's
(target <= 1/5): the workers' part of the new path (slicing, all the CPU does per item when the
views are augmented on a GPU), and the whole new path run on this CPU.

Part 2, a step fed by the pipeline: the data pipeline is the one ``pretrain.py`` uses with
``--augment-on``: the grid cache, the ``SSLDataset`` and ``ssl_dataloader`` with ``--workers``
workers (``cpu``: the workers augment each item; ``device``: they only slice windows and
``BatchedSSLViews`` augments the batch on ``--device``, inside the step). For every timed step it
measures the wait for the next batch (``next(loader)`` + the copy to the device) and the step
itself (forward of the four views, loss, backward, LARS, scheduler); then it times the step alone
on one batch kept in memory.
The data pipeline's share of a fed step should stay below 10 % with the configured workers. Two
shares are printed: the time spent waiting for batches, and the whole slowdown against the
in-memory step, which also counts workers competing with the step for CPU cores (on a CPU-only
machine with few cores that dominates; on a GPU the step does not need those cores).

Usage: ``python benchmarks/ssl_step.py [--backbone resnet50x2] [--batch-size 8] [--patch-size 50]
[--workers 4] [--steps 5] [--device cpu|cuda] [--data demo|phantom] [--threads N]
[--augment-on cpu|device] [--items 64] [--repeats 3] [--no-step]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from scipy import ndimage

from fmcib_core.data.grid import GridVolume
from fmcib_core.data.patches import random_seed_point, sample_patch
from fmcib_core.data.ssl import SSLDataset, cache_table_volumes, read_cached_table, ssl_dataloader
from fmcib_core.data.volume import Volume, write_volume_cache
from fmcib_core.io.images import read_image
from fmcib_core.io.tables import COORD_COLUMNS, read_table, resolve_image_paths
from fmcib_core.optim import scaled_lr
from fmcib_core.train.ssl import build_ssl_module
from fmcib_core.transforms import BatchedSSLViews, ssl_view_transform

log = logging.getLogger("benchmarks.ssl_step")


def phantom_table(folder: Path, n_images: int = 3, lesions: int = 8, seed: int = 0) -> Path:
    """Smooth random CT-like volumes (160 x 160 x 64 voxels, 0.8 x 0.8 x 2.5 mm) and a table."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        field = ndimage.zoom(rng.standard_normal((8, 20, 20)), (8, 8, 8), order=1)
        image = sitk.GetImageFromArray((40 + 300 * field).astype(np.int16))
        image.SetSpacing((0.8, 0.8, 2.5))
        name = f"phantom{i}.nii.gz"
        sitk.WriteImage(image, str(folder / name))
        for index in rng.uniform([30, 30, 10], [130, 130, 54], size=(lesions, 3)):
            x, y, z = image.TransformContinuousIndexToPhysicalPoint(index.tolist())
            rows.append({"image_path": name, "coordX": x, "coordY": y, "coordZ": z})
    pd.DataFrame(rows).to_csv(folder / "pretrain.csv", index=False)
    return folder / "pretrain.csv"


def source_table(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "demo":
        from fmcib_core.demo import make_demo_dataset

        return make_demo_dataset(folder, seed=0, n_cases=3)["pretrain"]
    return phantom_table(folder)


def loader_for(cache: Path, args: argparse.Namespace, items: int) -> torch.utils.data.DataLoader:
    """The pretraining loader over the cached table, rows repeated to give ``items`` items."""
    table = read_cached_table(cache)
    table = table.iloc[np.resize(np.arange(len(table)), items)]
    views = ssl_view_transform() if args.augment_on == "cpu" else None
    data = SSLDataset(table, cache, args.patch_size, views, seed=args.seed)
    return ssl_dataloader(data, args.batch_size, args.workers, pin_memory=args.device == "cuda")


def cpu_seconds(fn) -> float:
    """Process CPU time (all threads) that ``fn()`` takes."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def input_cost(
    table_path: Path, cache: Path, folder: Path, args: argparse.Namespace
) -> dict[str, list[float]]:
    """CPU seconds per item of today's path and of the new one, on the same ``--items`` items,
    one value per round of ``--repeats`` (the three paths run one after the other each round)."""
    table = read_cached_table(cache)
    rows = np.resize(np.arange(len(table)), args.items)
    seeds = table[list(COORD_COLUMNS)].to_numpy(np.float64)[rows]
    images = resolve_image_paths(read_table(table_path), table_path).to_numpy()[rows]
    grids = {p: GridVolume.load(cache / p) for p in table["cache_path"].unique()}
    grid_of = [grids[p] for p in table["cache_path"].to_numpy()[rows]]
    raw = {p: Volume.load(write_volume_cache(read_image(p), folder / f"raw{n}"))
           for n, p in enumerate(dict.fromkeys(images))}  # fmt: skip
    size, transform, rng = args.patch_size, ssl_view_transform(), np.random.default_rng(0)
    transform.set_random_state(seed=0)

    def today() -> None:
        for image, seed in zip(images, seeds, strict=True):
            volume = raw[image]
            lesion = sample_patch(volume, seed, size)
            negative = sample_patch(volume, random_seed_point(volume, rng, size), size)
            [transform(patch) for patch in (lesion, lesion, negative, negative)]

    augment = BatchedSSLViews(0)

    def windows(start: int) -> tuple[np.ndarray, np.ndarray]:
        lesions, negatives = [], []
        stop = start + args.batch_size
        for grid, seed in zip(grid_of[start:stop], seeds[start:stop], strict=True):
            lesions.append(grid.window(seed, size))
            negatives.append(grid.window(grid.random_seed_point(rng, size), size))
        return np.stack(lesions), np.stack(negatives)

    def slices() -> None:
        for start in range(0, args.items, args.batch_size):
            windows(start)

    def new() -> None:
        for start in range(0, args.items, args.batch_size):
            lesions, negatives = (torch.from_numpy(batch) for batch in windows(start))
            augment.views_of([lesions, lesions, negatives, negatives])  # as SSLModule does

    today(), new()  # warm-up: page cache, oneDNN kernels
    costs = {"today": today, "slices": slices, "new": new}
    rounds: dict[str, list[float]] = {name: [] for name in costs}
    for _ in range(args.repeats):  # interleaved: the machine's speed drifts within minutes
        for name, fn in costs.items():
            rounds[name].append(cpu_seconds(fn) / args.items)
    return rounds


def timed(device: str, fn, *args):
    """``(seconds, fn(*args))``, with the device synchronised before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50x2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 1 warm-up)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data", choices=("demo", "phantom"), default="demo")
    parser.add_argument("--threads", type=int, help="torch threads of the main process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment-on", choices=("cpu", "device"), default="cpu")
    parser.add_argument("--items", type=int, default=64, help="items of the per-item CPU cost")
    parser.add_argument("--no-step", action="store_true", help="part 1 only (no training step)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of part 1")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.manual_seed(args.seed)
    augment = BatchedSSLViews(args.seed) if args.augment_on == "device" else None
    module = build_ssl_module(
        args.backbone,
        lr=scaled_lr(0.3, args.batch_size),
        total_steps=10 * (args.steps + 1),
        augment=augment,
    ).to(args.device)
    parts = module.configure_optimizers()
    optimizer, scheduler = parts["optimizer"], parts["lr_scheduler"]["scheduler"]

    def step(batch: list[torch.Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        batch = module.on_after_batch_transfer(batch, 0)  # augments there with --augment-on device
        module.compute_loss(batch).backward()
        optimizer.step()
        scheduler.step()

    with tempfile.TemporaryDirectory(prefix="fmcib-bench-") as folder:
        table_path = source_table(args.data, Path(folder) / "data")
        table = read_table(table_path)
        cache = cache_table_volumes(
            table, resolve_image_paths(table, table_path), Path(folder) / "c"
        )
        rounds = input_cost(table_path, cache, Path(folder), args)
        cost = {name: statistics.median(values) for name, values in rounds.items()}
        print(
            f"Part 1: CPU time per SSL item (lesion + negative, 4 views of {args.patch_size}^3), "
            f"{args.items} items, batch {args.batch_size}, {torch.get_num_threads()} torch "
            f"threads, medians of {args.repeats} interleaved rounds"
        )

        def spread(part: str) -> str:
            ratios = [a / b for a, b in zip(rounds[part], rounds["today"], strict=True)]
            return f"{cost[part] / cost['today']:.3f} ({min(ratios):.3f}-{max(ratios):.3f})"

        for name, value in (
            ("today: raw voxels, sample_patch x 2, MONAI x 4 (ms)", f"{1e3 * cost['today']:.2f}"),
            ("new, workers' part: grid cache slices x 2 (ms)", f"{1e3 * cost['slices']:.3f}"),
            ("new, all on this CPU: slices + BatchedSSLViews (ms)", f"{1e3 * cost['new']:.2f}"),
            ("workers' part / today (augmentation on a GPU; rounds)", spread("slices")),
            ("all on this CPU / today (augmentation on the CPU; rounds)", spread("new")),
        ):
            print(f"{name:<58}{value:>22}")
        if args.no_step:
            return 0
        fed = fed_step(cache, args, step)
    print(
        f"Part 2: {args.backbone}, batch {args.batch_size} x 4 views of {args.patch_size}^3, "
        f"{args.workers} worker(s), {args.device}, augment on {args.augment_on}, "
        f"{args.steps} timed steps, {torch.get_num_threads()} torch threads"
    )
    wait, total, alone, serial = fed
    rows = [
        ("step on a batch in memory (s)", f"{alone:.4f}"),
        ("step fed by the data pipeline (s)", f"{total:.4f}"),
        ("  of which waiting for the batch (s)", f"{wait:.4f}"),
        ("fed / in-memory step", f"{total / alone:.2f}x"),
        ("data pipeline share: waiting / fed step", f"{100 * wait / total:.1f} %"),
        ("data pipeline share: 1 - in-memory / fed step", f"{100 * (1 - alone / total):.1f} %"),
        ("one loader item in one process (s)", f"{serial:.4f}"),
        (
            "workers to keep up (item time x batch / step)",
            f"{serial * args.batch_size / alone:.1f}",
        ),
    ]
    for name, value in rows:
        print(f"{name:<48}{value:>12}")
    return 0


def fed_step(cache: Path, args: argparse.Namespace, step) -> tuple[float, float, float, float]:
    """Mean (wait, fed step, in-memory step) seconds and one loader item's seconds."""
    loader = iter(loader_for(cache, args, (args.steps + 1) * args.batch_size))

    def fetch() -> list[torch.Tensor]:
        return [v.to(args.device, non_blocking=True) for v in next(loader)]

    waits, fed = [], []
    for i in range(args.steps + 1):
        wait, batch = timed(args.device, fetch)
        seconds, _ = timed(args.device, step, batch)
        if i > 0:  # the first batch waits for the workers to start
            waits.append(wait)
            fed.append(wait + seconds)
    memory = [timed(args.device, step, batch)[0] for _ in range(args.steps)]
    data = loader_for(cache, args, args.batch_size).dataset
    serial = timed("cpu", lambda: [data[i] for i in range(len(data))])[0] / len(data)
    return (*(statistics.mean(x) for x in (waits, fed, memory)), serial)


if __name__ == "__main__":
    raise SystemExit(main())
