"""The command-line arguments that rules pass to the scripts, from config values and tasks."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmcib_core.tasks import TASKS, Task

__all__ = [
    "LAUNCHERS",
    "OPTIMIZER_SECTIONS",
    "PREPARE_INPUTS",
    "cli_flags",
    "csv_flag",
    "feature_options",
    "finetune_options",
    "list_flag",
    "pretrain_launch",
    "pretrain_options",
    "pretrain_resources",
    "pretrain_threads",
    "prepare_options",
    "repeated_flag",
    "stability_options",
    "task_cli",
]

# finetune: keys the rules use themselves rather than pass on.
FINETUNE_RULE_KEYS = ("inits", "batch_size", "batch_size_random")
# stability: keys the rules use themselves (whether the jobs exist, their threads).
STABILITY_RULE_KEYS = ("enabled", "threads")
# pretrain: one section of options per optimiser (fmcib_core.optim.OPTIMIZERS); only the chosen
# optimiser's section reaches the script.
OPTIMIZER_SECTIONS = ("lars", "sgd", "adamw")
# pretrain: keys the rules use themselves (the cache rule's storage type) rather than pass on.
PRETRAIN_RULE_KEYS = ("cache_dtype",)
# prepare.<dataset>: keys the rules pass as inputs rather than options.
PREPARE_INPUTS = ("root", "clinical", "lidc_db")
# Task tables a prepared dataset must produce: lung1's converter writes them only with --split.
PREPARE_SPLIT = (0.5, 0.25, 0.25)
# pretrain.launcher: who starts the DDP ranks. local: Lightning, inside the one process the rule
# starts (one node); srun: the rule's command starts one task per device on every node.
LAUNCHERS = ("local", "srun")
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


def stability_options(config: Config) -> dict[str, Any]:
    """The stability script's options: ``stability:`` less what rules consume, with the feature
    scripts' batch size and precision."""
    options = {k: v for k, v in config["stability"].items() if k not in STABILITY_RULE_KEYS}
    return options | feature_options(config)


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


def _launch_settings(config: Config) -> tuple[str, int, int]:
    """``(launcher, nodes, devices)`` of the pretraining, checked against each other.

    Raises:
        ValueError: several nodes without ``launcher: srun`` (Lightning's own launcher starts
            processes on its node only), or ``srun`` for a single rank (the SLURM executor runs a
            job through its own command only when it asks for more than one task).
    """
    pretrain = config["pretrain"]
    launcher, nodes, devices = pretrain["launcher"], pretrain["nodes"], pretrain["devices"]
    if launcher not in LAUNCHERS:
        raise ValueError(f"pretrain.launcher: {launcher!r} is none of {', '.join(LAUNCHERS)}")
    if nodes > 1 and launcher != "srun":
        raise ValueError(
            f"pretrain.nodes: {nodes} nodes need pretrain.launcher: srun (Lightning's own "
            "launcher starts the ranks of one node only)"
        )
    if launcher == "srun" and nodes * devices < 2:
        raise ValueError(
            "pretrain.launcher: srun starts one task per device and needs at least 2 (nodes x "
            "devices); one device trains with launcher: local"
        )
    return launcher, nodes, devices


def pretrain_threads(config: Config) -> int:
    """The pretrain rule's ``threads``: the CPUs of one of its processes, workers counted in.

    With ``launcher: local`` the one process holds every rank of the node and their DataLoader
    workers: ``max(1, num_workers) x devices + 1``. With ``srun`` each task is one rank:
    ``max(1, num_workers) + 1`` (SLURM gives every task that many CPUs).
    """
    launcher, _, devices = _launch_settings(config)
    per_rank = max(1, config["pretrain"]["num_workers"])
    return per_rank + 1 if launcher == "srun" else per_rank * devices + 1


def pretrain_resources(config: Config) -> dict[str, Any]:
    """The pretrain rule's resources besides memory and run time (the SLURM executor's names).

    ``local``: ``gpu`` = devices with ``accelerator: gpu`` (``--gpus=N``), else 0: one task.
    ``srun``: ``nodes`` (``--nodes``), the tasks (``tasks_per_node`` = devices, or ``tasks`` =
    nodes where that would be 1: the executor wants more than one), ``mpi`` (the executor then
    runs the rule's own command in the allocation, which starts the tasks: :func:`pretrain_launch`)
    and, with ``accelerator: gpu``, ``gres: gpu:<devices>``, GPUs per node (``--gpus`` would be a
    total, which SLURM may spread unevenly over the nodes).
    """
    launcher, nodes, devices = _launch_settings(config)
    gpu = config["accelerator"] == "gpu"
    if launcher == "local":
        return {"gpu": devices if gpu else 0}
    tasks = {"tasks_per_node": devices} if devices > 1 else {"tasks": nodes}
    if gpu and devices == 1:
        tasks["tasks_per_gpu"] = 1  # else the executor asks for --ntasks-per-gpu=<tasks>
    resources: dict[str, Any] = {"nodes": nodes, **tasks, "mpi": "srun"}
    if gpu:
        resources["gres"] = f"gpu:{devices}"
    return resources


def pretrain_launch(config: Config, threads: int, mpi: str | None = None) -> str:
    """What the pretrain rule's command starts with: nothing (``local``), or the ``srun`` line
    that starts one task per device on every node with ``threads`` CPUs each (``srun``), ending
    in a space so that the rule writes ``{params.launch}python``.

    ``mpi`` is the job's ``mpi`` resource (``srun``, or the profile's own, e.g.
    ``srun --mpi=pmix``). ``--kill-on-bad-exit`` ends every rank when one fails, rather than
    leaving the others waiting in a collective until the time limit.
    """
    launcher, nodes, devices = _launch_settings(config)
    if launcher == "local":
        return ""
    flags = [
        f"--nodes={nodes}",
        f"--ntasks-per-node={devices}",
        f"--cpus-per-task={threads}",
        "--kill-on-bad-exit=1",
    ]
    if config["accelerator"] == "gpu":
        flags.append(f"--gres=gpu:{devices}")
    return " ".join([mpi or "srun", *flags]) + " "
