"""Seeding of datasets that draw random numbers, in the main process and in DataLoader workers.

Contract: a dataset that draws random numbers (augmentations, random negatives) owns its random
states and exposes ``reseed(seed: int) -> None``, which resets all of them (MONAI transforms via
``set_random_state``, its ``numpy.random.Generator``) from that one integer.

- Main process (``num_workers=0``): the script builds the dataset with
  ``derive_seed(run_seed, global_rank())``, so the draws follow from the run's ``--seed`` and
  differ between DDP ranks.
- Workers: pass :func:`worker_init_fn` to the DataLoader. It reseeds the worker's copy of the
  dataset from ``torch.initial_seed()`` (PyTorch sets it to ``base_seed + worker_id``, where
  ``base_seed`` is drawn from the main process's torch generator each time the loader starts its
  workers; ``seed_everything(seed, workers=True)`` makes that generator follow the run seed) mixed
  with the DDP rank. Two workers, two ranks or two worker start-ups never share a stream.

With ``persistent_workers=True`` the workers start once per run and their streams simply continue
from epoch to epoch. Lightning does not save the workers' random states: a resumed run draws
augmentations anew (the model, optimiser, schedule and step count are restored exactly).
"""

from __future__ import annotations

import random
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

__all__ = ["Reseedable", "derive_seed", "global_rank", "worker_init_fn"]


@runtime_checkable
class Reseedable(Protocol):
    """A dataset whose random draws are all reset by ``reseed``."""

    def reseed(self, seed: int) -> None:
        """Reset every random state of the dataset from ``seed``."""


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed mixed from any non-negative integers (``numpy.random.SeedSequence``).

    32 bits because MONAI's ``set_random_state`` accepts seeds below 2**32.
    """
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])


def global_rank() -> int:
    """This process's global DDP rank as Lightning knows it (0 outside distributed runs).

    Lightning reads it from the launcher's environment (``RANK``, ``LOCAL_RANK``,
    ``SLURM_PROCID``) when it is imported and updates it when the strategy sets up, so it is right
    both in the script before ``fit`` and in DataLoader workers.
    """
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed this worker's dataset and its global generators.

    Raises:
        TypeError: the worker's dataset has no ``reseed(seed)`` method.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:  # called outside a worker: nothing to reseed
        return
    seed = derive_seed(torch.initial_seed(), global_rank())
    # Third-party code that draws from the global generators (forked copies are identical).
    random.seed(seed)
    np.random.seed(seed)
    if not isinstance(info.dataset, Reseedable):
        raise TypeError(
            f"worker {worker_id}: dataset {type(info.dataset).__name__} has no reseed(seed) method"
        )
    info.dataset.reseed(seed)
