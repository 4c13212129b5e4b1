"""Fine-tune a backbone and a task head for a task (docs/method.md section 5).

Keeps the epoch of best validation score (the last one without --val) and writes to --out-dir
predictions.parquet, model_weights.torch, train_log.csv and, last, metrics.json. The work folder
holds patch caches and checkpoints: a rerun resumes. On any error --out-dir is left untouched.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from fmcib_core.data.seeding import derive_seed, global_rank
from fmcib_core.io.predictions import with_probabilities
from fmcib_core.metrics import metrics_json, task_metrics
from fmcib_core.models import BACKBONES
from fmcib_core.train import supervised as sv
from workflow_scripts import _cli

log = logging.getLogger("finetune")
SPLITS = ("train", "val", "test")
NOT_IN_SIGNATURE = ("out_dir", "work_dir", "num_workers", "bootstrap", "verbose")
SETTINGS = ("epochs", "batch_size", "lr", "step_size", "gamma", "patch_size", "precision")
SETTINGS += ("seed", "threads")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    _cli.add_task_arguments(parser)
    add("--init", choices=sv.INITS, required=True, help="backbone initialisation")
    add("--weights", help="weights file: Task 1's model (supervised) or pretrained (foundation)")
    for split in SPLITS:
        add(f"--{split}", required=split != "val", help=f"{split} lesion table (CSV/parquet)")
    add("--out-dir", required=True, help="folder of the four outputs")
    add("--work-dir", required=True, help="patch caches, checkpoints and logs (resumable)")
    add("--backbone", choices=BACKBONES, required=True)
    add("--patch-size", type=int, required=True, help="patch side in voxels (1 mm)")
    add("--accelerator", choices=("cpu", "gpu"), required=True)
    add("--seed", type=int, required=True)
    add("--batch-size", type=int, required=True, help="paper: 32 (random init: 8)")
    add("--epochs", type=int, required=True)
    add("--lr", type=float, required=True, help="Adam learning rate")
    add("--step-size", type=int, required=True, help="epochs between learning-rate decays")
    add("--gamma", type=float, required=True, help="learning-rate decay factor")
    add("--num-workers", type=int, required=True, help="DataLoader workers")
    add("--precision", required=True, help="Lightning precision")
    add("--bootstrap", type=int, required=True, help="bootstrap resamples of the test CIs")
    add("--threads", type=int, required=True, help="torch threads (the rule's): numbers follow it")
    add("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.task = _cli.task_from_args(parser, args)
    return args


def summary(args: argparse.Namespace, splits: dict, fit: sv.FitResult, metrics, rows) -> dict:
    return {
        "task": args.task.id,
        **{k: getattr(args, k) for k in ("init", "backbone", "weights")},
        "label": args.task.label_column,
        "n_rows": {name: len(splits[name].table) if name in splits else None for name in SPLITS},
        "selection": fit.selection,
        "best_epoch": fit.best_epoch,
        "val_metric": args.task.selection_metric,
        "val_metrics": fit.val_metrics,
        "test_metrics": metrics_json(metrics, rows),
        **{k: getattr(args, k) for k in SETTINGS},
    }


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate on test and write the outputs; return the metrics.json content."""
    paths = {split: getattr(args, split) for split in SPLITS if getattr(args, split)}
    splits = sv.read_splits(paths, args.task)  # every input problem comes out before training
    hyper = {k: getattr(args, k) for k in ("init", "weights", "seed", "lr", "step_size", "gamma")}
    module = sv.build_supervised(args.task, args.backbone, **hyper)
    loading = {k: getattr(args, k) for k in ("work_dir", "patch_size", "batch_size", "num_workers")}
    seed = derive_seed(args.seed, global_rank())
    data = sv.split_loaders(splits, args.task, seed=seed, **loading)
    signature = {k: v for k, v in vars(args).items() if k not in NOT_IN_SIGNATURE}
    signature["task"] = args.task.key
    signature["data"] = {name: loader.dataset.fingerprint() for name, loader in data.items()}
    signature["weights_mtime_ns"] = Path(args.weights).stat().st_mtime_ns if args.weights else None
    fit = sv.fit_supervised(
        module,
        data["train"],
        data.get("val"),
        work_dir=args.work_dir,
        signature=signature,
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        precision=args.precision,
        progress_bar=sys.stderr.isatty(),
    )
    proba, classes = sv.predict_proba(fit.trainer, module, data["test"], fit.checkpoint)
    test = splits["test"]
    metrics, rows = task_metrics(
        args.task, test.labels, proba, classes, test.survival, args.seed, args.bootstrap
    )
    report = summary(args, splits, fit, metrics, rows)
    predictions = with_probabilities(test.table, proba, classes, module.multiclass)
    sv.write_outputs(args.out_dir, report, predictions, module, fit.history)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    # Float sums depend on the thread count: fix it, never inherit it from the environment.
    _cli.set_torch_threads(args.threads, workers=args.num_workers)
    L.seed_everything(args.seed, workers=True)
    try:
        report = run(args)
    except (ValueError, OSError) as err:  # tables, labels, weights, patches, metrics, outputs
        _cli.log_problems(log, err)
        return 1
    log.info("task %s, %s init: %s", args.task.id, args.init, json.dumps(report["test_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
