"""Supervised training of a task (docs/method.md section 5): the initialisations (``init``), the
LightningModule and its parts (``module``) and fitting with the kept checkpoint (``fit``)."""

from __future__ import annotations

from fmcib_core.train.supervised.data import Split, read_splits, split_loaders
from fmcib_core.train.supervised.fit import (
    BEST_CHECKPOINT,
    EPOCH_LOG_COLUMNS,
    OUTPUTS,
    VAL_METRICS,
    FitResult,
    best_checkpoint,
    checkpoint_epoch,
    epoch_log,
    fit_supervised,
    predict_proba,
    write_outputs,
)
from fmcib_core.train.supervised.init import INITS, init_head, initialise
from fmcib_core.train.supervised.module import (
    SupervisedModule,
    adam,
    build_supervised,
    class_probabilities,
    step_lr,
    task_loss,
)

__all__ = [
    "BEST_CHECKPOINT",
    "EPOCH_LOG_COLUMNS",
    "INITS",
    "OUTPUTS",
    "VAL_METRICS",
    "FitResult",
    "Split",
    "SupervisedModule",
    "adam",
    "best_checkpoint",
    "build_supervised",
    "checkpoint_epoch",
    "class_probabilities",
    "epoch_log",
    "fit_supervised",
    "init_head",
    "initialise",
    "predict_proba",
    "read_splits",
    "split_loaders",
    "step_lr",
    "task_loss",
    "write_outputs",
]
