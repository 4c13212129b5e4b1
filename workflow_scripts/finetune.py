"""Fine-tune a backbone and a task head for Task 1, 2 or 3 (METHOD.md section 5).

Keeps the epoch of best validation score (the last one without --val) and writes to --out-dir
predictions.parquet, model_weights.torch, train_log.csv and, last, metrics.json. The work folder
holds patch caches and checkpoints: a rerun resumes. On any error --out-dir is left untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import _cli
import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from fmcib_core.data.labelled import LabelledPatches, cache_patches, labelled_loader, read_labels
from fmcib_core.data.seeding import derive_seed, global_rank
from fmcib_core.eval import labels_from_table, metrics_json, task_metrics
from fmcib_core.io import atomic_path, read_table, resolve_image_paths, save_fmcib_weights
from fmcib_core.models import BACKBONES, TASKS
from fmcib_core.train import supervised as sv
from fmcib_core.transforms.augment import supervised_train_transform

log = logging.getLogger("finetune")
SPLITS = ("train", "val", "test")
# Entered in this order, renamed in reverse: metrics.json lands last.
OUTPUTS = ("metrics.json", "predictions.parquet", "model_weights.torch", "train_log.csv")
NOT_IN_SIGNATURE = ("out_dir", "work_dir", "num_workers", "bootstrap", "verbose")
SETTINGS = ("epochs", "batch_size", "lr", "step_size", "gamma", "patch_size", "precision", "seed")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--task", type=int, choices=sorted(TASKS), required=True)
    add("--init", choices=sv.INITS, required=True, help="backbone initialisation")
    add("--weights", help="weights file: Task 1's model (supervised) or pretrained (foundation)")
    for split in SPLITS:
        add(f"--{split}", required=split != "val", help=f"{split} lesion table (CSV/parquet)")
    add("--out-dir", required=True, help="folder of the four outputs")
    add("--work-dir", required=True, help="patch caches, checkpoints and logs (resumable)")
    add("--backbone", choices=BACKBONES, default="resnet50x2")
    add("--patch-size", type=int, default=50, help="patch side in voxels (1 mm)")
    add("--accelerator", choices=("cpu", "gpu"), default="cpu")
    add("--seed", type=int, default=0)
    add("--batch-size", type=int, default=32, help="paper: 32 (random init: 8)")
    add("--epochs", type=int, default=100)
    add("--lr", type=float, default=1e-3, help="Adam learning rate")
    add("--step-size", type=int, default=30, help="epochs between learning-rate decays")
    add("--gamma", type=float, default=0.1, help="learning-rate decay factor")
    add("--num-workers", type=int, default=0, help="DataLoader workers")
    add("--precision", default="32-true", help="Lightning precision")
    add("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test CIs")
    add("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def read_splits(args: argparse.Namespace) -> dict[str, tuple]:
    """``{split: (table, labels, survival)}``; every table's problems are reported together."""
    splits, problems = {}, []
    for name in (s for s in SPLITS if getattr(args, s)):
        path = getattr(args, name)
        try:
            table = read_table(path)
            labels = read_labels(table, TASKS[args.task].label_column, source=path)
            survival = labels_from_table(table, args.task, source=path)[1] if name == "test" else {}
            splits[name] = (table, labels, survival)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("\n".join(problems))
    return splits


def loaders(args: argparse.Namespace, splits: dict[str, tuple]) -> dict[str, DataLoader]:
    """Each split's patches, sampled once into the work folder, as a DataLoader."""
    seed, binary = derive_seed(args.seed, global_rank()), TASKS[args.task].loss == "bce"
    out = {}
    for name, (table, labels, _) in splits.items():
        table = table.assign(image_path=resolve_image_paths(table, getattr(args, name)))
        cache = cache_patches(table, Path(args.work_dir) / "patches", args.patch_size, name=name)
        train = name == "train"
        augment = supervised_train_transform() if train else None
        data = LabelledPatches(cache, labels, augment, float_labels=binary, seed=seed)
        out[name] = labelled_loader(
            data, args.batch_size, train=train, num_workers=args.num_workers
        )
    return out


def summary(args: argparse.Namespace, splits: dict, fit: sv.FitResult, metrics, rows) -> dict:
    return {
        **{k: getattr(args, k) for k in ("task", "init", "backbone", "weights")},
        "label": TASKS[args.task].label_column,
        "n_rows": {name: len(splits[name][0]) if name in splits else None for name in SPLITS},
        "selection": fit.selection,
        "best_epoch": fit.best_epoch,
        "val_metric": "mean_average_precision" if args.task == 1 else "roc_auc",
        "val_metrics": fit.val_metrics,
        "test_metrics": metrics_json(metrics, rows),
        **{k: getattr(args, k) for k in SETTINGS},
    }


def write_outputs(
    out_dir: str,
    report: dict,
    predictions: pd.DataFrame,
    module: sv.SupervisedModule,
    history: pd.DataFrame,
) -> None:
    with contextlib.ExitStack() as stack:
        out = {n: stack.enter_context(atomic_path(Path(out_dir) / n)) for n in OUTPUTS}
        predictions.to_parquet(out["predictions.parquet"], index=False)
        trunk, head = module.backbone.state_dict(), module.head.state_dict()
        save_fmcib_weights(out["model_weights.torch"], trunk, head)
        history.to_csv(out["train_log.csv"], index=False)
        out["metrics.json"].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate on test and write the outputs; return the metrics.json content."""
    splits = read_splits(args)  # every input problem comes out before training
    hyper = {k: getattr(args, k) for k in ("init", "weights", "seed", "lr", "step_size", "gamma")}
    module = sv.build_supervised(args.task, args.backbone, **hyper)
    data = loaders(args, splits)
    signature = {k: v for k, v in vars(args).items() if k not in NOT_IN_SIGNATURE}
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
    table, y, survival = splits["test"]
    metrics, rows = task_metrics(args.task, y, proba, classes, survival, args.seed, args.bootstrap)
    report = summary(args, splits, fit, metrics, rows)
    predictions = sv.probability_table(table, proba, classes, module.multiclass)
    write_outputs(args.out_dir, report, predictions, module, fit.history)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    L.seed_everything(args.seed, workers=True)
    try:
        report = run(args)
    except (ValueError, OSError) as err:  # tables, labels, weights, patches, metrics, outputs
        _cli.log_problems(log, err)
        log.debug("traceback of the error above", exc_info=True)
        return 1
    log.info("task %d, %s init: %s", args.task, args.init, json.dumps(report["test_metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
