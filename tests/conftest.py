"""Suite-wide test settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import torch

from tests.workflow_scripts import import_script


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run each test's torch ops on one thread, restoring the count afterwards.

    The tests use tiny models and patches, which gain nothing from intra-op threads; on a busy
    two-core machine (CI, or DataLoader workers beside the main process) extra threads make them
    many times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def load_script() -> Iterator[Callable[[str], ModuleType]]:
    """Factory: ``load_script("validate_table")`` imports that workflow script afresh.

    The root logger's handlers and level, which a script's ``main`` sets up, are restored after
    the test.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield import_script
    root.handlers[:] = handlers
    root.setLevel(level)
