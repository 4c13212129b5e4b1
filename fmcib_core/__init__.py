"""fmcib_core: the library behind the fmcib-workflow Snakemake pipeline.

Layers, lowest first (a lower layer never imports a higher one): ``tasks`` -> ``io`` -> ``data``
-> ``prepare`` (public datasets and masks to lesion tables) -> ``transforms`` -> ``models`` ->
``losses`` -> ``optim`` -> ``metrics`` -> ``train`` -> ``eval`` -> ``report``, with the synthetic
demo generator ``demo`` beside them. The method is described in
docs/method.md.

Importing the package loads nothing heavy: :func:`extract_patches` and :func:`get_features` are
imported on first use, so that ``fmcib_core.tasks`` can be used without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmcib_core._lazy import lazy_attributes
from fmcib_core._version import __version__

if TYPE_CHECKING:
    from fmcib_core.data.patches import extract_patches
    from fmcib_core.eval.features import get_features

__all__ = ["__version__", "extract_patches", "get_features"]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "extract_patches": "fmcib_core.data.patches",
        "get_features": "fmcib_core.eval.features",
    },
)
