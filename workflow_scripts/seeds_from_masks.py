"""Make a lesion table from segmentation masks: one seed per label, component, segment or ROI.

Usage: python workflow_scripts/seeds_from_masks.py TABLE --out SEEDS.csv [--components]
[--roi REGEX] [--resample] [-v]

TABLE (CSV or parquet) has ``image_path`` and ``mask_path`` (a NIfTI/NRRD label map, a DICOM-SEG
or an RTSTRUCT file) and any other columns, carried into SEEDS.csv. Each seed is the mask's
centroid in world mm (LPS). Skipped masks are counted in SEEDS.summary.json. On failure every
problem is logged, one per line, the exit status is 1 and nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.io import TableError
from fmcib_core.prepare.report import DatasetError
from fmcib_core.prepare.seeds import MaskOptions, seeds_from_masks, summary_path
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("seeds_from_masks")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="table with image_path and mask_path")
    parser.add_argument("--out", type=Path, required=True, help="lesion table to write (.csv)")
    parser.add_argument(
        "--components",
        action="store_true",
        help="one seed per connected component of each label or segment (default: per label)",
    )
    parser.add_argument(
        "--roi", help="RTSTRUCT: only ROIs whose name matches this regex (case-insensitive)"
    )
    parser.add_argument(
        "--resample",
        action="store_true",
        help="resample a label map on another grid onto its image's grid (nearest neighbour); "
        "without it a different grid is an error",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".csv":
        parser.error(f"--out {args.out}: give a .csv file")
    if args.roi is not None:
        try:
            re.compile(args.roi)
        except re.error as err:
            parser.error(f"--roi {args.roi!r} is not a regular expression ({err})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    options = MaskOptions(components=args.components, roi=args.roi, resample=args.resample)
    try:
        summary = seeds_from_masks(args.table, args.out, options)
    except (DatasetError, TableError) as err:
        log_problems(log, err)
        log.error("%s: no seeds written; fix the problems above", args.table)
        return 1
    for line in summary.lines():
        log.info("%s", line)
    log.info("wrote %s and %s", args.out, summary_path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
