"""Pure functions from the (validated) workflow config to its tasks and lesion tables.

Task knowledge comes from ``fmcib_core.tasks`` (torch-free): the paper's tasks chosen by
``tasks:`` and every task a user declares under ``custom_tasks:``, each keyed by its output folder
name (``task2``, or the custom task's name). Tables are keyed ``pretrain`` and ``{task}_{split}``.
A dataset set under ``prepare:`` provides the tables its rule writes (``PREPARED``), in place of
the ``tables:`` entries of the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmcib_core.tasks import TASKS, Task, custom_task
from workflow_scripts.prepared import prepared_tables

__all__ = [
    "SPLITS",
    "configured_tasks",
    "demo_tables",
    "preview_table",
    "table_labels",
    "table_paths",
    "task_splits",
]

SPLITS = ("train", "val", "test")
Config = Mapping[str, Any]


def configured_tasks(config: Config) -> dict[str, Task]:
    """``{key: Task}``: the paper tasks of ``tasks:`` in order, then ``custom_tasks:``.

    Raises:
        ValueError: a custom task that cannot exist (the message names it).
    """
    found = {TASKS[number].key: TASKS[number] for number in config["tasks"]}
    for name, entry in (config.get("custom_tasks") or {}).items():
        found[name] = custom_task(
            name,
            entry["label"],
            entry.get("kind", "binary"),
            n_classes=entry.get("n_classes"),
            hidden=tuple(entry.get("hidden", (2048,))),
            display=entry.get("display"),
        )
    return found


def _task_tables(config: Config, key: str) -> Mapping[str, str]:
    custom = (config.get("custom_tasks") or {}).get(key)
    if custom is not None:
        return custom["tables"]
    prepared = prepared_tables(config)
    from_prepare = {s: prepared[f"{key}_{s}"] for s in SPLITS if f"{key}_{s}" in prepared}
    return from_prepare or config["tables"].get(key) or {}


def table_paths(config: Config) -> dict[str, str]:
    """Every configured table as ``{key: path}``; keys ``pretrain`` and ``{task key}_{split}``.

    The paper tables under ``tables:`` are listed whether or not ``tasks:`` selects their task;
    a table a ``prepare:`` dataset provides replaces the ``tables:`` entry of its key.
    """
    out = {}
    pretrain = prepared_tables(config).get("pretrain") or config["tables"].get("pretrain")
    if pretrain:
        out["pretrain"] = pretrain
    keys = [task.key for task in TASKS.values()] + list(config.get("custom_tasks") or {})
    for key in keys:
        for split, path in _task_tables(config, key).items():
            out[f"{key}_{split}"] = path
    return out


def _table_task(config: Config, table_key: str) -> Task | None:
    """The task a table belongs to, or None for the pretraining table."""
    if table_key == "pretrain":
        return None
    task_key = table_key.rsplit("_", 1)[0]
    tasks = {t.key: t for t in TASKS.values()} | configured_tasks(config)
    return tasks[task_key]


def table_labels(config: Config, table_key: str) -> list[str]:
    """Labels a table must hold valid values in, in the validator's ``--labels`` form.

    None for the pretraining table; a paper task's label column; ``COLUMN=K`` for a custom
    task's label with K classes.
    """
    task = _table_task(config, table_key)
    if task is None:
        return []
    if task in TASKS.values():
        return [task.label_column]
    return [f"{task.label_column}={task.n_classes}"]


def demo_tables(out_dir: str) -> list[str]:
    """The tables the demo rule writes into ``out_dir``: pretrain and task{N}_{split}."""
    names = ["pretrain"] + [f"{task.key}_{s}" for task in TASKS.values() for s in SPLITS]
    return [str(Path(out_dir) / f"{name}.csv") for name in names]


def task_splits(config: Config, task_key: str) -> list[str]:
    """The splits configured for a task, in train, val, test order."""
    tables = _task_tables(config, task_key)
    return [split for split in SPLITS if split in tables]


def preview_table(config: Config) -> str | None:
    """The table whose first lesions the report previews: Task 1's test table, else any."""
    tables = table_paths(config)
    return tables.get(f"{TASKS[1].key}_test", next(iter(tables.values()), None))
