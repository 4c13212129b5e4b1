"""fmcib_core: the library behind the fmcib-workflow Snakemake pipeline.

Layers, lowest first (a lower layer never imports a higher one):
``io`` -> ``data`` -> ``transforms`` -> ``models`` -> ``losses`` -> ``optim`` -> ``train``
-> ``eval``.
"""

from __future__ import annotations

from fmcib_core.data.patches import extract_patches

__version__ = "0.1.0"

__all__ = ["__version__", "extract_patches", "get_features"]


def __getattr__(name: str) -> object:
    # get_features pulls in the models and eval layers; load them on first use only.
    if name == "get_features":
        from fmcib_core.eval.features import get_features

        return get_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
