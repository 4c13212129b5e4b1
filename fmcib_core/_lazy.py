"""Package attributes imported on first use, so that importing a package stays cheap.

A package's ``__init__`` maps each public name to the submodule that defines it; the submodule
is imported when the name is first read (PEP 562 module ``__getattr__``). A workflow script
that needs only the linear evaluation then never imports torch and MONAI, which the backbone's
modules of the same package do (seconds per process, paid by every job of the workflow).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_attributes(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` on demand.

    Args:
        package: the package's ``__name__``.
        exports: public name -> absolute name of the module that defines it.

    Returns:
        The two functions to assign to the package's ``__getattr__`` and ``__dir__`` (which lists
        the package's own attributes and the lazy names).
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
