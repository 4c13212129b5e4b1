"""train layer of fmcib_core: the Trainer every run uses and the Lightning modules."""

from __future__ import annotations

from fmcib_core.train.ssl import NonFiniteLossError, SSLModule, build_ssl_module
from fmcib_core.train.supervised import (
    FitResult,
    SupervisedModule,
    build_supervised,
    fit_supervised,
    initialise,
    predict_proba,
)
from fmcib_core.train.trainer import (
    build_trainer,
    last_checkpoint,
    read_step_metrics,
    resume_checkpoint,
)

__all__ = [
    "FitResult",
    "SupervisedModule",
    "build_supervised",
    "fit_supervised",
    "initialise",
    "predict_proba",
    "NonFiniteLossError",
    "SSLModule",
    "build_ssl_module",
    "build_trainer",
    "last_checkpoint",
    "read_step_metrics",
    "resume_checkpoint",
]
