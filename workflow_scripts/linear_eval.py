"""Linear evaluation of frozen features for a task (docs/method.md section 6).

Reads train/val/test feature tables, searches the logistic regression's C, and writes a JSON
report, the test predictions (parquet) and the model (npz). On any error nothing is written.
The task is a paper task (``--task 2``) or any label column (``--label COLUMN [--kind ...]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fmcib_core._version import software_versions
from fmcib_core.eval import (
    LinearEvalError,
    fit_linear_eval,
    prediction_table,
    save_linear_model,
)
from fmcib_core.eval.linear import SEARCH_METRICS
from fmcib_core.eval.linear.data import read_split
from fmcib_core.eval.linear.groups import AGGREGATES
from fmcib_core.io.atomic import write_outputs
from fmcib_core.io.features import FeatureTableError
from workflow_scripts import _cli

log = logging.getLogger("linear_eval")
# external: features made outside the workflow (`fmcib features`, or any feature table).
SOURCES = ("foundation", "random-init", "published", "handcrafted", "external")
PACKAGES = ("numpy", "pandas", "scikit-learn", "optuna", "lifelines", "torch")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _cli.add_task_arguments(parser)
    parser.add_argument("--train", required=True, help="train feature table (parquet/csv)")
    parser.add_argument("--val", help="validation feature table; without it C is chosen by CV")
    parser.add_argument("--test", required=True, help="test feature table")
    parser.add_argument("--source", choices=SOURCES, required=True, help="where features came from")
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-predictions", required=True, help="test predictions (parquet)")
    parser.add_argument("--out-model", required=True, help="linear model (.npz)")
    parser.add_argument("--trials", type=int, required=True, help="Optuna trials (paper: 300)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cv-folds", type=int, required=True, help="CV folds when --val is absent")
    parser.add_argument("--bootstrap", type=int, required=True, help="bootstrap resamples for CIs")
    parser.add_argument(
        "--scoring", choices=SEARCH_METRICS, help="objective of the search over C (default: task's)"
    )
    parser.add_argument("--group-by", help="patient-level: aggregate lesions of this id column")
    parser.add_argument("--aggregate", choices=AGGREGATES, required=True, help="with --group-by")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.task = _cli.task_from_args(parser, args)
    return args


def read_splits(args: argparse.Namespace) -> dict:
    """Every split (one row per group with --group-by); all files' problems reported together."""
    paths = {"train": args.train, "val": args.val, "test": args.test}
    splits, problems = {}, []
    for name, path in (item for item in paths.items() if item[1] is not None):
        try:
            splits[name] = read_split(
                path, args.task, group_by=args.group_by, aggregate=args.aggregate
            )
        except (FeatureTableError, LinearEvalError) as err:
            problems.append(str(err))
    if problems:
        raise LinearEvalError("\n".join(problems))
    return splits


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    try:
        splits = read_splits(args)
        test = splits["test"]
        result = fit_linear_eval(
            splits["train"][1:3],
            splits["val"][1:3] if "val" in splits else None,
            test[1:4],
            task=args.task,
            n_trials=args.trials,
            seed=args.seed,
            cv_folds=args.cv_folds,
            n_bootstrap=args.bootstrap,
            progress=sys.stderr.isatty(),
            search_metric=args.scoring,
        )
        predictions = prediction_table(test.table, result, source=args.test)
        report = {
            "task": args.task.id,
            "label": args.task.label_column,
            "feature_source": args.source,
            "inputs": {"train": args.train, "val": args.val, "test": args.test},
            **result.summary(),
            "versions": software_versions(PACKAGES),
        }
        if args.group_by:
            counts = {name: split.counts for name, split in splits.items()}
            report["groups"] = {"column": args.group_by, "aggregate": args.aggregate, **counts}
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        write_outputs(  # all three or none; a write error names its output
            {
                args.out_json: lambda tmp: tmp.write_text(text),
                args.out_predictions: lambda tmp: predictions.to_parquet(tmp, index=False),
                args.out_model: lambda tmp: save_linear_model(tmp, result),
            }
        )
    except (ValueError, OSError) as err:  # LinearEvalError, FeatureTableError, unwritable paths
        _cli.log_problems(log, err)
        return 1
    log.info("task %s: %s", args.task.id, json.dumps(report["test_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
