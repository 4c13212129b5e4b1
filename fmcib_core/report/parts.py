"""The report page cut into the separate files that Snakemake's own report shows.

``snakemake --report report.zip`` lists every output that a rule marks with ``report()``, each
with its caption. The workflow marks the comparison table, one ROC figure per task and the SSL
curves. :func:`report_parts` cuts exactly those out of the page that
:func:`~fmcib_core.report.build_report` rendered, so that the separate files and the HTML report
cannot disagree: the PNGs are the page's own, byte for byte, and the table is the page's table.

A further figure (data efficiency, stability across seeds: no stage produces their inputs yet)
joins in three steps: the page draws it with an ``alt`` text, :data:`FIGURE_KINDS` maps that
text to a folder key, and ``rules/report.smk`` declares the folder as an output marked with
``report(directory(...), patterns=["{name}.png"], caption=...)`` and a caption in
``rules/report/``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fmcib_core.io.atomic import atomic_path
from fmcib_core.report.load import ReportError
from fmcib_core.tasks import TASKS

__all__ = ["FIGURE_KINDS", "SSL_FIGURE", "ReportParts", "report_parts", "write_report_parts"]

# The alt text (or its prefix, which the task follows) of the page's figures, by folder key.
FIGURE_KINDS = {"roc": "ROC curves, task ", "ssl": "SSL loss and learning rate"}
SSL_FIGURE = "ssl_curves.png"
_FIGURE = re.compile(
    r'<figure><img src="data:image/png;base64,(?P<data>[A-Za-z0-9+/=]*)" alt="(?P<alt>[^"]*)">'
    r"<figcaption>(?P<caption>.*?)</figcaption></figure>",
    re.S,
)
_SECTION = re.compile(r"<section><h2>(?P<title>.*?)</h2>(?P<body>.*?)</section>", re.S)
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@dataclass(frozen=True)
class ReportParts:
    """The parts of a report page, ready to be written as files.

    Attributes:
        comparison: a self-contained HTML page with the comparison table and its note.
        roc: file name (``task2.png``, ``<custom task>.png``) -> PNG, one per task with curves.
        ssl: ``{"ssl_curves.png": PNG}``, or empty when no SSL log was given.
        ssl_note: the page's sentence on why there are no SSL curves ("" when there are).
    """

    comparison: str
    roc: dict[str, bytes] = field(default_factory=dict)
    ssl: dict[str, bytes] = field(default_factory=dict)
    ssl_note: str = ""


def _task_file(task: str) -> str:
    """``"2"`` -> ``task2.png``; a custom task's name (it starts with a letter) stays as it is."""
    return f"{TASKS[int(task)].key if task.isdigit() else task}.png"


def report_parts(page: str) -> ReportParts:
    """Cut the comparison table, the ROC figures and the SSL figure out of a report page.

    Raises:
        ReportError: the page lacks the results section, or a figure is not valid base64.
    """
    sections = {m["title"]: m["body"] for m in _SECTION.finditer(page)}
    if "Results" not in sections:
        raise ReportError("the report page has no 'Results' section to take the table from")
    style = _STYLE.search(page)
    comparison = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>FMCIB workflow: test-set results</title>"
        f"<style>{style[1] if style else ''}</style></head><body>"
        f"<h1>Test-set results</h1>{sections['Results']}</body></html>\n"
    )
    roc, ssl = {}, {}
    for match in _FIGURE.finditer(page):
        alt = html.unescape(match["alt"])
        try:
            png = base64.b64decode(match["data"], validate=True)
        except binascii.Error as err:
            raise ReportError(f"the report's figure {alt!r} is not valid base64 ({err})") from err
        if alt.startswith(FIGURE_KINDS["roc"]):
            roc[_task_file(alt.removeprefix(FIGURE_KINDS["roc"]))] = png
        elif alt == FIGURE_KINDS["ssl"]:
            ssl[SSL_FIGURE] = png
    note = re.search(r'<p class="note">(.*?)</p>', sections.get("Self-supervised pretraining", ""))
    ssl_note = html.unescape(note[1]) if note and not ssl else ""
    return ReportParts(comparison, roc, ssl, ssl_note)


def _write_folder(path: Path, files: dict[str, bytes], note: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # a folder cannot be renamed onto a non-empty one
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if not files and note:
            (tmp / "README.txt").write_text(note + "\n", encoding="utf-8")


def write_report_parts(
    parts: ReportParts,
    *,
    comparison: str | Path | None = None,
    roc_dir: str | Path | None = None,
    ssl_dir: str | Path | None = None,
) -> list[Path]:
    """Write the parts that are given a path; return the paths written.

    ``roc_dir`` gets one PNG per task; ``ssl_dir`` gets ``ssl_curves.png``, or, without an SSL
    log, only a ``README.txt`` saying why. A folder is replaced as a whole.

    Raises:
        OSError: a path cannot be written (see :func:`fmcib_core.io.atomic.atomic_path`).
    """
    written = []
    if comparison is not None:
        with atomic_path(comparison) as tmp:
            tmp.write_text(parts.comparison, encoding="utf-8")
        written.append(Path(comparison))
    if roc_dir is not None:
        note = "" if parts.roc else "No ROC curves: no test predictions with both classes."
        _write_folder(Path(roc_dir), parts.roc, note)
        written.append(Path(roc_dir))
    if ssl_dir is not None:
        _write_folder(Path(ssl_dir), parts.ssl, parts.ssl_note)
        written.append(Path(ssl_dir))
    return written
