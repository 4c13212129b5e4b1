"""Build the HTML report: result table with CIs, ROC curves, SSL curves, patch previews, config.

Usage: python workflow_scripts/report.py --linear-eval J [J ...] --finetune [M ...]
    [--data-efficiency D ...] [--stability S ...] [--ssl-log CSV] [--preview-table TABLE]
    --patch-size N --config-json JSON --out HTML [--comparison HTML] [--roc-dir DIR]
    [--ssl-dir DIR] [-v]

The optional outputs are the page's parts as separate files, for `snakemake --report`: the
comparison table as its own page, one ROC PNG per task, the SSL curves PNG.

Every input is read before anything is written; on any error the problems are logged, the exit
status is 1 and no report is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fmcib_core.io.atomic import atomic_path
from fmcib_core.report import build_report
from fmcib_core.report.parts import report_parts, write_report_parts
from workflow_scripts import _cli

log = logging.getLogger("report")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--linear-eval", nargs="*", default=[], metavar="JSON", help="linear-evaluation results"
    )
    parser.add_argument(
        "--finetune", nargs="*", default=[], metavar="JSON", help="fine-tuning metrics.json files"
    )
    parser.add_argument(
        "--data-efficiency", nargs="*", default=[], metavar="JSON",
        help="data-efficiency results (one per task)",
    )  # fmt: skip
    parser.add_argument("--ssl-log", help="SSL training log (CSV); absent with published weights")
    parser.add_argument("--stability", nargs="*", default=[], help="each task's stability.json")
    parser.add_argument("--preview-table", help="lesion table to preview patches of (optional)")
    parser.add_argument("--patch-size", type=int, required=True, help="patch side in voxels (1 mm)")
    parser.add_argument("--config-json", required=True, help="the workflow config, as JSON")
    parser.add_argument("--out", required=True, help="the HTML report to write")
    parser.add_argument("--comparison", help="also write the comparison table as its own page")
    parser.add_argument("--roc-dir", help="also write one ROC PNG per task into this folder")
    parser.add_argument("--ssl-dir", help="also write the SSL curves PNG into this folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    try:
        config = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        log.error("--config-json is not valid JSON: %s", err)
        return 1
    try:
        page = build_report(
            args.linear_eval,
            args.finetune,
            ssl_log=args.ssl_log,
            preview_table=args.preview_table,
            patch_size=args.patch_size,
            config=config,
            data_efficiency=args.data_efficiency,
            stability=args.stability,
        )
        if args.comparison or args.roc_dir or args.ssl_dir:  # the parts first, the page last
            extra = {"comparison": args.comparison, "roc_dir": args.roc_dir}
            for path in write_report_parts(report_parts(page), **extra, ssl_dir=args.ssl_dir):
                log.info("wrote %s", path)
        with atomic_path(args.out) as tmp:
            tmp.write_text(page, encoding="utf-8")
    except (ValueError, OSError) as err:  # ReportError, TableError, PatchError, unwritable paths
        _cli.log_problems(log, err)
        log.error("no report written")
        return 1
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
