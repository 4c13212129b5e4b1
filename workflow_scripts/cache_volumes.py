"""Cache the volumes of a pretraining table once, on their 1 mm patch grid, memory-mappable.

Usage: python workflow_scripts/cache_volumes.py --table TABLE --out DIR [--dtype int16|float32]
[--progress] [-v]

Writes every distinct image of TABLE once, resampled onto its 1 mm LPS patch grid, as
``DIR/volumes/<n>/`` and ``DIR/table.csv`` (the table plus a ``cache_path`` column, relative to
DIR). DIR is written under a temporary name and
renamed: on failure nothing is left behind and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.data.grid import GRID_DTYPES
from fmcib_core.data.ssl import cache_table_volumes
from fmcib_core.io.tables import TableError, read_table, resolve_image_paths
from workflow_scripts._cli import log_problems, setup_logging

log = logging.getLogger("cache_volumes")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="lesion table (.csv/.parquet)")
    parser.add_argument("--out", type=Path, required=True, help="cache folder to write")
    parser.add_argument("--dtype", choices=GRID_DTYPES, default="int16", help="grid storage")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        table = read_table(args.table)
        if "image_path" not in table.columns:
            raise TableError(f"{args.table}: no image_path column")
        paths = resolve_image_paths(table, args.table)
        cache_table_volumes(table, paths, args.out, dtype=args.dtype, progress=args.progress)
    except (ValueError, OSError) as err:  # TableError, ImageReadError, unwritable --out
        log_problems(log, err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
