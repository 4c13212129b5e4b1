"""What every converter shares: problems reported together, a summary of what was skipped, and
writing the outputs only through ``atomic_path``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fmcib_core.io.atomic import atomic_path

__all__ = [
    "DatasetError",
    "Problems",
    "Summary",
    "check_columns",
    "prepared_folder",
    "write_json",
    "write_table",
]

SUMMARY_NAME = "summary.json"


class DatasetError(ValueError):
    """A dataset that cannot be converted; the message holds one line per problem."""


class Problems:
    """Collects every problem of a dataset, each ``{file}: {what is wrong}; {what to do}``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str | Path, what: str, todo: str) -> None:
        """Record one problem: where it is, what is wrong and what to do about it."""
        self.lines.append(f"{where}: {what}; {todo}")

    def add_message(self, where: str | Path, message: str) -> None:
        """Record a problem whose message already says what to do (``what; what to do``)."""
        self.lines.append(f"{where}: {message}")

    def __bool__(self) -> bool:
        return bool(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def raise_if_any(self) -> None:
        """Raise ``DatasetError`` listing every problem, if there is one."""
        if self.lines:
            raise DatasetError("\n".join(self.lines))


@dataclass
class Summary:
    """What a conversion did: its inputs, the rows of each table, and every skipped item.

    Attributes:
        dataset: the converter's name (``deeplesion``, ``lung1``, ``luna16``, ``masks``).
        inputs: the input paths and options, as given.
        skipped: reason -> identifiers of the skipped lesions (or patients, scans) in input order.
        counts: other numbers worth knowing (seeds from a fallback, files ignored, ...).
        tables: table name -> number of rows written.
    """

    dataset: str
    inputs: dict[str, Any]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, item: object) -> None:
        """Count ``item`` as skipped for ``reason``."""
        self.skipped.setdefault(reason, []).append(str(item))

    def n_skipped(self) -> int:
        return sum(len(items) for items in self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every skip reason with its count and identifiers."""
        return {
            "dataset": self.dataset,
            "inputs": {k: str(v) if isinstance(v, Path) else v for k, v in self.inputs.items()},
            "tables": self.tables,
            "n_skipped": self.n_skipped(),
            "skipped": {
                reason: {"count": len(items), "items": items}
                for reason, items in self.skipped.items()
            },
            **self.counts,
        }

    def lines(self) -> list[str]:
        """One human-readable line per table and per skip reason, for the log."""
        out = [f"{name}: {rows} rows" for name, rows in self.tables.items()]
        out += [f"skipped {len(items)}: {reason}" for reason, items in self.skipped.items()]
        return out


def check_columns(
    table: pd.DataFrame, required: Iterable[str], where: str | Path, problems: Problems
) -> bool:
    """Record a problem per missing required column; return whether all are present."""
    missing = [c for c in required if c not in table.columns]
    for column in missing:
        problems.add(where, f"column '{column}' is missing", "use the dataset's published file")
    return not missing


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a lesion table as CSV (no index)."""
    table.to_csv(path, index=False)


def write_json(data: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def prepared_folder(out_dir: str | Path):
    """``atomic_path`` of a converter's output folder, which must be absent or empty.

    Raises:
        DatasetError: ``out_dir`` exists and is not an empty folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise DatasetError(f"{out_dir}: output folder exists and is not empty; remove it first")
    return atomic_path(out_dir)
