"""Benchmark: feature extraction end to end against the backbone's forward pass alone.

On CT-sized synthetic volumes (``--volumes`` scans of ``--shape`` voxels at ``--spacing`` mm,
written as .nii.gz, ``--lesions-per-volume`` seeds each) and one ResNet-50 x2 weights file of
random weights, it measures

- lesions/s of ``get_features`` end to end (one call: load the weights, read every scan, sample,
  batch, forward) and of the backbone's forward pass alone on in-memory batches of the same
  patches with the same weights (the bound), and their ratio (target >= 0.9), in fp32 and bf16;
- the bf16 speed-up over fp32 and the relative difference of its features (||bf16 - fp32|| /
  ||fp32||, target < 1e-2);
- peak resident memory (``ru_maxrss`` of a fresh process that loads the weights and extracts
  features) for each of ``--memory-lesions``: flat in the number of lesions (target < 3 GB).

Usage: ``python benchmarks/features.py [--volumes 4] [--lesions-per-volume 13] [--repeats 2]
[--memory-lesions 32 128]``; for the 1000-lesion memory run: ``--memory-lesions 100 1000``
(0.2-0.7 s per lesion on 2 cores). The memory runs use the demo's small volumes.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from scipy import ndimage

from fmcib_core.data.patches import extract_patches
from fmcib_core.demo import make_demo_dataset
from fmcib_core.eval.features import PRECISIONS, extract_features, get_features, load_backbone
from fmcib_core.io.features import FEATURE_PREFIX
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.io.weights import save_fmcib_weights

log = logging.getLogger("benchmarks.features")
_CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def lesion_table(folder: Path, n: int) -> pd.DataFrame:
    """The demo's lesions (Task 1 splits, absolute image paths) repeated up to ``n`` rows."""
    parts = []
    for split in ("train", "val", "test"):
        path = folder / f"task1_{split}.csv"
        table = read_table(path)
        parts.append(table.assign(image_path=resolve_image_paths(table, path)))
    table = pd.concat(parts, ignore_index=True)
    return table.iloc[np.arange(n) % len(table)].reset_index(drop=True)


