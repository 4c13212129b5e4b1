"""Benchmark suite for one GPU: feature extraction and SSL pretraining steps, with peak memory.

One command writes one JSON (``--out``) and prints a table naming the card, driver, torch and
CUDA. Everything runs on synthetic CT-like scans resampled into 1 mm grid caches (the pretraining
cache format), so the numbers are about the model and the input path, not the disk.

- Feature extraction (ResNet-50 x2 by default), lesions/s at each ``--feature-batches`` size, fp32
  and bf16: end to end from the cache (windows sliced in a read-ahead thread, pinned copies,
  forward) and the forward pass alone on a batch already on the device.
- SSL steps (batch ``--ssl-batch`` per GPU), fp32 and bf16-mixed, for ``augment_on`` cpu (the
  DataLoader workers augment each item with MONAI) and device (workers slice windows, the batch
  is augmented on the GPU): steps/s, items/s, and the share of the step spent waiting for data.
- Peak GPU memory of each (``torch.cuda.max_memory_allocated``); none on a CPU.

``--device cpu --small`` runs the same code with tiny sizes (the test suite's smoke test).

Usage: ``python benchmarks/gpu_suite.py [--device cuda|cpu] [--small] [--out gpu_suite.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from fmcib_core.data.grid import GridVolume, write_grid_cache
from fmcib_core.data.ssl import CACHE_PATH_COLUMN, SSLDataset, ssl_dataloader
from fmcib_core.data.volume import Volume
from fmcib_core.eval.features import features_of_patches, load_backbone, prefetch
from fmcib_core.io.atomic import atomic_path
from fmcib_core.optim import scaled_lr
from fmcib_core.train.ssl import build_ssl_module
from fmcib_core.transforms import BatchedSSLViews, ssl_view_transform

log = logging.getLogger("benchmarks.gpu_suite")


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the paper's sizes, or tiny ones for a CPU smoke test."""

    backbone: str
    patch: int
    scans: int
    scan_shape_xyz: tuple[int, int, int]
    lesions: int
    feature_batches: tuple[int, ...]
    ssl_batch: int
    ssl_steps: int
    workers: int


FULL = Sizes("resnet50x2", 50, 4, (320, 320, 200), 1024, (64, 256), 32, 10, 8)
SMALL = Sizes("resnet10_w025", 24, 2, (64, 64, 40), 16, (4, 8), 4, 2, 0)


def environment(device: torch.device) -> dict:
    """The card, driver, torch and CUDA versions (the CPU's name on a CPU)."""
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        smi = shutil.which("nvidia-smi")
        query = [smi, "--query-gpu=driver_version", "--format=csv,noheader"] if smi else None
        info["driver"] = (
            subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
            if query
            else "unknown (no nvidia-smi)"
        )
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
        info["driver"] = None
    info["torch_threads"] = torch.get_num_threads()
    return info


