"""The Lightning Trainer every training run uses, and resuming a run from its work folder.

A run's work folder holds::

    run.json                 the run's signature (its arguments), written at the start
    checkpoints/last.ckpt    model, optimiser, scheduler and loop state, rewritten every epoch
    hpc_ckpt_N.ckpt          the same, mid-epoch, written by Lightning when SLURM signals a run
                             that srun started (auto-requeue) before it requeues the job
    logs/csv/version_N/      CSVLogger metrics (one version per start or restart of the run)
    logs/tensorboard/...     TensorBoard events (when tensorboard is installed)

:func:`resume_checkpoint` resumes only a run whose signature is the same, so a changed
configuration never silently continues an old run.

Who starts the DDP ranks is the caller's choice (``build_trainer(srun=...)``), never guessed from
the environment: inside a SLURM job step Lightning would otherwise take the step's one task for
the whole world and train ``devices=2`` as one process on half the data.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    LightningEnvironment,
    SLURMEnvironment,
)
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from fmcib_core.io.atomic import atomic_path

__all__ = [
    "CHECKPOINT_DIR",
    "HPC_CHECKPOINTS",
    "LAST_CHECKPOINT",
    "LOG_DIR",
    "SIGNATURE_FILE",
    "build_trainer",
    "last_checkpoint",
    "read_csv_logs",
    "read_step_metrics",
    "resume_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
# Lightning's name for what it saves on SLURM's requeue signal, in the run's work folder.
HPC_CHECKPOINTS = "hpc_ckpt_*.ckpt"
LOG_DIR = "logs"
SIGNATURE_FILE = "run.json"
_CSV_NAME = "csv"


def build_trainer(
    work_dir: str | Path,
    *,
    max_epochs: int,
    accelerator: str = "cpu",
    devices: int = 1,
    num_nodes: int = 1,
    srun: bool = False,
    precision: str = "32-true",
    seed: int | None = None,
    log_every_n_steps: int = 1,
    sync_batchnorm: bool | None = None,
    strategy: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress_bar: bool = True,
    deterministic: bool | str = False,
    **trainer_kwargs: Any,
) -> L.Trainer:
    """A Trainer that checkpoints every epoch into ``work_dir`` and logs every step.

    Callbacks: ``callbacks`` first, then a ModelCheckpoint that rewrites
    ``work_dir/checkpoints/last.ckpt`` at the end of every epoch, a LearningRateMonitor (per
    step) and a progress bar. Lightning keeps ModelCheckpoints in the order given, so a
    ModelCheckpoint among ``callbacks`` (e.g. best on validation) is ``trainer.checkpoint_callback``
    and what ``ckpt_path="best"`` refers to. Loggers: CSV (always) and TensorBoard (when
    installed) under ``work_dir/logs``, a new version folder per start.

    Args:
        work_dir: the run's work folder (created if needed).
        max_epochs: epochs of the whole run (a resumed run counts the epochs already done).
        accelerator: ``"cpu"``, ``"gpu"``, ... (chosen by the caller, never probed here).
        devices: devices per node; more than one (or several nodes) selects DDP (gloo on CPU,
            NCCL on GPU).
        num_nodes: nodes; more than one needs ``srun``.
        srun: the ranks were started by ``srun``, one task per device on every node: SLURM's
            environment gives each its rank (``SLURM_PROCID``), and on SLURM's requeue signal
            (SIGUSR1, asked for with ``sbatch --signal=SIGUSR1@<seconds>``) Lightning saves
            ``hpc_ckpt_N.ckpt`` and requeues the job (``SLURMEnvironment(auto_requeue=True)``).
            False: Lightning starts the ranks of this node itself (``LightningEnvironment``), also
            inside a SLURM job.
        precision: Lightning precision (``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``).
        seed: when given, ``seed_everything(seed, workers=True)`` here. Call it yourself before
            building the model if the model's initialisation must follow the seed too.
        log_every_n_steps: logging interval in optimiser steps.
        sync_batchnorm: synchronise batch norm across devices; default: with several ranks on
            GPUs (PyTorch's SyncBatchNorm has no CPU implementation, so CPU DDP, a test set-up,
            keeps per-process statistics).
        strategy: Lightning strategy; default ``"ddp"`` with several ranks, else ``"auto"``.
        callbacks: extra callbacks, placed before the built-in ones.
        progress_bar: show a tqdm progress bar.
        deterministic: ask PyTorch for deterministic algorithms (slower on GPU; some 3D ops
            have no deterministic CUDA kernel: ``"warn"`` warns about those instead of failing).
        **trainer_kwargs: passed on to ``lightning.Trainer`` (e.g. ``limit_train_batches``).

    Raises:
        ValueError: a count below 1, or several nodes without ``srun``.
    """
    if min(max_epochs, devices, num_nodes) < 1:
        raise ValueError(
            f"need max_epochs, devices and num_nodes >= 1, got {max_epochs}, {devices}, {num_nodes}"
        )
    if num_nodes > 1 and not srun:
        raise ValueError(
            f"num_nodes={num_nodes} needs srun=True: Lightning starts the ranks of one node only"
        )
    ranks = devices * num_nodes
    if seed is not None:
        L.seed_everything(seed, workers=True)
    work_dir = Path(work_dir)
    checkpoint = ModelCheckpoint(
        dirpath=work_dir / CHECKPOINT_DIR,
        # A top-1 checkpoint without a monitor is the latest one; naming it "last" keeps a single
        # file (save_last would write a second full copy of a 1.5 GB checkpoint).
        filename=Path(LAST_CHECKPOINT).stem,
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )
    built_in: list[Callback] = [
        checkpoint,
        LearningRateMonitor(logging_interval="step"),
    ]
    if progress_bar:
        built_in.append(TQDMProgressBar())
    return L.Trainer(
        default_root_dir=work_dir,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        plugins=[_cluster_environment(srun)],
        precision=precision,
        strategy=strategy or ("ddp" if ranks > 1 else "auto"),
        sync_batchnorm=_default_sync(sync_batchnorm, accelerator, ranks),
        callbacks=[*callbacks, *built_in],
        logger=_loggers(work_dir / LOG_DIR),
        log_every_n_steps=log_every_n_steps,
        enable_progress_bar=progress_bar,
        enable_model_summary=True,
        deterministic=deterministic,
        benchmark=False,
        **trainer_kwargs,
    )


def _default_sync(sync_batchnorm: bool | None, accelerator: str, ranks: int) -> bool:
    if sync_batchnorm is not None:
        return sync_batchnorm
    return ranks > 1 and accelerator != "cpu"


def _cluster_environment(srun: bool) -> ClusterEnvironment:
    # SLURMEnvironment checks srun's variables when built: only under srun.
    return SLURMEnvironment(auto_requeue=True) if srun else LightningEnvironment()


def _loggers(log_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(log_dir, name=_CSV_NAME)]
    if _TENSORBOARD_AVAILABLE:
        loggers.append(TensorBoardLogger(log_dir, name="tensorboard", default_hp_metric=False))
    return loggers


def last_checkpoint(work_dir: str | Path) -> Path:
    """Path of the checkpoint ``build_trainer`` rewrites every epoch (it may not exist yet)."""
    return Path(work_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def resume_checkpoint(
    work_dir: str | Path,
    signature: Mapping[str, Any],
    *,
    rank: int = 0,
    wait_s: float = 600.0,
) -> Path | None:
    """The checkpoint to resume from, or None to start fresh; records ``signature``.

    Resumes only when ``work_dir/run.json`` holds the same signature, from the newest of
    ``checkpoints/last.ckpt`` (end of an epoch) and the ``hpc_ckpt_N.ckpt`` that Lightning saves
    on SLURM's requeue signal (mid-epoch); older requeue checkpoints of the run are deleted. A
    different or unreadable signature means another run: its checkpoints (requeue ones too) and
    logs are deleted (with a warning) and the new signature is written before training starts.

    Under DDP call it in every process before ``fit``. Rank 0 alone deletes and writes; another
    rank waits until ``run.json`` holds its signature (at once when Lightning launched it after
    rank 0 got here; ranks that srun starts together wait for rank 0), then picks the same
    checkpoint.

    Args:
        work_dir: the run's work folder.
        signature: everything that defines the run (JSON-serialisable), not where outputs go.
        rank: this process's global rank.
        wait_s: how long a rank other than 0 waits for rank 0's ``run.json``.

    Returns:
        The checkpoint when resuming, else None.

    Raises:
        TimeoutError: rank > 0, and ``run.json`` did not get its signature within ``wait_s``.
    """
    work_dir = Path(work_dir)
    wanted = json.loads(json.dumps(dict(signature), sort_keys=True))
    signature_file = work_dir / SIGNATURE_FILE
    if rank > 0:
        deadline = time.monotonic() + wait_s
        while _read_signature(signature_file) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rank {rank}: {signature_file} did not get this run's signature from rank 0 "
                    f"within {wait_s:.0f} s"
                )
            time.sleep(0.2)
        return _newest_checkpoint(work_dir, clean=False)
    recorded = _read_signature(signature_file)
    if recorded == wanted:
        return _newest_checkpoint(work_dir, clean=True)
    stale = [p for p in (work_dir / CHECKPOINT_DIR, work_dir / LOG_DIR) if p.exists()]
    stale += sorted(work_dir.glob(HPC_CHECKPOINTS))
    if stale:
        changed = _changed_keys(recorded, wanted)
        log.warning(
            "%s holds a run with other arguments (%s): deleting %s and starting fresh",
            work_dir,
            changed,
            ", ".join(str(p) for p in stale),
        )
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(signature_file) as tmp:
        tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return None


def _newest_checkpoint(work_dir: Path, clean: bool) -> Path | None:
    """The newest of ``last.ckpt`` and the requeue checkpoints; ``clean`` deletes the older
    requeue checkpoints (earlier states of the same run)."""
    found = {}
    for path in [last_checkpoint(work_dir), *work_dir.glob(HPC_CHECKPOINTS)]:
        try:
            found[path] = path.stat().st_mtime_ns
        except FileNotFoundError:  # rank 0 deleted an older requeue checkpoint just now
            continue
    if not found:
        return None
    newest = max(found, key=found.__getitem__)
    if clean:
        for path in found:
            if path != newest and path != last_checkpoint(work_dir):
                path.unlink(missing_ok=True)
    log.info("resuming the run in %s from %s", work_dir, newest)
    return newest


def _read_signature(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _changed_keys(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> str:
    if recorded is None:
        return "no readable run.json"
    keys = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
    return "changed: " + ", ".join(keys)


def read_csv_logs(work_dir: str | Path, needed: str) -> list[pd.DataFrame]:
    """Every ``logs/csv/version_N/metrics.csv`` of a run (one per restart), in version order.

    Raises:
        FileNotFoundError: the run has no CSV metrics; the message asks whether it did what
            ``needed`` says (e.g. "take a step").
    """
    root = Path(work_dir) / LOG_DIR / _CSV_NAME
    files = sorted(root.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not files:
        raise FileNotFoundError(f"{root}: no metrics.csv; did the run {needed}?")
    return [pd.read_csv(f) for f in files]


def read_step_metrics(work_dir: str | Path, columns: Iterable[str]) -> pd.DataFrame:
    """Per-step metrics of a run, across restarts, from its CSV logs.

    Reads every ``logs/csv/version_N/metrics.csv`` in version order and keeps the rows where all
    of ``columns`` were logged; when a restarted run logged a step again (it resumes from the last
    epoch's end) the later row wins.

    Returns:
        A frame with ``step``, ``epoch`` and ``columns``, one row per step, sorted by step.

    Raises:
        FileNotFoundError: the run has no CSV metrics.
    """
    columns = list(columns)
    frames = read_csv_logs(work_dir, "take a step")
    frames = [f[["step", "epoch", *columns]] for f in frames if set(columns) <= set(f.columns)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in ["step", "epoch", *columns]})
    metrics = pd.concat(frames, ignore_index=True).dropna(subset=columns)
    metrics = metrics.drop_duplicates("step", keep="last").sort_values("step")
    return metrics.astype({"step": int, "epoch": int}).reset_index(drop=True)