def ct_table(folder: Path, args: argparse.Namespace) -> pd.DataFrame:
    """``--volumes`` CT-sized scans (smooth random HU, int16, .nii.gz) and their lesion table."""
    rng = np.random.default_rng(0)
    shape_zyx = tuple(args.shape[::-1])
    rows = []
    for i in range(args.volumes):
        coarse = rng.standard_normal(tuple(max(2, n // 16) for n in shape_zyx))
        zoom = [n / c for n, c in zip(shape_zyx, coarse.shape, strict=True)]
        hu = 40 + 300 * ndimage.zoom(coarse, zoom, order=1)[tuple(slice(n) for n in shape_zyx)]
        image = sitk.GetImageFromArray(hu.astype(np.int16))
        image.SetSpacing(tuple(args.spacing))
        path = folder / f"ct{i}.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        for index in rng.uniform(0.1, 0.9, size=(args.lesions_per_volume, 3)) * args.shape:
            point = image.TransformContinuousIndexToPhysicalPoint(index.tolist())
            rows.append(dict(zip(("coordX", "coordY", "coordZ"), point, strict=True)))
            rows[-1]["image_path"] = str(path)
    return pd.DataFrame(rows)


def forward_only(backbone, patches: np.ndarray, batch_size: int, precision: str) -> np.ndarray:
    """The bound: the forward pass on in-memory batches, nothing else."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    out = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(patches), batch_size):
            batch = torch.from_numpy(patches[start : start + batch_size])
            out.append(backbone(batch).float().numpy())
    return np.concatenate(out)


def timed(fn, *args, **kwargs) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def peak_rss(folder: Path, weights: Path, n: int, args: argparse.Namespace) -> tuple[float, float]:
    """In a fresh process: RSS high-water marks (GB) after loading the backbone and at the end."""
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, weights)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    extract_features(
        backbone, lesion_table(folder, n), patch_size=args.patch_size, batch_size=args.batch_size
    )
    return loaded, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(
        next((ln.split(":")[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    )
    found = [f for f in _CPU_FLAGS if f in flags]
    return f"{', '.join(found) or 'none of ' + ', '.join(_CPU_FLAGS)}; torch capability " + (
        f"{torch.backends.cpu.get_cpu_capability()}, mkldnn {torch.backends.mkldnn.is_available()}"
    )


class ForwardClock:
    """Seconds spent inside the forward of every module of one class, summed (global hooks).

    Global, because ``get_features`` builds its own backbone inside the call being timed.
    """

    def __init__(self, kind: type) -> None:
        self.kind, self.seconds, self._start = kind, 0.0, 0.0
        torch.nn.modules.module.register_module_forward_pre_hook(self._on_start)
        torch.nn.modules.module.register_module_forward_hook(self._on_stop)

    def _on_start(self, module, inputs) -> None:
        if type(module) is self.kind:
            self._start = time.perf_counter()

    def _on_stop(self, module, inputs, output) -> None:
        if type(module) is self.kind:
            self.seconds += time.perf_counter() - self._start


def speed(weights: Path, table: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Best-of-repeats seconds per precision: bound, ours (``get_features``), forward inside."""
    backbone = load_backbone(args.backbone, weights)
    patches = extract_patches(table, args.patch_size)
    for precision in PRECISIONS:  # warm-up: oneDNN picks its kernels on the first call
        forward_only(backbone, patches[: args.batch_size], args.batch_size, precision)
    clock = ForwardClock(type(backbone))
    best = {p: {"bound": np.inf, "ours": np.inf} for p in PRECISIONS}
    for _ in range(args.repeats):  # interleaved; the fastest of each is kept (shared CPUs)
        for precision, row in best.items():
            bound, _ = timed(forward_only, backbone, patches, args.batch_size, precision)
            clock.seconds = 0.0
            ours, result = timed(
                get_features,
                table,
                weights,
                backbone=args.backbone,
                patch_size=args.patch_size,
                batch_size=args.batch_size,
                precision=precision,
                progress=False,
            )
            row["bound"] = min(row["bound"], bound)
            if ours < row["ours"]:
                columns = [c for c in result.columns if str(c).startswith(FEATURE_PREFIX)]
                row.update(ours=ours, inside=clock.seconds, features=result[columns].to_numpy())
    return best


def report(args: argparse.Namespace, n: int, best: dict, memory: list) -> None:
    print(
        f"{args.backbone}, {args.patch_size}^3 patches, batch {args.batch_size}, "
        f"{args.threads} threads, {n} lesions on {args.volumes} volumes of "
        f"{'x'.join(map(str, args.shape))} at {'x'.join(map(str, args.spacing))} mm (.nii.gz), "
        f"best of {args.repeats}; ours = get_features end to end (weights load included)"
    )
    print(f"CPU: {cpu_flags()}")
    print(f"{'precision':<10}{'ours lesions/s':>15}{'forward lesions/s':>18}{'ratio':>7}", end="")
    print(f"{'forward share of ours':>23}")
    for precision, row in best.items():
        print(f"{precision:<10}{n / row['ours']:>15.3f}{n / row['bound']:>18.3f}", end="")
        print(f"{row['bound'] / row['ours']:>7.3f}{row['inside'] / row['ours']:>23.3f}")
    fp32, bf16 = best["fp32"], best["bf16"]
    diff = np.linalg.norm(bf16["features"] - fp32["features"]) / np.linalg.norm(fp32["features"])
    print(
        f"bf16 speed-up over fp32: {fp32['ours'] / bf16['ours']:.2f}x end to end, "
        f"{fp32['bound'] / bf16['bound']:.2f}x forward alone; relative difference {diff:.2e}"
    )
    print(f"{'lesions':<10}{'peak RSS after loading (GB)':>29}{'peak RSS at end (GB)':>22}")
    for lesions, loaded, end in memory:
        print(f"{lesions:<10}{loaded:>29.2f}{end:>22.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4, help="CT-sized scans for speed")
    parser.add_argument("--lesions-per-volume", type=int, default=13)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 240], help="x y z")
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.7, 0.7, 1.25], help="mm")
    parser.add_argument("--memory-lesions", type=int, nargs="*", default=[32, 128])
    parser.add_argument("--cases", type=int, default=3, help="demo cases for the memory runs")
    parser.add_argument("--backbone", default="resnet50x2")
    parser.add_argument("--patch-size", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timing runs; the best is kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="fmcib-bench-features-") as tmp:
        folder, weights = Path(tmp) / "demo", Path(tmp) / "weights.torch"
        make_demo_dataset(folder, seed=0, n_cases=args.cases)
        save_fmcib_weights(weights, load_backbone(args.backbone, seed=0).state_dict())
        (Path(tmp) / "ct").mkdir()
        table = ct_table(Path(tmp) / "ct", args)
        best = speed(weights, table, args)
        memory = []
        for n in args.memory_lesions:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                memory.append((n, *pool.submit(peak_rss, folder, weights, n, args).result()))
    report(args, len(table), best, memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
