"""The tables that the `prepare:` rules make from public datasets (docs/method.md section 8)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PREPARED", "prepared_datasets", "prepared_tables"]

SPLITS = ("train", "val", "test")
# Each dataset of `prepare:` -> the table keys its rule writes, as `{out_dir}/{dataset}/{key}.csv`.
PREPARED = {
    "deeplesion": ("pretrain", *(f"task1_{s}" for s in SPLITS)),
    "luna16": tuple(f"task2_{s}" for s in SPLITS),
    "lung1": tuple(f"task3_{s}" for s in SPLITS),
}

Config = Mapping[str, Any]


def prepared_datasets(config: Config) -> dict[str, str]:
    """``{dataset: output folder}`` of every dataset set under ``prepare:``."""
    prepare = config.get("prepare") or {}
    out_dir = prepare.get("out_dir", "resources/prepared")
    return {name: str(Path(out_dir) / name) for name in PREPARED if prepare.get(name)}


def prepared_tables(config: Config) -> dict[str, str]:
    """``{table key: path}`` of the tables the configured ``prepare:`` rules write."""
    return {
        key: str(Path(folder) / f"{key}.csv")
        for name, folder in prepared_datasets(config).items()
        for key in PREPARED[name]
    }
