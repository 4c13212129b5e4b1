"""fmcib_core: the library behind the fmcib-workflow Snakemake pipeline.

Layers, lowest first (a lower layer never imports a higher one):
``io`` -> ``data`` -> ``transforms`` -> ``models`` -> ``losses`` -> ``optim`` -> ``train`` -> ``eval``.
"""

from __future__ import annotations

__version__ = "0.1.0"
