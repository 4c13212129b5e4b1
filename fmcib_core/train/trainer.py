"""The Lightning Trainer every training run uses, and resuming a run from its work folder.

A run's work folder holds::

    run.json                 the run's signature (its arguments), written at the start
    checkpoints/last.ckpt    model, optimiser, scheduler and loop state, rewritten every epoch
    logs/csv/version_N/      CSVLogger metrics (one version per start or restart of the run)
    logs/tensorboard/...     TensorBoard events (when tensorboard is installed)

:func:`resume_checkpoint` resumes only a run whose signature is the same, so a changed
configuration never silently continues an old run.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
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
LOG_DIR = "logs"
SIGNATURE_FILE = "run.json"
_CSV_NAME = "csv"


def build_trainer(
    work_dir: str | Path,
    *,
    max_epochs: int,
    accelerator: str = "cpu",
    devices: int = 1,
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
        devices: devices per node; more than one selects DDP (gloo on CPU, NCCL on GPU).
        precision: Lightning precision (``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``).
        seed: when given, ``seed_everything(seed, workers=True)`` here. Call it yourself before
            building the model if the model's initialisation must follow the seed too.
        log_every_n_steps: logging interval in optimiser steps.
        sync_batchnorm: synchronise batch norm across devices; default: when ``devices > 1`` on
            GPUs (PyTorch's SyncBatchNorm has no CPU implementation, so CPU DDP, a test set-up,
            keeps per-process statistics).
        strategy: Lightning strategy; default ``"ddp"`` when ``devices > 1`` else ``"auto"``.
        callbacks: extra callbacks, placed before the built-in ones.
        progress_bar: show a tqdm progress bar.
        deterministic: ask PyTorch for deterministic algorithms (slower on GPU; some 3D ops
            have no deterministic CUDA kernel: ``"warn"`` warns about those instead of failing).
        **trainer_kwargs: passed on to ``lightning.Trainer`` (e.g. ``limit_train_batches``).
    """
    if max_epochs < 1 or devices < 1:
        raise ValueError(f"need max_epochs >= 1 and devices >= 1, got {max_epochs}, {devices}")
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
        precision=precision,
        strategy=strategy or ("ddp" if devices > 1 else "auto"),
        sync_batchnorm=_default_sync(sync_batchnorm, accelerator, devices),
        callbacks=[*callbacks, *built_in],
        logger=_loggers(work_dir / LOG_DIR),
        log_every_n_steps=log_every_n_steps,
        enable_progress_bar=progress_bar,
        enable_model_summary=True,
        deterministic=deterministic,
        benchmark=False,
        **trainer_kwargs,
    )


def _default_sync(sync_batchnorm: bool | None, accelerator: str, devices: int) -> bool:
    if sync_batchnorm is not None:
        return sync_batchnorm
    return devices > 1 and accelerator != "cpu"


def _loggers(log_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(log_dir, name=_CSV_NAME)]
    if _TENSORBOARD_AVAILABLE:
        loggers.append(TensorBoardLogger(log_dir, name="tensorboard", default_hp_metric=False))
    return loggers


def last_checkpoint(work_dir: str | Path) -> Path:
    """Path of the checkpoint ``build_trainer`` rewrites every epoch (it may not exist yet)."""
    return Path(work_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def resume_checkpoint(work_dir: str | Path, signature: Mapping[str, Any]) -> Path | None:
    """The checkpoint to resume from, or None to start fresh; records ``signature``.

    Resumes from ``work_dir/checkpoints/last.ckpt`` only when ``work_dir/run.json`` holds the
    same signature. A different or unreadable signature means another run: its checkpoints and
    logs are deleted (with a warning) and the new signature is written before training starts.
    Under DDP call it in every process before ``fit``: rank 0 does the clean-up before the other
    ranks are launched, and they then find the signature already written.

    Args:
        work_dir: the run's work folder.
        signature: everything that defines the run (JSON-serialisable), not where outputs go.

    Returns:
        ``last.ckpt`` when resuming, else None.
    """
    work_dir = Path(work_dir)
    wanted = json.loads(json.dumps(dict(signature), sort_keys=True))
    signature_file = work_dir / SIGNATURE_FILE
    checkpoint = last_checkpoint(work_dir)
    recorded = _read_signature(signature_file)
    if recorded == wanted:
        if checkpoint.is_file():
            log.info("resuming the run in %s from %s", work_dir, checkpoint)
            return checkpoint
        return None
    stale = [p for p in (work_dir / CHECKPOINT_DIR, work_dir / LOG_DIR) if p.exists()]
    if stale:
        changed = _changed_keys(recorded, wanted)
        log.warning(
            "%s holds a run with other arguments (%s): deleting %s and starting fresh",
            work_dir,
            changed,
            ", ".join(str(p) for p in stale),
        )
        for path in stale:
            shutil.rmtree(path)
    work_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(signature_file) as tmp:
        tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return None


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
