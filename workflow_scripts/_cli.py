"""Shared command-line plumbing for the workflow scripts: logging, errors and task arguments."""

from __future__ import annotations

import argparse
import logging
import sys

from fmcib_core.tasks import KINDS, Task, TaskError, custom_task, paper_task

__all__ = ["add_task_arguments", "log_problems", "setup_logging", "task_from_args"]


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
