"""Feature extraction in shards: a lesion table cut by image, and the shards' features put back.

A large table's features can be extracted by several jobs at once (workflow config
``features.shards``). Every image goes to exactly one shard, so each scan is read by one job
only, and the shards are balanced by lesion count, since a job's time grows with its lesions.
Gathering puts every shard's feature rows back at their rows of the whole table, so the
gathered features are those of one job over the whole table, row for row.

Float rounding in a backbone's forward pass depends on the batch's shape (CPU and GPU kernels
are chosen by it), not on the other lesions in the batch. A lesion in a job's last, short batch
would get features a few float32 ulps off those it gets in a full batch of another job; with
:func:`full_batches` every batch of every job is full, so a lesion's features are the same
whichever job (whole table or shard) extracts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["full_batches", "gather_shards", "shard_rows"]


def shard_rows(images: Sequence[str] | pd.Series, n_shards: int) -> list[np.ndarray]:
    """Row positions of each of ``n_shards`` shards of a table, its rows' images in ``images``.

    All rows of an image go to one shard. Images are dealt out largest first (most lesions; ties
    in order of first appearance), each to the shard with the fewest lesions so far (ties: the
    lowest shard), so the fullest shard holds at most the largest image's lesions more than the
    emptiest. The split depends only on ``images`` and ``n_shards``. With more shards than
    images, the shards past the number of images are empty.

    Args:
        images: each row's image (any hashable key, e.g. the resolved image path), N rows.
        n_shards: K >= 1.

    Returns:
        K int64 arrays of row positions (0-based), each in table order; together they hold every
        position 0 ... N-1 once.

    Raises:
        ValueError: ``n_shards`` below 1, or a row without an image.
    """
    if n_shards < 1:
        raise ValueError(f"the number of shards must be at least 1; got {n_shards}")
    codes, _ = pd.factorize(pd.Series(images, dtype=object))  # images in order of appearance
    if (codes < 0).any():
        raise ValueError(f"row {int(np.flatnonzero(codes < 0)[0])} has no image")
    lesions = np.bincount(codes)
    owner = np.empty(len(lesions), dtype=np.int64)
    load = [0] * n_shards
    for image in sorted(range(len(lesions)), key=lambda i: (-lesions[i], i)):
        shard = min(range(n_shards), key=lambda s: (load[s], s))
        owner[image] = shard
        load[shard] += int(lesions[image])
    shard_of_row = owner[codes]
    return [np.flatnonzero(shard_of_row == shard) for shard in range(n_shards)]


def gather_shards(shards: Sequence[tuple[np.ndarray, np.ndarray]], n_rows: int) -> np.ndarray:
    """The (N, F) features of a whole table from its shards' ``(rows, features)``.

    Args:
        shards: per shard, its rows' positions in the whole table (n,) and their features
            (n, F); an empty shard's features may have any width (it has no rows to give one).
        n_rows: N, the whole table's rows.

    Returns:
        float32 array (N, F), row i the features the shards give for position i.

    Raises:
        ValueError: a shard's rows and features disagree, the shards' feature widths differ, or
            the shards do not give every position 0 ... N-1 exactly once (shards of another
            table, or a shard missing); the message names the shard (0-based) or the rows.
    """
    widths = set()
    for i, (rows, features) in enumerate(shards):
        if np.ndim(rows) != 1 or np.ndim(features) != 2 or len(rows) != len(features):
            raise ValueError(
                f"shard {i}: {np.shape(rows)} row positions for features of shape "
                f"{np.shape(features)}; expected (n,) and (n, F)"
            )
        if len(rows):
            widths.add(np.shape(features)[1])
    if len(widths) > 1:
        raise ValueError(f"the shards' features differ in width: {sorted(widths)}")
    if not widths:
        raise ValueError("the shards hold no rows; there are no features to gather")
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in shards])
    inside = (rows >= 0) & (rows < n_rows)
    counts = np.bincount(rows[inside], minlength=n_rows)
    problems = [
        f"{what} {found[:5].tolist()}"
        for what, found in (
            ("rows in no shard:", np.flatnonzero(counts == 0)),
            ("rows in more than one shard:", np.flatnonzero(counts > 1)),
            ("rows past the table's end:", rows[~inside]),
        )
        if len(found)
    ]
    if problems:
        raise ValueError(
            f"these are not the shards of a table of {n_rows} rows; " + "; ".join(problems)
        )
    out = np.empty((n_rows, widths.pop()), dtype=np.float32)
    for positions, features in shards:
        if len(positions):
            out[np.asarray(positions, dtype=np.int64)] = features
    return out


def full_batches(table: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """``table`` (index reset) with its last row repeated up to a multiple of ``batch_size``.

    Feature extraction of the result has only full batches; its first ``len(table)`` feature
    rows are ``table``'s. The repeated row lies in the last row's image, so no image is added.

    Raises:
        ValueError: an empty table or a batch size below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if not len(table):
        raise ValueError("the lesion table has no rows")
    extra = -len(table) % batch_size
    return table.iloc[np.r_[np.arange(len(table)), np.full(extra, len(table) - 1)]].reset_index(
        drop=True
    )
