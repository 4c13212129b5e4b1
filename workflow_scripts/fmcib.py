"""The ``fmcib`` command: the workflow's steps one at a time, on tables of your own.

Each subcommand runs the same script as the workflow's rule (nothing is implemented twice), with
the paper's settings as defaults (the same as schemas/config.schema.yaml's; a test keeps them
equal). Examples:

    fmcib validate lesions.csv --labels malignancy
    fmcib features lesions.csv --weights model_weights.torch --out features.parquet
    fmcib linear-eval train.parquet val.parquet test.parquet --label malignancy --trials 50
    fmcib export-weights --checkpoint ssl_final.ckpt --backbone resnet50x2 --out weights.torch
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DEFAULTS", "main"]

# The paper's settings (schemas/config.schema.yaml's defaults; tests check they agree).
DEFAULTS = {
    "backbone": "resnet50x2",
    "patch_size": 50,
    "seed": 0,
    "batch_size": 16,
    "precision": "fp32",
    "trials": 300,
    "cv_folds": 10,
    "bootstrap": 1000,
    "aggregate": "mean",
}


def _script(name: str) -> Callable[[Sequence[str]], int]:
    return importlib.import_module(f"workflow_scripts.{name}").main


def _features(args: argparse.Namespace) -> list[str]:
    source = ["--weights", str(args.weights)] if args.weights else ["--random-init"]
    return [
        "--table", str(args.table), *source, "--out", str(args.out),
        "--backbone", args.backbone, "--patch-size", str(args.patch_size),
        "--accelerator", "gpu" if args.device == "cuda" else "cpu", "--seed", str(args.seed),
        "--batch-size", str(args.batch_size), "--precision", args.precision, "--progress",
        "--threads", str(args.threads),
    ]  # fmt: skip


def _linear_eval(args: argparse.Namespace) -> list[str]:
    out = Path(args.out_prefix)
    task = ["--label", args.label, "--kind", args.kind]
    task += ["--n-classes", str(args.n_classes)] if args.n_classes else []
    return [
        *task, "--train", str(args.train), "--val", str(args.val), "--test", str(args.test),
        "--source", "external", "--trials", str(args.trials), "--seed", str(args.seed),
        "--cv-folds", str(args.cv_folds), "--bootstrap", str(args.bootstrap),
        *(["--scoring", args.scoring] if args.scoring else []),
        *(["--group-by", args.group_by] if args.group_by else []), "--aggregate", args.aggregate,
        "--out-json", f"{out}.json", "--out-predictions", f"{out}_predictions.parquet",
        "--out-model", f"{out}_model.npz",
    ]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmcib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub.add_parser
    v = add("validate", help="check a lesion table and its images", add_help=False)
    v.set_defaults(passthrough="validate_table")
    e = add("export-weights", help="a pretraining checkpoint as FMCIB weights", add_help=False)
    e.set_defaults(passthrough="export_weights")
    f = add(
        "features",
        help="backbone features of every lesion of a table (parquet)",
        epilog="example: fmcib features lesions.csv --weights model_weights.torch "
        "--out features.parquet --device cuda --precision bf16 --batch-size 256",
    )
    f.add_argument("table", type=Path, help="lesion table: image_path, coordX/Y/Z (LPS mm)")
    f.add_argument("--weights", type=Path, help="FMCIB weights file (else a random-init backbone)")
    f.add_argument("--out", type=Path, required=True, help="feature table to write (.parquet)")
    f.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    f.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    for key in ("backbone", "patch_size", "seed", "batch_size", "precision"):
        f.add_argument(f"--{key.replace('_', '-')}", default=DEFAULTS[key])
    f.set_defaults(build=_features, script="extract_features")
    le = add(
        "linear-eval",
        help="logistic regression on features, with test metrics and CIs",
        epilog="example: fmcib linear-eval train.parquet val.parquet test.parquet "
        "--label malignancy --scoring roc_auc --trials 50 --out-prefix results/malignancy",
    )
    for split in ("train", "val", "test"):
        le.add_argument(split, type=Path, help=f"{split} feature table (fmcib features)")
    le.add_argument("--label", required=True, help="label column (0/1, or classes 0..K-1)")
    le.add_argument("--kind", choices=("binary", "multiclass", "binary_survival"), default="binary")
    le.add_argument("--n-classes", type=int, help="classes of a multiclass label")
    le.add_argument("--scoring", choices=("roc_auc", "accuracy"), help="objective of the C search")
    le.add_argument("--out-prefix", default="linear_eval", help="writes PREFIX.json, ...")
    le.add_argument("--group-by", help="patient-level: aggregate the lesions of this id column")
    le.add_argument("--aggregate", choices=("mean", "max", "first"), default=DEFAULTS["aggregate"])
    for key in ("trials", "seed", "cv_folds", "bootstrap"):
        le.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    le.set_defaults(build=_linear_eval, script="linear_eval")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv and argv[0] in ("validate", "export-weights"):  # their scripts' own arguments
        name = "validate_table" if argv[0] == "validate" else "export_weights"
        return _script(name)(argv[1:])
    args = parser.parse_args(argv)
    return _script(args.script)(args.build(args))


if __name__ == "__main__":
    sys.exit(main())
