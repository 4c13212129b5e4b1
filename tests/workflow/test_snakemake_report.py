"""Snakemake's own report: ``snakemake --report report.zip`` holds the figures with captions.

The captions (``rules/report/*.rst``, Jinja templates of reStructuredText) are rendered here as
Snakemake renders them, for the demo, the paper's and a custom-task config. Then the tiny real
run that test_run.py checks (the session's ``run_dir``, tests/workflow/conftest.py) is followed by
``snakemake --report report.zip``, and the zip is opened: the comparison table, the ROC figures
and the SSL curves with their captions.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment

from tests.workflow.test_run import _snakemake

# The session's tiny run counts against the first test that uses it (when run alone): > 600 s.
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ROOT / "rules" / "report"
RUN_TIMEOUT_S = 1500
TASKS = ("task1", "task2", "task3")


def _config(name: str, **changes: object) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text()) | changes


def _render(caption: str, config: dict, **wildcards: str) -> str:
    """The caption as HTML, rendered the way snakemake.report renders it."""
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    snakemake = SimpleNamespace(config=config, wildcards=SimpleNamespace(**wildcards))
    text = env.from_string((CAPTIONS / caption).read_text()).render(snakemake=snakemake)
    body = publish_parts(text, writer_name="html", settings_overrides={"report_level": 1})
    assert "system-message" not in body["html_body"], body["html_body"]
    return body["html_body"]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # docutils writer_name
def test_captions_render_for_the_demo_the_paper_and_a_custom_task():
    demo = _config("config.yaml")
    page = _render("workflow.rst", demo)
    assert "embedded synthetic demo" in page and "resnet10_w025" in page
    assert "self-supervised pretraining: neg_mining_infonce loss" in page
    paper = _config("paper.yaml", pretrained_weights="/weights/model_weights.torch")
    page = _render("workflow.rst", paper)
    assert "synthetic demo" not in page and "resnet50x2" in page
    assert 'loaded from\n<tt class="docutils literal">/weights/model_weights.torch</tt>' in page
    assert "own tasks:\nnone" in page
    assert "one-vs-rest" in _render("roc.rst", demo, task="task1")
    assert "one-vs-rest" not in _render("roc.rst", demo, task="task2")
    custom = demo | {"custom_tasks": {"grade": {"label": "g", "kind": "multiclass"}}}
    assert "one-vs-rest" in _render("roc.rst", custom, task="grade")
    assert "ROC curves of grade" in _render("roc.rst", custom, task="grade")
    assert "1000 resamples" in _render("comparison.rst", demo)
    assert "temperature\n0.1" in _render("ssl.rst", paper)


@pytest.fixture(scope="module")
def report_run(run_dir: Path) -> Path:
    """The finished tiny run's checkout after ``snakemake --report report.zip``."""
    result = _snakemake(run_dir, "--report", "report.zip", timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_report_zip_holds_the_figures_with_their_captions(report_run: Path) -> None:
    with zipfile.ZipFile(report_run / "report.zip") as archive:
        names = archive.namelist()
        files = {Path(n).name: archive.read(n) for n in names if "/data/raw/" in n}
        page = archive.read("report/report.html").decode("utf-8")
    assert "report/report.html" in names
    assert sorted(files) == ["comparison.html", "ssl_curves.png", *(f"{t}.png" for t in TASKS)]
    results = report_run / "results" / "report"
    for task in TASKS:
        assert files[f"{task}.png"] == (results / "roc" / f"{task}.png").read_bytes()
        assert files[f"{task}.png"].startswith(b"\x89PNG")
    assert files["ssl_curves.png"] == (results / "ssl" / "ssl_curves.png").read_bytes()
    assert files["ssl_curves.png"].startswith(b"\x89PNG")
    table = files["comparison.html"].decode("utf-8")
    # One row per model of Task 2: linear (foundation, random-init control, handcrafted),
    # fine-tuned (random, supervised, foundation init).
    assert table.count("<tr><td>2 (malignancy)</td>") == 6
    for caption in (
        "Test-set results of every model, task by task",  # comparison.rst
        *(f"ROC curves of {t}" for t in TASKS),  # roc.rst, with the pattern's wildcard
        "Self-supervised pretraining</strong> of the foundation model",  # ssl.rst
        "Settings of this run",  # workflow.rst, the report: directive
        "embedded synthetic demo",
    ):
        assert caption in page, caption
    for label in ('"labels": {"task": "task2"}', '"labels": {"figure": "ssl_curves"}'):
        assert label in page
    assert "system-message" not in page


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_the_report_rule_writes_the_parts_beside_the_page(report_run: Path) -> None:
    results = report_run / "results" / "report"
    assert sorted(p.name for p in (results / "roc").glob("*.png")) == [f"{t}.png" for t in TASKS]
    page = (results / "report.html").read_text(encoding="utf-8")
    assert page.count("<tr><td>2 (malignancy)</td>") == 6  # 3 linear evaluations, 3 fine-tunings
    assert (results / "comparison.html").is_file()
