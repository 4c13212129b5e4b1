"""Benchmark: a pretraining step fed by the real data pipeline vs on a batch already in memory.

The data pipeline is the one ``pretrain.py`` uses: a volume cache (memory-mapped scans), the
``SSLDataset`` (lesion + random negative patch, four ``ssl_view_transform`` views) and
``ssl_dataloader`` with ``--workers`` workers. For every timed step it measures the wait for the
next batch (``next(loader)`` + the copy to the device) and the step itself (forward of the four
views, loss, backward, LARS, scheduler); then it times the step alone on one batch kept in memory.
The data pipeline's share of a fed step should stay below 10 % with the configured workers. Two
shares are printed: the time spent waiting for batches, and the whole slowdown against the
in-memory step, which also counts workers competing with the step for CPU cores (on a CPU-only
machine with few cores that dominates; on a GPU the step does not need those cores).

Usage: ``python benchmarks/ssl_step.py [--backbone resnet50x2] [--batch-size 8] [--patch-size 50]
[--workers 4] [--steps 5] [--device cpu|cuda] [--data demo|phantom] [--threads N]``
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

from fmcib_core.data.ssl import SSLDataset, cache_table_volumes, read_cached_table, ssl_dataloader
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.optim import scaled_lr
from fmcib_core.train.ssl import build_ssl_module
from fmcib_core.transforms import ssl_view_transform

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
    data = SSLDataset(table, cache, args.patch_size, ssl_view_transform(), seed=args.seed)
    return ssl_dataloader(data, args.batch_size, args.workers, pin_memory=args.device == "cuda")


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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.manual_seed(args.seed)
    module = build_ssl_module(
        args.backbone, lr=scaled_lr(0.3, args.batch_size), total_steps=10 * (args.steps + 1)
    ).to(args.device)
    parts = module.configure_optimizers()
    optimizer, scheduler = parts["optimizer"], parts["lr_scheduler"]["scheduler"]

    def step(batch: list[torch.Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        module.compute_loss(batch).backward()
        optimizer.step()
        scheduler.step()

    with tempfile.TemporaryDirectory(prefix="fmcib-bench-") as folder:
        table_path = source_table(args.data, Path(folder) / "data")
        table = read_table(table_path)
        cache = cache_table_volumes(
            table, resolve_image_paths(table, table_path), Path(folder) / "c"
        )
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
    wait, total, alone = (statistics.mean(x) for x in (waits, fed, memory))
    print(
        f"{args.backbone}, batch {args.batch_size} x 4 views of {args.patch_size}^3, "
        f"{args.workers} worker(s), {args.device}, {args.steps} timed steps, "
        f"{torch.get_num_threads()} torch threads"
    )
    rows = [
        ("step on a batch in memory (s)", f"{alone:.4f}"),
        ("step fed by the data pipeline (s)", f"{total:.4f}"),
        ("  of which waiting for the batch (s)", f"{wait:.4f}"),
        ("fed / in-memory step", f"{total / alone:.2f}x"),
        ("data pipeline share: waiting / fed step", f"{100 * wait / total:.1f} %"),
        ("data pipeline share: 1 - in-memory / fed step", f"{100 * (1 - alone / total):.1f} %"),
        ("one item (4 views) in one process (s)", f"{serial:.4f}"),
        (
            "workers to keep up (item time x batch / step)",
            f"{serial * args.batch_size / alone:.1f}",
        ),
    ]
    for name, value in rows:
        print(f"{name:<48}{value:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
