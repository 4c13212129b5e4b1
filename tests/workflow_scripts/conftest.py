"""Loading a workflow script as a module for in-process tests of its ``main``."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow_scripts"


@pytest.fixture
def load_script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Factory: ``load_script("validate_table")`` imports that script afresh.

    The scripts folder is put on ``sys.path`` (scripts import their sibling ``_cli``) for the test
    only, and the root logger's handlers and level, which ``main`` sets up, are restored after it.
    """
    monkeypatch.syspath_prepend(str(SCRIPTS))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    root.handlers[:] = handlers
    root.setLevel(level)
