"""Fitting a :class:`SupervisedModule`: the kept checkpoint, the epoch log and predictions.

A run resumes when its signature matches (:func:`~fmcib_core.train.trainer.resume_checkpoint`);
with a validation set the epoch of best ``val_score`` is kept, else the last one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from fmcib_core.io.atomic import atomic_path
from fmcib_core.io.weights import save_fmcib_weights
from fmcib_core.train.supervised.module import SupervisedModule, class_probabilities
from fmcib_core.train.trainer import (
    CHECKPOINT_DIR,
    build_trainer,
    last_checkpoint,
    read_csv_logs,
    resume_checkpoint,
)

__all__ = [
    "BEST_CHECKPOINT",
    "EPOCH_LOG_COLUMNS",
    "VAL_METRICS",
    "FitResult",
    "best_checkpoint",
    "checkpoint_epoch",
    "epoch_log",
    "OUTPUTS",
    "fit_supervised",
    "predict_proba",
    "write_outputs",
]

BEST_CHECKPOINT = "best"
EPOCH_LOG_COLUMNS: tuple[str, ...] = ("epoch", "train_loss", "val_loss", "val_score", "lr")
VAL_METRICS: tuple[str, ...] = ("val_score", "val_loss")
# Entered in this order, renamed in reverse: metrics.json lands last.
OUTPUTS = ("metrics.json", "predictions.parquet", "model_weights.torch", "train_log.csv")


def best_checkpoint(work_dir: str | Path) -> ModelCheckpoint:
    """The callback keeping ``work_dir/checkpoints/best.ckpt``: the epoch of highest ``val_score``.

    Ties keep the earlier epoch; a NaN score counts as the worst.
    """
    return ModelCheckpoint(
        dirpath=Path(work_dir) / CHECKPOINT_DIR,
        filename=BEST_CHECKPOINT,
        monitor="val_score",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )


def checkpoint_epoch(path: str | Path) -> int:
    """The (0-based) epoch after which a Lightning checkpoint was saved."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(state["epoch"])


def epoch_log(work_dir: str | Path) -> pd.DataFrame:
    """One row per epoch of a run's CSV logs (all restarts): :data:`EPOCH_LOG_COLUMNS`.

    ``train_loss`` is the epoch mean of the step losses; a metric never logged (no validation
    set) is an empty column. When a restarted run logged an epoch again, the later value wins.

    Raises:
        FileNotFoundError: the run has no CSV metrics.
    """
    raw = pd.concat(read_csv_logs(work_dir, "finish an epoch"), ignore_index=True)
    raw = raw.rename(columns={"train_loss_epoch": "train_loss"}).dropna(subset=["epoch"])
    columns = [c for c in EPOCH_LOG_COLUMNS[1:] if c in raw.columns]
    table = raw.groupby("epoch", sort=True)[columns].last().reset_index()
    table = table.dropna(how="all", subset=columns).reindex(columns=list(EPOCH_LOG_COLUMNS))
    return table.astype({"epoch": np.int64})


@dataclass(frozen=True, eq=False)
class FitResult:
    """What :func:`fit_supervised` kept.

    Attributes:
        trainer: the Trainer that ran the fit (reuse it to predict).
        checkpoint: the checkpoint kept: best ``val_score``, or the last epoch without validation.
        selection: ``"best_val_score"`` or ``"last_epoch"``.
        best_epoch: the kept checkpoint's epoch (0-based).
        history: the per-epoch log (:func:`epoch_log`).
        val_metrics: ``{"val_score", "val_loss"}`` of the kept epoch (None without validation;
            a NaN score becomes None).
    """

    trainer: L.Trainer
    checkpoint: Path
    selection: str
    best_epoch: int
    history: pd.DataFrame
    val_metrics: dict[str, float | None] | None


def fit_supervised(
    module: SupervisedModule,
    train: DataLoader,
    val: DataLoader | None,
    *,
    work_dir: str | Path,
    signature: Mapping[str, Any],
    max_epochs: int,
    accelerator: str = "cpu",
    precision: str = "32-true",
    progress_bar: bool = False,
) -> FitResult:
    """Train ``module`` with ``build_trainer`` on one device, resuming when possible.

    A run in ``work_dir`` with the same ``signature`` resumes from its last epoch (a finished
    run is not trained again); another signature starts afresh. With ``val`` the checkpoint of
    best ``val_score`` is kept (:func:`best_checkpoint`), else the last epoch's. Algorithms are
    deterministic on CPU (same seed and thread count, same numbers); on GPUs as far as torch has
    deterministic kernels.
    """
    best = [best_checkpoint(work_dir)] if val is not None else []
    trainer = build_trainer(
        work_dir,
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        callbacks=best,
        progress_bar=progress_bar,
        # CPU kernels have deterministic versions of everything used; some 3D CUDA backward
        # kernels (adaptive average pooling) have none, so on GPUs torch only warns.
        deterministic=True if accelerator == "cpu" else "warn",
    )
    trainer.fit(module, train, val, ckpt_path=resume_checkpoint(work_dir, signature))
    checkpoint = Path(best[0].best_model_path) if best else last_checkpoint(work_dir)
    history, epoch = epoch_log(work_dir), checkpoint_epoch(checkpoint)
    val_metrics = None
    if best:
        row = history.set_index("epoch").loc[epoch]
        val_metrics = {k: float(row[k]) if np.isfinite(row[k]) else None for k in VAL_METRICS}
    selection = "best_val_score" if best else "last_epoch"
    return FitResult(trainer, checkpoint, selection, epoch, history, val_metrics)


def predict_proba(
    trainer: L.Trainer, module: SupervisedModule, loader: DataLoader, checkpoint: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, K) of ``loader``'s rows with ``checkpoint``'s weights, and classes.

    The checkpoint's weights are loaded into ``module`` (strictly) and stay there.
    """
    batches = trainer.predict(module, loader, ckpt_path=checkpoint)
    return class_probabilities(batches, module.multiclass)


def write_outputs(
    out_dir: str | Path,
    report: Mapping[str, Any],
    predictions: pd.DataFrame,
    module: SupervisedModule,
    history: pd.DataFrame,
) -> None:
    """Write a fine-tuning run's :data:`OUTPUTS` into ``out_dir``, all or none.

    ``metrics.json`` (``report``), the test ``predictions``, the model's FMCIB weights (trunk and
    head) and the epoch log ``history``; each is written to a temporary name and renamed, the
    metrics last, so that a failure leaves none of them.
    """
    with contextlib.ExitStack() as stack:
        out = {n: stack.enter_context(atomic_path(Path(out_dir) / n)) for n in OUTPUTS}
        predictions.to_parquet(out["predictions.parquet"], index=False)
        trunk, head = module.backbone.state_dict(), module.head.state_dict()
        save_fmcib_weights(out["model_weights.torch"], trunk, head)
        history.to_csv(out["train_log.csv"], index=False)
        out["metrics.json"].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
