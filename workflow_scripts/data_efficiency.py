"""Data efficiency of a task: linear evaluation on nested, stratified fractions of train.

Usage: python workflow_scripts/data_efficiency.py (--task N | --label COLUMN ...)
    --sources S [S ...] --train T [T ...] [--val V [V ...]] --test E [E ...]
    --fractions F [F ...] --trials N --seed N --cv-folds K --bootstrap B
    [--group-by COLUMN] --aggregate mean --out-json JSON

The i-th --train/--val/--test feature tables belong to the i-th source (foundation, random-init,
handcrafted, ...): features of the same lesion tables. Every fraction's training rows are a
stratified, seeded subset of the next larger fraction's (fmcib_core.eval.data_efficiency); val
(which selects C) and test stay whole. Writes one JSON: per fraction and source the rows used
and the test metric with its 95% bootstrap CI. With --group-by, as in linear_eval, every split
has one row per group (patient) and fractions count groups. On any error nothing is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fmcib_core._version import software_versions
from fmcib_core.eval import LinearEvalError
from fmcib_core.eval.data_efficiency import SourceData, data_efficiency
from fmcib_core.eval.linear.data import read_split
from fmcib_core.eval.linear.groups import AGGREGATES
from fmcib_core.io.atomic import write_outputs
from fmcib_core.io.features import FeatureTableError
from workflow_scripts import _cli

log = logging.getLogger("data_efficiency")
PACKAGES = ("numpy", "pandas", "scikit-learn", "optuna")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _cli.add_task_arguments(parser)
    add = parser.add_argument
    add("--sources", nargs="+", required=True, help="name of each feature source")
    add("--train", nargs="+", required=True, help="train feature table of each source")
    add("--val", nargs="+", help="validation feature table of each source (else CV on train)")
    add("--test", nargs="+", required=True, help="test feature table of each source")
    add("--fractions", type=float, nargs="+", required=True, help="fractions of train, (0, 1]")
    add("--trials", type=int, required=True, help="Optuna trials per fit")
    add("--seed", type=int, required=True)
    add("--cv-folds", type=int, required=True, help="most CV folds when --val is absent")
    add("--bootstrap", type=int, required=True, help="bootstrap resamples for CIs")
    add("--group-by", help="patient-level: aggregate lesions of this id column")
    add("--aggregate", choices=AGGREGATES, required=True, help="with --group-by")
    add("--out-json", required=True)
    add("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.task = _cli.task_from_args(parser, args)
    for name in ("train", "val", "test"):
        given = getattr(args, name)
        if given is not None and len(given) != len(args.sources):
            parser.error(f"--{name}: {len(given)} table(s) for {len(args.sources)} source(s)")
    return args


def read_sources(args: argparse.Namespace) -> dict[str, SourceData]:
    """Every source's splits, reporting every file's problems together."""
    sources, problems = {}, []
    for i, name in enumerate(args.sources):
        groups = {"group_by": args.group_by, "aggregate": args.aggregate}
        try:
            train = read_split(args.train[i], args.task, **groups)
            val = read_split(args.val[i], args.task, **groups)[1:3] if args.val else None
            test = read_split(args.test[i], args.task, **groups)[1:4]
            sources[name] = SourceData(train=train[1:3], val=val, test=test)
        except (FeatureTableError, LinearEvalError) as err:
            problems.append(str(err))
    if problems:
        raise LinearEvalError("\n".join(problems))
    return sources


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    try:
        rows = data_efficiency(
            read_sources(args),
            task=args.task,
            fractions=args.fractions,
            n_trials=args.trials,
            seed=args.seed,
            cv_folds=args.cv_folds,
            n_bootstrap=args.bootstrap,
        )
        report = {
            "task": args.task.id,
            "label": args.task.label_column,
            "metric": rows[0]["metric"],
            "fractions": sorted(set(args.fractions)),
            "sources": list(args.sources),
            "inputs": {"train": args.train, "val": args.val, "test": args.test},
            "results": rows,
            "selection": "validation" if args.val else "cv",
            "n_trials": args.trials,
            "bootstrap": args.bootstrap,
            "seed": args.seed,
            "groups": {"column": args.group_by, "aggregate": args.aggregate}
            if args.group_by
            else None,
            "versions": software_versions(PACKAGES),
        }
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        write_outputs({args.out_json: lambda tmp: tmp.write_text(text)})
    except (ValueError, OSError) as err:  # LinearEvalError, FeatureTableError, bad fractions
        _cli.log_problems(log, err)
        return 1
    log.info("wrote %s (%d fits)", args.out_json, len(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