def grid_caches(folder: Path, sizes: Sizes) -> pd.DataFrame:
    """``sizes.scans`` smooth random CT-like scans as grid caches, and a lesion table over them."""
    rng = np.random.default_rng(0)
    shape_zyx = sizes.scan_shape_xyz[::-1]
    rows = []
    for i in range(sizes.scans):
        coarse = rng.standard_normal(tuple(max(2, n // 16) for n in shape_zyx))
        zoom = [n / c for n, c in zip(shape_zyx, coarse.shape, strict=True)]
        hu = 40 + 300 * ndimage.zoom(coarse, zoom, order=1)[tuple(slice(n) for n in shape_zyx)]
        volume = Volume(hu.astype(np.int16), np.zeros(3), np.array([0.8, 0.8, 1.5]), np.eye(3))
        write_grid_cache(volume, folder / f"volumes/{i}")
        grid = GridVolume.load(folder / f"volumes/{i}").grid
        for point in (
            grid.origin + rng.uniform(0.1, 0.9, (sizes.lesions // sizes.scans, 3)) * grid.n
        ):
            rows.append({CACHE_PATH_COLUMN: f"volumes/{i}", "coordX": point[0],
                         "coordY": point[1], "coordZ": point[2]})  # fmt: skip
    return pd.DataFrame(rows)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def sliced(table: pd.DataFrame, folder: Path, patch: int):
    """``(row, window)`` of every lesion, sliced from the grid caches."""
    grids = {p: GridVolume.load(folder / p) for p in table[CACHE_PATH_COLUMN].unique()}
    seeds = table[["coordX", "coordY", "coordZ"]].to_numpy(np.float64)
    for row, (path, seed) in enumerate(zip(table[CACHE_PATH_COLUMN], seeds, strict=True)):
        yield row, grids[path].window(seed, patch)


def feature_rows(table: pd.DataFrame, folder: Path, sizes: Sizes, device: torch.device) -> list:
    """Lesions/s end to end from the cache and forward alone, per batch size and precision."""
    backbone = load_backbone(sizes.backbone, seed=0).to(device)
    rows = []
    for batch in sizes.feature_batches:
        on_device = torch.rand(batch, 1, sizes.patch, sizes.patch, sizes.patch, device=device)
        for precision in ("fp32", "bf16"):
            autocast = torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
            with torch.inference_mode(), autocast:
                backbone(on_device)  # warm-up: kernels chosen, memory pools filled
                reset_peak(device)
                synchronise(device)
                start = time.perf_counter()
                repeats = max(1, len(table) // batch)
                for _ in range(repeats):
                    backbone(on_device)
                synchronise(device)
                forward = repeats * batch / (time.perf_counter() - start)
            start = time.perf_counter()
            features_of_patches(
                backbone,
                prefetch(sliced(table, folder, sizes.patch), 2 * batch),
                len(table),
                patch_size=sizes.patch,
                batch_size=batch,
                device=device,
                precision=precision,
            )
            synchronise(device)
            end_to_end = len(table) / (time.perf_counter() - start)
            rows.append({"batch": batch, "precision": precision, "forward_lesions_s": forward,
                         "end_to_end_lesions_s": end_to_end, "ratio": end_to_end / forward,
                         "peak_gb": peak_gb(device)})  # fmt: skip
            log.info("features: %s", rows[-1])
    return rows


def ssl_rows(table: pd.DataFrame, folder: Path, sizes: Sizes, device: torch.device) -> list:
    """Steps/s, items/s and the data-wait share of SSL steps, per precision and augment_on."""
    rows = []
    items = (sizes.ssl_steps + 2) * sizes.ssl_batch
    repeated = table.iloc[np.resize(np.arange(len(table)), items)]
    for precision in ("32-true", "bf16-mixed"):
        for augment_on in ("cpu", "device"):
            views = ssl_view_transform() if augment_on == "cpu" else None
            data = SSLDataset(repeated, folder, sizes.patch, views, seed=0)
            loader = iter(ssl_dataloader(data, sizes.ssl_batch, sizes.workers,
                                         pin_memory=device.type == "cuda"))  # fmt: skip
            torch.manual_seed(0)
            module = build_ssl_module(
                sizes.backbone,
                lr=scaled_lr(0.3, sizes.ssl_batch),
                total_steps=sizes.ssl_steps + 2,
                augment=BatchedSSLViews(0) if augment_on == "device" else None,
            ).to(device)
            parts = module.configure_optimizers()
            optimizer, scheduler = parts["optimizer"], parts["lr_scheduler"]["scheduler"]
            autocast = torch.autocast(
                device.type, torch.bfloat16, enabled=precision == "bf16-mixed"
            )
            waits, steps = [], []
            for i in range(sizes.ssl_steps + 2):
                if i == 2:
                    reset_peak(device)
                synchronise(device)
                start = time.perf_counter()
                batch = [v.to(device, non_blocking=True) for v in next(loader)]
                synchronise(device)
                waited = time.perf_counter() - start
                batch = module.on_after_batch_transfer(batch, 0)
                with autocast:
                    loss = module.compute_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                synchronise(device)
                if i >= 2:  # two warm-up steps: workers start, kernels are chosen
                    waits.append(waited)
                    steps.append(time.perf_counter() - start)
            step = statistics.mean(steps)
            rows.append({"precision": precision, "augment_on": augment_on,
                         "batch": sizes.ssl_batch, "workers": sizes.workers,
                         "steps_s": 1 / step, "items_s": sizes.ssl_batch / step,
                         "data_wait_share": sum(waits) / sum(steps),
                         "peak_gb": peak_gb(device)})  # fmt: skip
            log.info("ssl: %s", rows[-1])
    return rows


def table_text(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"{env['device']} | driver {env['driver']} | torch {env['torch']} | CUDA {env['cuda']}",
        "",
        "feature extraction  batch  precision  forward/s  end-to-end/s  ratio  peak GB",
    ]
    for r in result["features"]:
        peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f}"
        lines.append(
            f"{'':20}{r['batch']:>5}  {r['precision']:>9}  {r['forward_lesions_s']:>9.1f}"
            f"  {r['end_to_end_lesions_s']:>12.1f}  {r['ratio']:>5.2f}  {peak:>7}"
        )
    lines += ["", "SSL step  precision   augment_on  batch  steps/s  items/s  data wait  peak GB"]
    for r in result["ssl"]:
        peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f}"
        wait = 100 * r["data_wait_share"]
        lines.append(
            f"{'':10}{r['precision']:<11} {r['augment_on']:<10} {r['batch']:>6}"
            f"  {r['steps_s']:>7.3f}  {r['items_s']:>7.1f}  {wait:>8.1f}%  {peak:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (CPU smoke test)")
    parser.add_argument("--out", type=Path, default=Path("gpu_suite.json"))
    parser.add_argument("--workers", type=int, help="DataLoader workers of the SSL runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.device == "cuda" and not torch.cuda.is_available():
        log.error("--device cuda, but torch sees no CUDA device; use --device cpu --small")
        return 1
    device = torch.device(args.device)
    sizes = SMALL if args.small else FULL
    if args.workers is not None:
        sizes = Sizes(**{**sizes.__dict__, "workers": args.workers})
    with tempfile.TemporaryDirectory(prefix="fmcib-gpu-suite-") as tmp:
        table = grid_caches(Path(tmp), sizes)
        result = {
            "environment": environment(device),
            "sizes": sizes.__dict__,
            "features": feature_rows(table, Path(tmp), sizes, device),
            "ssl": ssl_rows(table, Path(tmp), sizes, device),
        }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(table_text(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
