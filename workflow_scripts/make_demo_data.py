"""Write the synthetic CT demo data set (volumes and lesion tables of all tasks) into a new folder.

Usage: python workflow_scripts/make_demo_data.py --out DIR [--seed N] [--scale demo|medium|full]
[--n-cases N] [--n-pretrain-cases N] [--threads N] [-v]

Everything is generated in a temporary sibling of DIR that is renamed to DIR at the end, so a
failed or interrupted run leaves no DIR behind. DIR must not exist yet (or be an empty folder).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.demo import SCALES, make_demo_dataset
from fmcib_core.io.atomic import atomic_path
from workflow_scripts._cli import setup_logging

log = logging.getLogger("make_demo_data")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    parser.add_argument("--scale", choices=SCALES, default="demo", help="size preset")
    parser.add_argument("--n-cases", type=int, help="labelled cases (>= 3); default: the scale's")
    parser.add_argument(
        "--n-pretrain-cases", type=int, help="pretraining-only cases (>= 1); default 1.25 x n-cases"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="processes making cases side by side (>= 1)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    out: Path = args.out
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        log.error("%s already exists; remove it or choose another --out", out)
        return 1
    try:
        with atomic_path(out) as tmp:
            paths = make_demo_dataset(
                tmp,
                seed=args.seed,
                scale=args.scale,
                n_cases=args.n_cases,
                n_pretrain_cases=args.n_pretrain_cases,
                workers=args.threads,
                progress=sys.stderr.isatty(),
            )
    except ValueError as err:
        log.error("%s", err)
        return 1
    for name, path in sorted(paths.items()):
        log.info("%-12s %s", name, out / path.relative_to(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
