"""Architecture checks: fmcib_core's layers depend one way and the library stays workflow-free."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmcib_core"
LAYERS = ["io", "data", "transforms", "models", "losses", "optim", "train", "eval"]
FORBIDDEN = {"snakemake", "argparse", "requests", "urllib.request", "huggingface_hub"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_there_are_modules_to_check() -> None:
    layers_found = {p.relative_to(PACKAGE).parts[0] for p in _modules() if len(p.parts) > 1}
    assert {"io", "data"} <= layers_found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    parts = path.relative_to(PACKAGE).parts
    if len(parts) == 1:
        return  # the package root re-exports the public API
    own = LAYERS.index(parts[0])
    for name in _imports(path):
        if not name.startswith("fmcib_core."):
            continue
        layer = name.split(".")[1]
        if layer in LAYERS:
            assert LAYERS.index(layer) <= own, f"{path.name} ({parts[0]}) imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_never_imports_workflow_or_network_modules(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in FORBIDDEN and name not in FORBIDDEN, (
            f"{path.name} imports {name}"
        )


def test_a_violation_is_detected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from fmcib_core.eval import metrics\nimport snakemake\n")
    assert _imports(bad) == ["fmcib_core.eval", "snakemake"]
