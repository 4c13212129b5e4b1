"""Architecture checks: fmcib_core's layers depend one way and the library stays workflow-free.

Every import form counts: ``import fmcib_core.x``, ``from fmcib_core.x import y``,
``from fmcib_core import x``, relative imports (``from ..x import y``), imports inside functions
and ``importlib.import_module("fmcib_core.x")`` with a literal name. The package root
(``fmcib_core/__init__.py``) is the public facade above every layer: it may import any layer, and
no module inside the package may import it.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmcib_core"
# Lowest first: a module may import its own layer and the layers before it.
LAYERS = [
    "_lazy",
    "_version",
    "tasks",
    "io",
    "data",
    "prepare",
    "transforms",
    "models",
    "losses",
    "optim",
    "metrics",
    "train",
    "eval",
    "report",
    "demo",
]
ROOT_LAYER = len(LAYERS)  # the package root: above everything
FORBIDDEN = {"snakemake", "argparse", "requests", "urllib.request", "huggingface_hub"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """Dotted name of a module file: ``fmcib_core/io/tables.py`` -> ``fmcib_core.io.tables``."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names of every module ``source`` (the code of ``module``) imports.

    ``from a import b`` yields ``a.b`` (b may be a module or a name in ``a``; a layer check
    treats it as ``a`` when ``a.b`` is no layer).
    """
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names += [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def layer_of(name: str) -> int | None:
    """Layer index of an absolute module name; ROOT_LAYER for the package root; None outside."""
    parts = name.split(".")
    if parts[0] != "fmcib_core":
        return None
    if len(parts) == 1 or parts[1] not in LAYERS:
        return ROOT_LAYER  # ``fmcib_core`` itself, or a name imported from it
    return LAYERS.index(parts[1])


def violations(path: Path, package: Path = PACKAGE) -> list[str]:
    """Every import of ``path`` that reaches a higher layer (or the root) or a forbidden module."""
    module = module_name(path, package)
    own = layer_of(module)
    source = path.read_text(encoding="utf-8")
    found = []
    for name in imported_modules(source, module, path.name == "__init__.py"):
        top = name.split(".")[0]
        if (
            top in FORBIDDEN
            or name in FORBIDDEN
            or any(name.startswith(f + ".") for f in FORBIDDEN)
        ):
            found.append(f"{module} imports {name} (the library stays workflow- and network-free)")
        layer = layer_of(name)
        if layer is not None and own is not None and layer > own:
            found.append(f"{module} ({LAYERS[own] if own < ROOT_LAYER else 'root'}) imports {name}")
    return found


def _modules(package: Path = PACKAGE) -> list[Path]:
    return sorted(package.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    for path in _modules():
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        assert parts == ("__init__",) or parts[0] in LAYERS, f"{path} is in no layer"
    found = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in _modules()}
    assert set(LAYERS) <= found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_never_import_higher_ones(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("import fmcib_core\n", "fmcib_core.io.tables", False, ["fmcib_core"]),
        ("from fmcib_core import tasks\n", "fmcib_core.io.tables", False, ["fmcib_core.tasks"]),
        ("from . import atomic\n", "fmcib_core.io.tables", False, ["fmcib_core.io.atomic"]),
        ("from .. import eval\n", "fmcib_core.io.tables", False, ["fmcib_core.eval"]),
        ("from ..eval.linear import x\n", "fmcib_core.io.t", False, ["fmcib_core.eval.linear.x"]),
        ("from .fit import y\n", "fmcib_core.eval.linear", True, ["fmcib_core.eval.linear.fit.y"]),
        ("def f():\n    import fmcib_core.train\n", "fmcib_core.io.x", False, ["fmcib_core.train"]),
        (
            "importlib.import_module('fmcib_core.report')\n",
            "fmcib_core.io.x",
            False,
            ["fmcib_core.report"],
        ),
    ],
)
def test_every_import_form_is_seen(source, module, is_package, expected) -> None:
    assert imported_modules(source, module, is_package) == expected


@pytest.mark.parametrize(
    "planted",
    [
        "import fmcib_core\n",
        "from fmcib_core import get_features\n",
        "from .. import train\n",
        "from ..eval import linear\n",
        "import fmcib_core.report.html\n",
        "def late():\n    from fmcib_core.metrics import roc_auc\n",
        "import snakemake\n",
    ],
)
def test_a_planted_violation_fails_the_check(tmp_path: Path, planted: str) -> None:
    copy = tmp_path / "fmcib_core"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert [v for p in _modules(copy) for v in violations(p, copy)] == []
    bad = copy / "io" / "_planted.py"
    bad.write_text(planted, encoding="utf-8")
    found = [v for p in _modules(copy) for v in violations(p, copy)]
    assert found and all(v.startswith("fmcib_core.io._planted ") for v in found), found


def test_the_root_may_import_any_layer_but_nothing_forbidden() -> None:
    assert violations(PACKAGE / "__init__.py") == []
    assert (
        layer_of("fmcib_core") == ROOT_LAYER and layer_of("fmcib_core.get_features") == ROOT_LAYER
    )
