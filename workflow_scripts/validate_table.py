"""Validate a lesion table and the images it names before any GPU time is spent.

Usage: python workflow_scripts/validate_table.py TABLE [--labels COLUMN ...] [--report OUT] [-v]

On success a summary is logged and, with ``--report``, the report is written as JSON. On
failure every problem is logged at ERROR level, the exit status is 1 and no report is left
behind (a report from an earlier run is removed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.io import LABEL_SPECS, OutputError, TableError, atomic_path, validate_table
from fmcib_core.io.tables import check_label_names
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("validate_table")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="lesion table (.csv or .parquet)")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help=f"label columns to check: any of {', '.join(sorted(LABEL_SPECS))}, or COLUMN=K for "
        "a label of your own with classes 0..K-1",
    )
    parser.add_argument("--report", type=Path, help="write the validation report here (JSON)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    try:
        check_label_names(args.labels)
    except ValueError as err:  # an unknown label name: a usage error
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.report is not None:
        # A report from an earlier run must not survive a failed validation.
        args.report.unlink(missing_ok=True)
    try:
        report = validate_table(args.table, args.labels, progress=args.progress)
    except TableError as err:
        log_problems(log, err)
        log.error("%s: validation failed; fix the problems above", args.table)
        return 1

    log.info(
        "%s: %d rows, %d images, labels %s, %d warnings",
        args.table,
        report.n_rows,
        report.n_images,
        report.label_counts or "none checked",
        len(report.warnings),
    )
    if args.report is not None:
        try:
            with atomic_path(args.report) as tmp:
                tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OutputError as err:  # a full disk, an unwritable folder
            log_problems(log, err)
            return 1
        log.info("wrote %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
