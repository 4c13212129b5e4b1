"""Loading a workflow script as a module for in-process tests of its ``main``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.workflow_scripts import import_script


@pytest.fixture
def load_script() -> Iterator[Callable[[str], ModuleType]]:
    """Factory: ``load_script("validate_table")`` imports that script afresh.

    The root logger's handlers and level, which ``main`` sets up, are restored after the test.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield import_script
    root.handlers[:] = handlers
    root.setLevel(level)
