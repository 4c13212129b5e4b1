"""report layer of fmcib_core: the workflow's self-contained HTML report.

:mod:`~fmcib_core.report.load` reads and checks the inputs (result files and their predictions,
the SSL log, data-efficiency results, preview patches), :mod:`~fmcib_core.report.figures` draws
the ROC curves, data-efficiency curves, SSL curves and patch previews, and
:mod:`~fmcib_core.report.html` assembles the page. Results of the paper's tasks (docs/method.md
section 7) and of custom tasks are shown alike.
"""

from __future__ import annotations

from fmcib_core.report.figures import (
    CT_WINDOW,
    RocCurve,
    data_efficiency_figure,
    patch_figure,
    roc_curve_of,
    roc_figure,
    ssl_figure,
)
from fmcib_core.report.html import build_report, format_metric, render_report
from fmcib_core.report.load import (
    DataEfficiency,
    Evaluation,
    ReportError,
    load_data_efficiency,
    load_evaluation,
    load_ssl_log,
    preview_patches,
)

__all__ = [
    "CT_WINDOW",
    "DataEfficiency",
    "Evaluation",
    "ReportError",
    "RocCurve",
    "build_report",
    "data_efficiency_figure",
    "format_metric",
    "load_data_efficiency",
    "load_evaluation",
    "load_ssl_log",
    "patch_figure",
    "preview_patches",
    "render_report",
    "roc_curve_of",
    "roc_figure",
    "ssl_figure",
]
