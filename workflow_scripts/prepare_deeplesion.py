"""Convert DeepLesion (DL_info.csv + Images_png) into NIfTI volumes and lesion tables.

Usage: python workflow_scripts/prepare_deeplesion.py --dl-info DL_info.csv --images Images_png
--out DIR [--max-slice-spacing-mm 5] [--seed N] [-v]

DIR (new, or empty) receives images/*.nii.gz (one per series slice range), pretrain.csv,
task1_train.csv, task1_val.csv, task1_test.csv and summary.json (skipped lesions by reason).
On failure every problem is logged, one per line, the exit status is 1 and DIR is not created.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.prepare.deeplesion import prepare_deeplesion
from fmcib_core.prepare.report import DatasetError
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("prepare_deeplesion")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dl-info", type=Path, required=True, help="DeepLesion's DL_info.csv")
    parser.add_argument("--images", type=Path, required=True, help="the Images_png folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--max-slice-spacing-mm",
        type=float,
        default=5.0,
        help="skip lesions of series whose slice spacing is larger (default 5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the val/test patient split")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    if args.max_slice_spacing_mm <= 0:
        parser.error("--max-slice-spacing-mm must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        summary = prepare_deeplesion(
            args.dl_info,
            args.images,
            args.out,
            max_slice_spacing_mm=args.max_slice_spacing_mm,
            seed=args.seed,
        )
    except DatasetError as err:
        log_problems(log, err)
        log.error("%s: DeepLesion not converted; fix the problems above", args.dl_info)
        return 1
    for line in summary.lines():
        log.info("%s", line)
    log.info(
        "seeds from the bounding box centre: %d", summary.counts["seeds_from_bounding_box"]["count"]
    )
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
