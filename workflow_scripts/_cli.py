"""Shared command-line plumbing for the workflow scripts.

Importing this module also puts the checkout's root on ``sys.path``, so that the scripts import
this checkout's ``fmcib_core`` in any environment a rule runs in (a venv with the package
installed, or a conda env made from envs/fmcib.yaml that holds only the dependencies).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["log_problems", "setup_logging"]

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


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
