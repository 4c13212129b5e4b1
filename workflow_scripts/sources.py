"""The feature sources of a task: the foundation backbone (ours or published weights) and the
random-init control, their output folders and linear-evaluation names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "FEATURE_DIRS",
    "LINEAR_EVAL_NAMES",
    "PRETRAINED",
    "feature_dirs",
    "feature_source",
    "features_of",
    "foundation_source",
    "foundation_weights",
    "stability_sources",
]

# Output folder of each feature source and the linear-evaluation file name made from it.
FEATURE_DIRS = {"foundation": "features", "random-init": "features_random-init"}
LINEAR_EVAL_NAMES = {"features": "linear_eval", "features_random-init": "linear_eval_random-init"}
PRETRAINED = "results/pretrain/model_weights.torch"

Config = Mapping[str, Any]


def foundation_weights(config: Config) -> str:
    """The foundation backbone: a published weights file if configured, else our pretraining."""
    return config.get("pretrained_weights") or PRETRAINED


def foundation_source(config: Config) -> str:
    """How the foundation features are labelled in outputs: ``published`` or ``foundation``."""
    return "published" if config.get("pretrained_weights") else "foundation"


def features_of(linear_eval_name: str) -> str:
    """The feature folder a linear evaluation reads (``linear_eval_random-init`` -> its folder)."""
    return {name: folder for folder, name in LINEAR_EVAL_NAMES.items()}[linear_eval_name]


def feature_source(config: Config, folder: str) -> str:
    """The ``--source`` of a feature folder's linear evaluation."""
    return foundation_source(config) if folder == FEATURE_DIRS["foundation"] else "random-init"


def stability_sources(config: Config, task_key: str) -> list[tuple[str, str, str]]:
    """``(name, weights or "random-init", linear model)`` of each feature source of a task."""
    sources = []
    for folder in feature_dirs(config):
        source = feature_source(config, folder)
        weights = foundation_weights(config) if folder == FEATURE_DIRS["foundation"] else source
        sources.append(
            (source, weights, f"results/{task_key}/{LINEAR_EVAL_NAMES[folder]}_model.npz")
        )
    return sources


def feature_dirs(config: Config) -> list[str]:
    """Feature output folders per task: foundation, plus the random-init control if enabled."""
    dirs = [FEATURE_DIRS["foundation"]]
    if config["features"]["random_init_control"]:
        dirs.append(FEATURE_DIRS["random-init"])
    return dirs
