"""In-process tests of the workflow scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow_scripts"


def import_script(name: str) -> ModuleType:
    """Import ``workflow_scripts/<name>.py`` afresh as a module.

    The scripts folder is on ``sys.path`` only while the module runs its imports (scripts import
    their sibling ``_cli``, which stays in ``sys.modules`` afterwards).
    """
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module
