"""Self-supervised pretraining of the FMCIB backbone on a volume cache (docs/method.md section 4).

Checkpoints every epoch into --work-dir and resumes from there when rerun with the same
arguments (other arguments: the work dir is cleared). Rank 0 then copies the last checkpoint to
--out-checkpoint and writes --out-log, one row per optimiser step: step, epoch, loss, lr.
``--devices 2`` runs DDP (gloo on CPU): with ``--launcher local`` Lightning relaunches this script
per extra device; with ``--launcher srun`` srun has started it once per device on each of
``--nodes`` nodes (SLURM's requeue signal then saves a checkpoint and requeues the job).
On bad input: exit status 1, no outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.data.seeding import derive_seed, global_rank
from fmcib_core.data.ssl import CACHE_TABLE, SSLDataset, read_cached_table, ssl_dataloader
from fmcib_core.io.atomic import write_outputs
from fmcib_core.losses import LOSSES
from fmcib_core.models import BACKBONES
from fmcib_core.optim import (
    OPTIMIZER_OPTIONS,
    OPTIMIZERS,
    optimizer_factory,
    scaled_lr,
    total_steps,
)
from fmcib_core.train import build_trainer, last_checkpoint, read_step_metrics, resume_checkpoint
from fmcib_core.train.ssl import NonFiniteLossError, build_ssl_module
from fmcib_core.transforms import BatchedSSLViews, ssl_view_transform
from workflow_scripts._cli import log_problems, set_torch_threads, setup_logging

log = logging.getLogger("pretrain")
# Arguments that say where things go or how fast, not what is trained: not in the run signature.
OPTION_FLAGS = sorted({k for options in OPTIMIZER_OPTIONS.values() for k in options})
NOT_SIGNED = ("work_dir", "out_checkpoint", "out_log", "num_workers", "threads", "progress",
              "verbose", "launcher")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--cache", type=Path, required=True, help="volume cache (cache_volumes.py)")
    add("--work-dir", type=Path, required=True, help="checkpoints, logs and run.json")
    add("--out-checkpoint", type=Path, required=True, help="final Lightning checkpoint")
    add("--out-log", type=Path, required=True, help="per-step CSV: step, epoch, loss, lr")
    add("--backbone", choices=BACKBONES, required=True)
    add("--patch-size", type=int, required=True)
    add("--accelerator", choices=("cpu", "gpu"), required=True)
    add("--seed", type=int, required=True)
    add("--loss", choices=sorted(LOSSES), required=True)
    add("--temperature", type=float, required=True)
    add("--batch-size", type=int, required=True, help="per device")
    add("--devices", type=int, required=True, help="per node")
    add("--nodes", type=int, required=True)
    add("--launcher", choices=("local", "srun"), required=True, help="who starts the ranks")
    add("--epochs", type=int, required=True)
    add("--optimizer", choices=OPTIMIZERS, required=True, help="lars (paper) | sgd | adamw")
    add("--base-lr", type=float, required=True, help="lr = base_lr * global batch / 256")
    add("--warmup-steps", type=int, required=True, help="linear warm-up steps before the cosine")
    add("--momentum", type=float, help="lars, sgd")
    add("--weight-decay", type=float, help="lars, sgd, adamw")
    add("--trust-coefficient", type=float, help="lars")
    add("--nesterov", action="store_true", help="sgd")
    add("--beta1", type=float, help="adamw")
    add("--beta2", type=float, help="adamw")
    add("--num-workers", type=int, required=True, help="DataLoader workers per device")
    add("--threads", type=int, required=True, help="this process's CPUs (the rule's threads)")
    add("--precision", choices=("32-true", "bf16-mixed", "16-mixed"), required=True)
    add("--negative-min-distance-mm", type=float, default=None)
    add("--augment-on", choices=("auto", "cpu", "device"), default="auto",
        help="views augmented per item in the workers (cpu) or per batch on the device; "
        "auto: device with --accelerator gpu")  # fmt: skip
    add("--progress", action="store_true", help="show a progress bar")
    add("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def optimizer_options(args: argparse.Namespace) -> dict:
    """The chosen optimiser's options from the command line; each of its numeric ones is needed.

    Raises:
        ValueError: an option of another optimiser, or a missing one of this optimiser.
    """
    given = {k: getattr(args, k) for k in OPTION_FLAGS if getattr(args, k) not in (None, False)}
    wanted = [k for k in OPTIMIZER_OPTIONS[args.optimizer] if k != "nesterov"]
    missing = ["--" + k.replace("_", "-") for k in wanted if k not in given]
    if missing:
        raise ValueError(f"--optimizer {args.optimizer} needs {', '.join(missing)}")
    return given


def augment_on(args: argparse.Namespace) -> str:
    """``cpu`` or ``device``: where the views are augmented (``auto`` follows the accelerator)."""
    if args.augment_on != "auto":
        return args.augment_on
    return "device" if args.accelerator == "gpu" else "cpu"


def check_srun(args: argparse.Namespace) -> None:
    """With ``--launcher srun``: srun started this process as one of nodes x devices tasks.

    Raises:
        ValueError: not started by srun, or by one for another number of tasks.
    """
    if args.launcher != "srun":
        return
    ranks, tasks = args.nodes * args.devices, os.environ.get("SLURM_NTASKS")
    if tasks is None or "SLURM_PROCID" not in os.environ:
        raise ValueError(
            "--launcher srun: this process was not started by srun (no SLURM_NTASKS or "
            f"SLURM_PROCID); run `srun --nodes={args.nodes} --ntasks-per-node={args.devices} "
            "python pretrain.py ...` inside a SLURM allocation, or use --launcher local"
        )
    if int(tasks) != ranks:
        raise ValueError(
            f"--launcher srun: srun started {tasks} task(s), --nodes {args.nodes} x --devices "
            f"{args.devices} needs {ranks}"
        )


def run_signature(args: argparse.Namespace) -> dict:
    signature = {k: str(v) for k, v in vars(args).items() if k not in NOT_SIGNED}
    signature["table_sha256"] = hashlib.sha256((args.cache / CACHE_TABLE).read_bytes()).hexdigest()
    return signature


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    # Each rank's share of the process's CPUs, less its DataLoader workers' (they are counted
    # in): under srun this process is one rank.
    srun = args.launcher == "srun"
    processes, ranks = (1 if srun else args.devices), args.devices * args.nodes
    set_torch_threads(args.threads, workers=args.num_workers, processes=processes, ddp=ranks > 1)
    try:
        check_srun(args)
        table = read_cached_table(args.cache)
        global_batch = args.batch_size * ranks
        if len(table) < global_batch:
            raise ValueError(
                f"{args.cache}: {len(table)} lesion(s), fewer than one global batch of "
                f"{global_batch} ({args.batch_size} x {args.devices} devices x {args.nodes} "
                "nodes); lower --batch-size"
            )
        steps = total_steps(len(table), args.batch_size, ranks, args.epochs)
        lr, options = scaled_lr(args.base_lr, global_batch), optimizer_options(args)
        optimizer_factory(args.optimizer, lr, **options)  # names any option it does not take
        if not 0 <= args.warmup_steps < steps:
            raise ValueError(
                f"--warmup-steps {args.warmup_steps}: must be >= 0 and below the run's {steps} "
                "optimiser steps"
            )
        resume = resume_checkpoint(args.work_dir, run_signature(args), rank=global_rank())
        trainer = build_trainer(
            args.work_dir,
            max_epochs=args.epochs,
            accelerator=args.accelerator,
            devices=args.devices,
            num_nodes=args.nodes,
            srun=srun,
            precision=args.precision,
            seed=args.seed,  # seeds the model's initialisation below too
            progress_bar=args.progress,
        )
        seed = derive_seed(args.seed, global_rank())  # each DDP rank draws its own views
        on_device = augment_on(args) == "device"
        dataset = SSLDataset(table, args.cache, args.patch_size,
                             None if on_device else ssl_view_transform(), seed=seed,
                             negative_min_distance_mm=args.negative_min_distance_mm)  # fmt: skip
        module = build_ssl_module(
            args.backbone,
            loss=args.loss,
            temperature=args.temperature,
            lr=lr,
            optimizer=args.optimizer,
            optimizer_options=options,
            warmup_steps=args.warmup_steps,
            total_steps=steps,
            augment=BatchedSSLViews(derive_seed(seed, 1)) if on_device else None,
        )
    except (ValueError, OSError) as err:  # bad table or cache, too few lesions, bad options
        log_problems(log, err)
        return 1
    started = f"SLURM_PROCID {os.environ['SLURM_PROCID']}" if srun else "started by Lightning"
    log.info("rank %d of %d (%s)", trainer.global_rank, trainer.world_size, started)
    log.info(
        "%d lesions, %d steps of %d lesions; %s at lr %g, %d warm-up steps; views on the %s",
        len(table), steps, global_batch, args.optimizer, lr, args.warmup_steps,
        "device" if on_device else "CPU",
    )  # fmt: skip
    loader = ssl_dataloader(
        dataset, args.batch_size, args.num_workers, pin_memory=args.accelerator == "gpu"
    )
    try:
        trainer.fit(module, train_dataloaders=loader, ckpt_path=resume)
        if not trainer.is_global_zero:
            return 0
        checkpoint = last_checkpoint(args.work_dir)
        metrics = read_step_metrics(args.work_dir, ["loss", "lr"])
        write_outputs({args.out_checkpoint: lambda tmp: shutil.copyfile(checkpoint, tmp),
                       args.out_log: lambda tmp: metrics.to_csv(tmp, index=False)})  # fmt: skip
    except (NonFiniteLossError, OSError) as err:  # OutputError: a full disk, an unwritable folder
        log_problems(log, err)
        return 1
    log.info("wrote %s and %s", args.out_checkpoint, args.out_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
