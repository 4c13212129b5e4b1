"""Shared command-line plumbing for the workflow scripts: logging, errors, task arguments and
torch's threads."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from fmcib_core.tasks import KINDS, Task, TaskError, custom_task, paper_task

__all__ = [
    "add_task_arguments",
    "log_problems",
    "set_torch_threads",
    "setup_logging",
    "shard_arg",
    "task_from_args",
    "torch_threads",
]

log = logging.getLogger(__name__)


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr with timestamps; ``verbose`` lowers the level to DEBUG."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def log_problems(log: logging.Logger, err: BaseException) -> None:
    """Log an error's message at ERROR level, one line per problem it lists."""
    for line in str(err).splitlines():
        log.error("%s", line)


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task`` (a paper task: 1, 2 or 3), or a custom task: ``--label COLUMN`` and its kind."""
    group = parser.add_argument_group("task", "a paper task (--task N), or a custom task (--label)")
    add = group.add_argument
    add("--task", help="1, 2 or 3 (the paper's tasks), or the name of a --label task")
    add("--label", help="custom task: the label column (0/1, or classes 0..K-1)")
    add("--kind", choices=KINDS, default="binary", help="custom task: kind of label")
    add("--n-classes", type=int, help="custom multiclass task: number of classes")
    add("--hidden", type=int, nargs="+", default=[2048], help="custom task: head hidden sizes")
    add("--display", help="custom task: name in reports (default: the label column)")


def task_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Task:
    """The task the arguments name; a bad combination exits through ``parser.error``."""
    try:
        if args.label is None:
            if args.task is None:
                parser.error("give --task 1|2|3, or --label COLUMN for a task of your own")
            return paper_task(args.task)
        return custom_task(
            args.task or args.label,
            args.label,
            args.kind,
            n_classes=args.n_classes,
            hidden=tuple(args.hidden),
            display=args.display,
        )
    except TaskError as err:
        parser.error(str(err))


def shard_arg(text: str) -> tuple[int, int]:
    """``I-of-K`` (Snakemake's ``scatteritem``) -> ``(I, K)``, 1 <= I <= K; an argparse type."""
    match = re.fullmatch(r"(\d+)-of-(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise argparse.ArgumentTypeError(f"{text!r}: expected I-of-K with 1 <= I <= K, e.g. 2-of-4")
    return int(match[1]), int(match[2])


def torch_threads(threads: int, workers: int = 0, processes: int = 1) -> int:
    """Torch threads of each of a job's ``processes`` (DDP ranks): the job's ``threads`` CPUs
    less every process's ``workers`` DataLoader worker processes, shared out, at least 1.

    The rules count the workers inside the job's CPUs (``threads: workers x devices + 1``), so
    the main processes must not take those cores as well.
    """
    return max(1, (threads - workers * processes) // processes)


def set_torch_threads(
    threads: int, *, workers: int = 0, processes: int = 1, ddp: bool | None = None
) -> int:
    """Fix this process's torch intra-op and inter-op threads to :func:`torch_threads`.

    Called first thing by every script that runs torch, with the rule's ``threads``, so that a
    job never uses every core of a shared node (or inherits ``OMP_NUM_THREADS``), and float sums
    follow the job's settings only. Torch fixes its inter-op threads once per process, before
    any inter-op work: a second call with another count keeps the first and says so. In a DDP
    rank (``ddp``; default: with several processes, which Lightning's launcher starts) it also
    sets ``OMP_NUM_THREADS``: the ranks Lightning starts inherit it (without it the launcher
    would replace the count by the node's CPUs per process), and torch reads it again during
    training, so a rank that srun started must set it as well to compute what Lightning's ranks
    do (measured: without it 2 srun ranks' loss differed from theirs in the 7th digit at
    step 2, with it the weights are bitwise theirs).

    Returns:
        The threads set.
    """
    import torch  # here: most scripts of this package never import torch

    n = torch_threads(threads, workers, processes)
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # set earlier in this process, or inter-op work has started
            log.warning(
                "torch inter-op threads stay %d (torch sets them once per process); "
                "intra-op threads %d",
                torch.get_num_interop_threads(),
                n,
            )
    if processes > 1 if ddp is None else ddp:
        os.environ["OMP_NUM_THREADS"] = str(n)
    log.info("torch threads: %d intra-op, %d inter-op", n, torch.get_num_interop_threads())
    return n
