"""Pure functions from the (validated) workflow config to table paths, inputs and target lists.

The rule files call these; they are plain Python so that tests can check them without Snakemake.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FEATURE_DIRS",
    "LINEAR_EVAL_NAMES",
    "SPLITS",
    "TASK_LABELS",
    "all_targets",
    "cli_flags",
    "demo_tables",
    "feature_dirs",
    "finetune_inits",
    "foundation_source",
    "foundation_weights",
    "missing_tables",
    "table_labels",
    "table_paths",
    "task_splits",
]

TASK_LABELS = {1: "Coarse_lesion_type", 2: "malignancy", 3: "survival"}
SPLITS = ("train", "val", "test")
# Output folder of each feature source and the linear-evaluation file name made from it.
FEATURE_DIRS = {"foundation": "features", "random-init": "features_random-init"}
LINEAR_EVAL_NAMES = {"features": "linear_eval", "features_random-init": "linear_eval_random-init"}
PRETRAINED = "results/pretrain/model_weights.torch"

Config = Mapping[str, Any]


def table_paths(config: Config) -> dict[str, str]:
    """Every configured table as ``{key: path}``; keys ``pretrain`` and ``task{N}_{split}``."""
    tables = config["tables"]
    out = {}
    if tables.get("pretrain"):
        out["pretrain"] = tables["pretrain"]
    for task in TASK_LABELS:
        for split, path in (tables.get(f"task{task}") or {}).items():
            out[f"task{task}_{split}"] = path
    return out


def table_labels(key: str) -> list[str]:
    """Label columns a table must hold valid values in (none for the pretraining table)."""
    if key == "pretrain":
        return []
    task = int(key.split("_", 1)[0].removeprefix("task"))
    return [TASK_LABELS[task]]


def demo_tables(out_dir: str) -> list[str]:
    """The tables the demo rule writes into ``out_dir``: pretrain and task{N}_{split}."""
    names = ["pretrain"] + [f"task{t}_{s}" for t in TASK_LABELS for s in SPLITS]
    return [str(Path(out_dir) / f"{name}.csv") for name in names]


def task_splits(config: Config, task: int) -> list[str]:
    """The splits configured for a task, in train, val, test order."""
    tables = config["tables"].get(f"task{task}") or {}
    return [split for split in SPLITS if split in tables]


def foundation_weights(config: Config) -> str:
    """The foundation backbone: a published weights file if configured, else our pretraining."""
    return config.get("pretrained_weights") or PRETRAINED


def foundation_source(config: Config) -> str:
    """How the foundation features are labelled in outputs: ``published`` or ``foundation``."""
    return "published" if config.get("pretrained_weights") else "foundation"


def finetune_inits(config: Config, task: int) -> list[str]:
    """Valid initialisations for a task: ``supervised`` needs Task 1's random-init model."""
    inits = list(config["finetune"]["inits"])
    if task == 1 or 1 not in config["tasks"] or not task_splits(config, 1):
        inits = [init for init in inits if init != "supervised"]
    return inits


def feature_dirs(config: Config) -> list[str]:
    """Feature output folders per task: foundation, plus the random-init control if enabled."""
    dirs = [FEATURE_DIRS["foundation"]]
    if config["features"]["random_init_control"]:
        dirs.append(FEATURE_DIRS["random-init"])
    return dirs


def missing_tables(config: Config, needed_tasks: list[int] | None = None) -> list[str]:
    """Config keys whose table file is absent (ignoring tables the demo rule will make)."""
    demo = config.get("demo")
    demo_dir = Path(demo["out_dir"]) if demo else None
    tasks = config["tasks"] if needed_tasks is None else needed_tasks
    missing = []
    for key, path in table_paths(config).items():
        if key != "pretrain" and int(key[4]) not in tasks:
            continue
        if key == "pretrain" and config.get("pretrained_weights"):
            continue
        if demo_dir is not None and Path(path).parent == demo_dir:
            continue
        if not Path(path).is_file():
            dotted = (
                f"tables.{key.replace('_', '.', 1)}" if key != "pretrain" else "tables.pretrain"
            )
            missing.append(f"{dotted} ({path})")
    if not config.get("pretrained_weights") and "pretrain" not in table_paths(config):
        missing.append("tables.pretrain (or set pretrained_weights)")
    return missing


def all_targets(config: Config) -> list[str]:
    """Every final output of `rule all`."""
    targets = [f"results/validation/{key}.json" for key in table_paths(config)]
    if not config.get("pretrained_weights"):
        targets.append(PRETRAINED)
    for task in config["tasks"]:
        base = f"results/task{task}"
        targets += [f"{base}/finetune_{init}/metrics.json" for init in finetune_inits(config, task)]
        for folder in feature_dirs(config):
            targets += [f"{base}/{folder}/{split}.parquet" for split in task_splits(config, task)]
            targets.append(f"{base}/{LINEAR_EVAL_NAMES[folder]}.json")
    targets.append("results/report/report.html")
    return targets


def cli_flags(options: Mapping[str, Any]) -> str:
    """Command-line flags from ``{key: value}``: ``--key-name value``; None is left out.

    A True boolean becomes a bare flag and False is left out, so script defaults stay in force.
    """
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        flags.append(flag if value is True else f"{flag} {value}")
    return " ".join(flags)
