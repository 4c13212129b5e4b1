"""Gather the feature shards of a table into its feature table (docs/method.md section 6).

Usage: python workflow_scripts/gather_features.py --table T --shards S1.parquet S2.parquet ...
    --out FEATURES.parquet [--csv FEATURES.csv]

The shards are those that ``extract_features.py --shard I-of-K`` wrote for T, in any order.
Writes what one ``extract_features.py`` run over the whole table writes: the table's columns
followed by float32 ``pred_0`` ... ``pred_{F-1}``, row for row in table order. On any error (a
missing or unreadable shard, shards that do not give every row of T once) the exit status is 1
and nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.eval.shards import gather_shards
from fmcib_core.io.atomic import OutputError, write_outputs
from fmcib_core.io.features import read_feature_shard, write_features
from fmcib_core.io.tables import read_table
from workflow_scripts import _cli

log = logging.getLogger("gather_features")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="the lesion table of the shards")
    parser.add_argument(
        "--shards", type=Path, nargs="+", required=True, help="its feature shards (.parquet)"
    )
    parser.add_argument("--out", type=Path, required=True, help="feature table (.parquet)")
    parser.add_argument("--csv", type=Path, help="also write the feature table as CSV here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    try:
        table = read_table(args.table)
        shards = [read_feature_shard(path) for path in args.shards]
        features = gather_shards(shards, len(table))
        outputs = {args.out: lambda tmp: write_features(tmp, table, features)}
        if args.csv is not None:
            outputs[args.csv] = lambda tmp: write_features(tmp, table, features, csv=True)
        write_outputs(outputs)  # both or neither
    except (ValueError, OSError) as err:  # table, shard and output errors
        _cli.log_problems(log, err)
        if not isinstance(err, OutputError):
            log.error("%s: gathering %d shards failed; nothing was written", args.table,
                      len(args.shards))  # fmt: skip
        return 1
    log.info("gathered %d x %d features from %d shards to %s", *features.shape,
             len(args.shards), args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
