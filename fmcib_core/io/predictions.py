"""The prediction-table convention: a table's columns followed by its predicted probabilities.

Binary tasks add one column ``prob`` (the probability of label 1); multiclass tasks add
``prob_<class>`` for each class, in class order. Linear evaluation and fine-tuning write this
layout, and the report reads it back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["BINARY_COLUMN", "CLASS_PREFIX", "probability_columns", "with_probabilities"]

BINARY_COLUMN = "prob"
CLASS_PREFIX = "prob_"


def with_probabilities(
    table: pd.DataFrame, proba: np.ndarray, classes: np.ndarray, multiclass: bool
) -> pd.DataFrame:
    """The table's columns followed by the probabilities, one row per table row.

    Args:
        table: the rows predicted (its index is dropped).
        proba: (N, K) class probabilities, columns in ``classes`` order (NaN where a row could
            not be predicted).
        classes: (K,) class labels.
        multiclass: ``prob_<class>`` columns when True, else ``prob`` = the column of class 1.

    Raises:
        ValueError: the row counts differ or a probability column name is already taken.
    """
    names = [f"{CLASS_PREFIX}{c}" for c in classes.tolist()] if multiclass else [BINARY_COLUMN]
    block = proba if multiclass else proba[:, 1:]
    taken = [n for n in names if n in table.columns]
    if taken or len(table) != len(block):
        raise ValueError(
            f"cannot add predictions ({len(block)} rows for {len(table)}; "
            f"columns already present: {taken})"
        )
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(block, columns=names)], axis=1)


def probability_columns(table: pd.DataFrame) -> dict[int, str]:
    """``{-1: "prob"}`` for a binary table, else ``{class: "prob_<class>"}`` in class order."""
    if BINARY_COLUMN in table.columns:
        return {-1: BINARY_COLUMN}
    found = {}
    for column in table.columns:
        suffix = str(column).removeprefix(CLASS_PREFIX)
        if str(column).startswith(CLASS_PREFIX) and suffix.lstrip("-").isdigit():
            found[int(suffix)] = column
    return dict(sorted(found.items()))
