"""Handcrafted lesion descriptor of every lesion of a table, as a feature table (the baseline).

Usage: python workflow_scripts/handcrafted_features.py --table T --out FEATURES.parquet
    [--csv FEATURES.csv]

Computed only from each lesion's 50^3 patch (fmcib_core.eval.handcrafted): HU mean and sd in balls
of 5, 10 and 15 mm around the seed, the thresholded lesion's log volume and its boundary
irregularity. Writes the table's columns followed by float32 ``pred_0`` ... ``pred_7`` in that
order, the format of extract_features.py, so the same linear evaluation reads it. On any error
the exit status is 1 and nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import _cli

from fmcib_core.eval.handcrafted import DESCRIPTOR_NAMES, table_descriptors
from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.features import write_features
from fmcib_core.io.tables import read_table, resolve_image_paths

log = logging.getLogger("handcrafted_features")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="lesion table (.csv/.parquet)")
    parser.add_argument("--out", type=Path, required=True, help="feature table (.parquet)")
    parser.add_argument("--csv", type=Path, help="also write the feature table as CSV here")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    try:
        table = read_table(args.table)
        located = table.assign(image_path=resolve_image_paths(table, args.table))
        features = table_descriptors(located, progress=args.progress)
        with contextlib.ExitStack() as stack:
            out_tmp = stack.enter_context(atomic_path(args.out))
            csv_tmp = None if args.csv is None else stack.enter_context(atomic_path(args.csv))
            write_features(out_tmp, table, features)
            if csv_tmp is not None:
                write_features(csv_tmp, table, features, csv=True)
    except (ValueError, OSError) as err:  # table, image and patch errors
        _cli.log_problems(log, err)
        log.error("%s: handcrafted features failed; nothing was written", args.table)
        return 1
    log.info("wrote %d lesions x %d descriptors (%s) to %s", len(table), features.shape[1],
             ", ".join(DESCRIPTOR_NAMES), args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
