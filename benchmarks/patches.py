"""Benchmark: seed-window sampling against resampling the whole volume, on CT-sized phantoms.

For each synthetic volume (int16, 512 x 512 x 300, 0.7 x 0.7 x 1.25 mm by default, written as
``.nii.gz``) and the same lesion seeds, it times

- ours: ``Volume.load`` once, then ``sample_patch`` per lesion (only the 50^3 window is sampled),
  and the same from a volume cache opened (memory-mapped) for every lesion;
- baseline: SimpleITK ``Resample`` of the whole volume onto the LPS-ordered 1 mm grid, then a crop
  per lesion (the published inference path re-reads and re-resamples for every lesion row);

and prints per-lesion times, their ratios and the largest difference between the two patches.

Usage: ``python benchmarks/patches.py [--volumes 2] [--lesions 10] [--shape 512 512 300]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from fmcib_core.data.patches import normalise_hu, patch_grid, sample_patch
from fmcib_core.data.volume import Volume, write_volume_cache
from fmcib_core.io.images import read_image

log = logging.getLogger("benchmarks.patches")


def make_phantom(shape_xyz: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random CT-like phantom (int16 HU, axes z, y, x): a noisy body in air."""
    x, y, z = shape_xyz
    coarse = rng.standard_normal((max(z // 16, 2), max(y // 16, 2), max(x // 16, 2)))
    zoom = [full / low for full, low in zip((z, y, x), coarse.shape, strict=True)]
    field = ndimage.zoom(coarse.astype(np.float32), zoom, order=1, output=np.float32)
    yy, xx = np.ogrid[-1 : 1 : y * 1j, -1 : 1 : x * 1j]
    body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 <= 1
    hu = np.where(body[None], 40 + 300 * field, -1000).astype(np.int16)
    hu += rng.integers(-20, 21, size=hu.shape, dtype=np.int16)
    return hu


def write_volumes(args: argparse.Namespace, folder: Path) -> list[Path]:
    rng = np.random.default_rng(args.seed)
    paths = []
    for i in range(args.volumes):
        image = sitk.GetImageFromArray(make_phantom(tuple(args.shape), rng))
        image.SetSpacing(tuple(args.spacing))
        image.SetOrigin((-180.0 + 3.3 * i, -200.5, -400.25 - 7 * i))
        if i % 2:  # every other volume stored RAS-style, as NIfTI files often are
            image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
        paths.append(folder / f"phantom{i}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]), useCompression=True)
    return paths


def lesion_seeds(volume: Volume, count: int, rng: np.random.Generator) -> np.ndarray:
    """Seeds at least 30 mm inside the grid, where both methods see only real voxels."""
    grid = patch_grid(volume)
    return grid.origin + rng.uniform(30, grid.n - 31, size=(count, 3))


def baseline_patches(image: sitk.Image, seeds: np.ndarray, size: int) -> list[np.ndarray]:
    """Resample the whole image onto the 1 mm grid (LPS order), then crop and pad per seed."""
    grid = patch_grid(Volume.from_sitk(image))
    reference = sitk.Image([int(n) for n in grid.n], sitk.sitkFloat32)
    reference.SetOrigin(tuple(grid.origin))
    whole = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, -1024.0
    )
    values = normalise_hu(sitk.GetArrayViewFromImage(whole))
    patches = []
    for seed in seeds:
        c = np.trunc(seed - grid.origin).astype(int)[::-1]
        lo, hi = np.maximum(c - size // 2, 0), np.minimum(c - size // 2 + size, values.shape)
        crop = values[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        pad = [((size - s) // 2, size - s - (size - s) // 2) for s in crop.shape]
        patches.append(np.pad(crop, pad).astype(np.float32)[None])
    return patches


def bench_volume(path: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    t0 = time.perf_counter()
    volume = Volume.load(path)
    t1 = time.perf_counter()
    seeds = lesion_seeds(volume, args.lesions, rng)
    t2 = time.perf_counter()
    ours = [sample_patch(volume, seed, args.size) for seed in seeds]
    t3 = time.perf_counter()
    image = read_image(path)
    t4 = time.perf_counter()
    theirs = baseline_patches(image, seeds, args.size)
    t5 = time.perf_counter()
    cache = write_volume_cache(volume, path.with_name(path.name.split(".")[0] + ".vol"))
    t6 = time.perf_counter()
    cached = [sample_patch(Volume.load(cache), seed, args.size) for seed in seeds]
    t7 = time.perf_counter()
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True))
    if not all(np.array_equal(a, b) for a, b in zip(ours, cached, strict=True)):
        raise RuntimeError("patches from the volume cache differ from those of the image file")
    return {
        "read": t1 - t0,
        "sample": t3 - t2,
        "read_b": t4 - t3,
        "resample": t5 - t4,
        "cached": t7 - t6,
        "diff": diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--lesions", type=int, default=10, help="lesions per volume")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], help="x y z voxels")
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.7, 0.7, 1.25], help="mm")
    parser.add_argument("--size", type=int, default=50, help="patch side (mm)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    rng = np.random.default_rng(args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="fmcib-bench-") as folder:
        log.info("writing %d phantom(s) of %s voxels", args.volumes, args.shape)
        paths = write_volumes(args, Path(folder))
        rows = [bench_volume(path, args, rng) for path in paths]
    volumes, lesions = len(rows), args.lesions * len(rows)
    total = {key: sum(r[key] for r in rows) for key in rows[0]}
    ours = (total["read"] + total["sample"]) / lesions
    sample = total["sample"] / lesions
    published = (total["read_b"] + total["resample"]) / volumes
    shared = (total["read_b"] + total["resample"]) / lesions
    resample = total["resample"] / lesions
    table = [
        ("ours: read once per volume + sample window", ours),
        ("ours: sample window only", sample),
        ("ours from a volume cache: open (mmap) + sample, per lesion", total["cached"] / lesions),
        ("baseline: read + resample for every lesion (published)", published),
        ("baseline: read + resample once per volume, shared", shared),
        ("baseline: resample + crop only, shared", resample),
    ]
    print(
        f"{volumes} volume(s) {args.shape} voxels, {args.spacing} mm; {args.lesions} lesions each"
    )
    print(f"{'per-lesion time':<58}{'seconds':>10}")
    for name, seconds in table:
        print(f"{name:<58}{seconds:>10.4f}")
    print(f"{'ratio published baseline / ours':<58}{published / ours:>9.1f}x")
    print(f"{'ratio shared baseline / ours':<58}{shared / ours:>9.1f}x")
    print(f"{'ratio resample + crop / sample window':<58}{resample / sample:>9.1f}x")
    print(f"{'max |ours - baseline| (normalised units)':<58}{max(r['diff'] for r in rows):>10.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
