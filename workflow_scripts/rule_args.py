"""The command-line arguments that rules pass to the scripts, from config values and tasks."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmcib_core.tasks import TASKS, Task

__all__ = [
    "OPTIMIZER_SECTIONS",
    "PREPARE_INPUTS",
    "cli_flags",
    "csv_flag",
    "feature_options",
    "finetune_options",
    "list_flag",
    "pretrain_options",
    "prepare_options",
    "repeated_flag",
    "task_cli",
]

# finetune: keys the rules use themselves rather than pass on.
FINETUNE_RULE_KEYS = ("inits", "batch_size", "batch_size_random")
# pretrain: one section of options per optimiser (fmcib_core.optim.OPTIMIZERS); only the chosen
# optimiser's section reaches the script.
OPTIMIZER_SECTIONS = ("lars", "sgd", "adamw")
# pretrain: keys the rules use themselves (the cache rule's storage type) rather than pass on.
PRETRAIN_RULE_KEYS = ("cache_dtype",)
# prepare.<dataset>: keys the rules pass as inputs rather than options.
PREPARE_INPUTS = ("root", "clinical", "lidc_db")
# Task tables a prepared dataset must produce: lung1's converter writes them only with --split.
PREPARE_SPLIT = (0.5, 0.25, 0.25)
Config = Mapping[str, Any]


def cli_flags(options: Mapping[str, Any]) -> str:
    """Command-line flags from ``{key: value}``: ``--key-name value``; None is left out.

    A True boolean becomes a bare flag and False is left out (the script's flag is off).
    """
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        flags.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def task_cli(task: Task) -> str:
    """The scripts' arguments that name ``task``: ``--task 2``, or a custom task's definition."""
    if task in TASKS.values():
        return f"--task {task.id}"
    hidden = " ".join(str(size) for size in task.hidden)
    parts = [
        f"--task {shlex.quote(task.key)}",
        f"--label {shlex.quote(task.label_column)}",
        f"--kind {task.kind}",
        f"--n-classes {task.n_classes}",
        f"--hidden {hidden}",
        f"--display {shlex.quote(task.display)}",
    ]
    return " ".join(parts)


def list_flag(name: str, values: list[str]) -> str:
    """``--name v1 v2 ...`` (each value quoted for the shell), or nothing for no values."""
    return " ".join([f"--{name.replace('_', '-')}", *map(shlex.quote, values)]) if values else ""


def repeated_flag(name: str, groups: list[tuple[str, ...]]) -> str:
    """``--name a b --name c d ...``: the flag once per group of values (each quoted)."""
    return " ".join(list_flag(name, list(group)) for group in groups)


def csv_flag(features_parquet: str, enabled: bool) -> str:
    """``--csv PATH`` beside a feature table (``x.parquet`` -> ``x.csv``) when ``enabled``."""
    if not enabled:
        return ""
    return f"--csv {shlex.quote(str(Path(features_parquet).with_suffix('.csv')))}"


def finetune_options(config: Config, init: str) -> dict[str, Any]:
    """The fine-tuning script's options for ``init``: ``finetune:`` less what rules consume.

    The paper trains random-init models with a smaller batch (``batch_size_random``); the test
    CIs use ``linear_eval.bootstrap`` resamples, as linear evaluation's do.
    """
    options = {k: v for k, v in config["finetune"].items() if k not in FINETUNE_RULE_KEYS}
    options["batch_size"] = config["finetune"][
        "batch_size_random" if init == "random" else "batch_size"
    ]
    return {"bootstrap": config["linear_eval"]["bootstrap"], **options}


# features.batch_size null: the batch that suits the accelerator (a GPU wants large batches).
FEATURE_BATCH = {"cpu": 16, "gpu": 256}


def feature_options(config: Config) -> dict[str, Any]:
    """The feature scripts' ``--batch-size`` and ``--precision``; a null batch size is the
    accelerator's (:data:`FEATURE_BATCH`)."""
    batch = config["features"]["batch_size"] or FEATURE_BATCH[config["accelerator"]]
    return {"batch_size": batch, "precision": config["features"]["precision"]}


def pretrain_options(config: Config) -> dict[str, Any]:
    """The pretraining script's options: ``pretrain:`` with the chosen optimiser's section
    flattened in (``optimizer: adamw`` -> ``--optimizer adamw --base-lr ... --beta1 ...``) and the
    other optimisers' sections left out."""
    pretrain = config["pretrain"]
    skipped = OPTIMIZER_SECTIONS + PRETRAIN_RULE_KEYS
    options = {k: v for k, v in pretrain.items() if k not in skipped}
    return options | dict(pretrain.get(pretrain["optimizer"]) or {})


def prepare_options(config: Config, dataset: str) -> str:
    """The options of a ``prepare:`` dataset's converter: every key set (less the inputs), the
    split (the rules always want the task tables), and the config's seed.

    Keys left out fall back to the converter's own defaults (its ``--help`` lists them).
    """
    entry = dict(config["prepare"][dataset])
    options = {k: v for k, v in entry.items() if k not in PREPARE_INPUTS and k != "split"}
    flags = [cli_flags(options | {"seed": config["seed"]})]
    if dataset != "deeplesion":
        split = entry.get("split") or PREPARE_SPLIT
        flags.append(list_flag("split", [str(v) for v in split]))
    return " ".join(f for f in flags if f)
