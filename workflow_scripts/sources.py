"""The feature sources of a task: the foundation backbone (ours or published weights), the
random-init control and the handcrafted descriptor, their output folders and linear-evaluation
names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BUILT_IN",
    "FEATURE_DIRS",
    "FEATURE_SHARD",
    "FEATURE_TABLE",
    "HANDCRAFTED_DIR",
    "LINEAR_EVAL_NAMES",
    "PRETRAINED",
    "extract_features_paths",
    "feature_dirs",
    "feature_source",
    "feature_sources",
    "features_of",
    "foundation_source",
    "foundation_weights",
    "linear_eval_group",
    "linear_eval_names",
    "stability_sources",
]

# Output folder of each backbone's features (rule extract_features), of the handcrafted
# descriptor (rule handcrafted_features), and the linear-evaluation file name made from each.
FEATURE_DIRS = {"foundation": "features", "random-init": "features_random-init"}
HANDCRAFTED_DIR = "features_handcrafted"
LINEAR_EVAL_NAMES = {
    "features": "linear_eval",
    "features_random-init": "linear_eval_random-init",
    HANDCRAFTED_DIR: "linear_eval_handcrafted",
}
PRETRAINED = "results/pretrain/model_weights.torch"
# A backbone feature table, and one shard of it when extraction runs in several jobs
# (features.shards; scatteritem is Snakemake's "I-of-K").
FEATURE_TABLE = "results/{task}/{features}/{split}.parquet"
FEATURE_SHARD = "results/{task}/{features}/shards/{split}_{scatteritem}.parquet"
# Suffix of a task's extra patient-level linear evaluations (config linear_eval.patient_level).
PATIENT_SUFFIX = "_patient"
# Feature sources that no weights file makes: stability's `weights` of them is their name.
BUILT_IN = ("random-init", "handcrafted")

Config = Mapping[str, Any]


def foundation_weights(config: Config) -> str:
    """The foundation backbone: a published weights file if configured, else our pretraining."""
    return config.get("pretrained_weights") or PRETRAINED


def foundation_source(config: Config) -> str:
    """How the foundation features are labelled in outputs: ``published`` or ``foundation``."""
    return "published" if config.get("pretrained_weights") else "foundation"


def features_of(linear_eval_name: str) -> str:
    """The feature folder a linear evaluation reads (``linear_eval_random-init`` -> its folder;
    a patient-level one reads its lesion-level one's)."""
    base = linear_eval_name.removesuffix(PATIENT_SUFFIX)
    return {name: folder for folder, name in LINEAR_EVAL_NAMES.items()}[base]


def linear_eval_names(config: Config, task_key: str) -> list[str]:
    """A task's linear evaluations: one per feature source, and for a task of
    ``linear_eval.patient_level`` the same again at patient level (``..._patient``)."""
    names = [LINEAR_EVAL_NAMES[folder] for folder in feature_dirs(config)]
    if task_key in config["linear_eval"]["patient_level"]:
        names += [name + PATIENT_SUFFIX for name in names]
    return names


def linear_eval_group(config: Config, task_key: str, linear_eval_name: str) -> str | None:
    """The id column a linear evaluation aggregates lesions by (``--group-by``), or None:
    ``linear_eval.patient_level``'s column for a patient-level evaluation, else
    ``linear_eval.group_by``."""
    if linear_eval_name.endswith(PATIENT_SUFFIX):
        return config["linear_eval"]["patient_level"][task_key]
    return config["linear_eval"]["group_by"]


def feature_source(config: Config, folder: str) -> str:
    """The ``--source`` of a feature folder's linear evaluation."""
    if folder == FEATURE_DIRS["foundation"]:
        return foundation_source(config)
    return "handcrafted" if folder == HANDCRAFTED_DIR else "random-init"


def feature_sources(config: Config) -> list[str]:
    """The source name of each folder of :func:`feature_dirs`, in that order."""
    return [feature_source(config, folder) for folder in feature_dirs(config)]


def stability_sources(config: Config, task_key: str) -> list[tuple[str, str, str]]:
    """``(name, weights, linear model)`` of each feature source of a task; the weights are
    ``random-init`` for the control and ``handcrafted`` for the handcrafted descriptor."""
    sources = []
    for folder in feature_dirs(config):
        source = feature_source(config, folder)
        weights = foundation_weights(config) if folder == FEATURE_DIRS["foundation"] else source
        # the random-init control and the handcrafted descriptor are named by their source
        sources.append(
            (source, weights, f"results/{task_key}/{LINEAR_EVAL_NAMES[folder]}_model.npz")
        )
    return sources


def feature_dirs(config: Config) -> list[str]:
    """Feature output folders per task: foundation, plus the random-init control and the
    handcrafted descriptor where enabled."""
    dirs = [FEATURE_DIRS["foundation"]]
    if config["features"]["random_init_control"]:
        dirs.append(FEATURE_DIRS["random-init"])
    if config["features"]["handcrafted"]:
        dirs.append(HANDCRAFTED_DIR)
    return dirs


def extract_features_paths(shards: int) -> dict[str, str]:
    """Output, log and benchmark of an extract_features job: the feature table itself with one
    shard (``features.shards: 1``), else one shard of it (wildcard ``scatteritem``)."""
    job = "{task}_{features}_{split}" + ("_{scatteritem}" if shards > 1 else "")
    return {
        "output": FEATURE_SHARD if shards > 1 else FEATURE_TABLE,
        "log": f"logs/extract_features/{job}.log",
        "benchmark": f"results/benchmarks/extract_features/{job}.tsv",
    }
