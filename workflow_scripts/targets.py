"""Pure functions from the (validated) workflow config to rule inputs, options and targets.

The rule files call these (with :mod:`workflow_scripts.config_tables` and
:mod:`workflow_scripts.rule_args`); they are plain Python so
that tests can check them without Snakemake.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmcib_core.tasks import TASKS
from workflow_scripts.config_tables import configured_tasks, table_paths, task_splits
from workflow_scripts.prepared import prepared_tables
from workflow_scripts.sources import PRETRAINED, feature_dirs, linear_eval_names

__all__ = [
    "SUPERVISED_WEIGHTS",
    "all_targets",
    "finetune_inits",
    "missing_tables",
    "stability_targets",
]

# The `supervised` initialisation: the backbone of the first paper task's random-init model.
SUPERVISED_SOURCE = TASKS[1]
SUPERVISED_WEIGHTS = f"results/{SUPERVISED_SOURCE.key}/finetune_random/model_weights.torch"

Config = Mapping[str, Any]


def finetune_inits(config: Config, task_key: str) -> list[str]:
    """Valid initialisations for a task: ``supervised`` needs Task 1's random-init model."""
    task = configured_tasks(config)[task_key]
    source = SUPERVISED_SOURCE.key
    has_source = source in configured_tasks(config) and task_splits(config, source)
    inits = list(config["finetune"]["inits"])
    if not task.supervised_init or not has_source:
        inits = [init for init in inits if init != "supervised"]
    return inits


def stability_targets(config: Config) -> list[str]:
    """Each task's ``stability.json`` (tasks with a test table), when stability is enabled."""
    if not config["stability"]["enabled"]:
        return []
    keys = [key for key in configured_tasks(config) if "test" in task_splits(config, key)]
    return [f"results/{key}/stability.json" for key in keys]


def all_targets(config: Config) -> list[str]:
    """Every final output of `rule all`."""
    targets = [f"results/validation/{key}.json" for key in table_paths(config)]
    if not config.get("pretrained_weights"):
        targets.append(PRETRAINED)
    for key in configured_tasks(config):
        base = f"results/{key}"
        targets += [f"{base}/finetune_{init}/metrics.json" for init in finetune_inits(config, key)]
        for folder in feature_dirs(config):
            targets += [f"{base}/{folder}/{split}.parquet" for split in task_splits(config, key)]
        targets += [f"{base}/{name}.json" for name in linear_eval_names(config, key)]
        targets.append(f"{base}/data_efficiency.json")
    targets += stability_targets(config)
    targets.append("results/report/report.html")
    return targets


def _dotted(config: Config, table_key: str) -> str:
    if table_key == "pretrain":
        return "tables.pretrain"
    task_key, split = table_key.rsplit("_", 1)
    if task_key in (config.get("custom_tasks") or {}):
        return f"custom_tasks.{task_key}.tables.{split}"
    return f"tables.{task_key}.{split}"


def missing_tables(config: Config) -> list[str]:
    """Config keys of needed tables whose file is absent (ignoring tables the demo and prepare
    rules make)."""
    demo = config.get("demo")
    demo_dir = Path(demo["out_dir"]) if demo else None
    tasks = configured_tasks(config)
    prepared = prepared_tables(config)
    missing = []
    for key, path in table_paths(config).items():
        if key != "pretrain" and key.rsplit("_", 1)[0] not in tasks:
            continue
        if key in prepared:
            continue
        if key == "pretrain" and config.get("pretrained_weights"):
            continue
        if demo_dir is not None and Path(path).parent == demo_dir:
            continue
        if not Path(path).is_file():
            missing.append(f"{_dotted(config, key)} ({path})")
    if not config.get("pretrained_weights") and "pretrain" not in table_paths(config):
        missing.append("tables.pretrain (or set pretrained_weights)")
    return missing
