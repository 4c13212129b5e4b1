"""Convert NSCLC-Radiomics (LUNG1: DICOM CT + RTSTRUCT, clinical CSV) into Task 3's tables.

Usage: python workflow_scripts/prepare_lung1.py --dicom ROOT --clinical CLINICAL.csv --out DIR
[--roi REGEX] [--split TRAIN VAL TEST] [--seed N] [--skip-missing-roi] [-v]

Series are found under ROOT by their UIDs, in any folder layout. DIR (new, or empty) receives
lung1.csv (every patient; ``survival`` empty when censored before 730 days), with --split also
task3_train.csv, task3_val.csv and task3_test.csv (seeded, by patient, stratified), and
summary.json. On failure every problem is logged, one per line, the exit status is 1 and DIR is
not created.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.prepare.lung1 import DEFAULT_ROI, prepare_lung1
from fmcib_core.prepare.report import DatasetError
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("prepare_lung1")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dicom", type=Path, required=True, help="folder tree of DICOM files")
    parser.add_argument("--clinical", type=Path, required=True, help="LUNG1's clinical CSV")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--roi",
        default=DEFAULT_ROI,
        help=f"regex of the tumour ROI's name, case-insensitive (default {DEFAULT_ROI!r})",
    )
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        help="also write task3_{train,val,test}.csv with these patient fractions (sum 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    parser.add_argument(
        "--skip-missing-roi",
        action="store_true",
        help="leave out (and count) patients whose RTSTRUCT has no matching ROI; default: error",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    try:
        re.compile(args.roi)
    except re.error as err:
        parser.error(f"--roi {args.roi!r} is not a regular expression ({err})")
    if args.split is not None and (min(args.split) < 0 or abs(sum(args.split) - 1) > 1e-6):
        parser.error(f"--split {args.split}: fractions must be >= 0 and sum to 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        summary = prepare_lung1(
            args.dicom,
            args.clinical,
            args.out,
            roi=args.roi,
            split=args.split,
            seed=args.seed,
            skip_missing_roi=args.skip_missing_roi,
        )
    except DatasetError as err:
        log_problems(log, err)
        log.error("%s: LUNG1 not converted; fix the problems above", args.dicom)
        return 1
    for line in summary.lines():
        log.info("%s", line)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
