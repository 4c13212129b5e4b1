"""Packages whose public names are imported on first use (fmcib_core._lazy)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAZY_PACKAGES = ["fmcib_core", "fmcib_core.io", "fmcib_core.eval"]
# Workflow scripts that never build a backbone: their jobs must not pay for importing torch.
TORCH_FREE_SCRIPTS = ["linear_eval", "data_efficiency", "validate_table", "handcrafted_features"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_resolves_and_is_listed(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        getattr(module, name)
    assert set(module.__all__) <= set(dir(module))
    assert "__name__" in dir(module)  # the package's own attributes are listed too


def test_a_lazy_name_is_the_object_of_its_module() -> None:
    import fmcib_core.eval.features
    import fmcib_core.io.weights
    from fmcib_core.eval import get_features
    from fmcib_core.io import load_weights

    assert get_features is fmcib_core.eval.features.get_features
    assert load_weights is fmcib_core.io.weights.load_weights


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018
    assert not hasattr(module, "no_such_name")


@pytest.mark.parametrize("script", TORCH_FREE_SCRIPTS)
def test_scripts_without_a_backbone_do_not_import_torch(script: str) -> None:
    path = ROOT / "workflow_scripts" / f"{script}.py"
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(path)!r}, '--help']\n"
        f"sys.path.insert(0, {str(path.parent)!r})  # as python SCRIPT does\n"
        "try:\n"
        f"    runpy.run_path({str(path)!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code in (0, None), stop.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'monai' not in sys.modules, 'monai was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
