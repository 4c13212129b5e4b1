"""Snakemake's own report: ``snakemake --report report.zip`` holds the figures with captions.

The captions (``rules/report/*.rst``, Jinja templates of reStructuredText) are rendered here as
Snakemake renders them, for the demo, the paper's and a custom-task config. Then a tiny real run,
limited to Task 2 and the random initialisation (about 3-4 minutes on 2 cores, instead of the
whole DAG of test_run.py), is followed by ``snakemake --report report.zip``, and the zip is
opened: the comparison table, the ROC figure and the SSL curves with their captions.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment

from tests.workflow.test_run import _copy_checkout, _snakemake

# Its module-scoped tiny run counts against the first test that uses it: more than 600 s.
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ROOT / "rules" / "report"
# Merged over the tiny run's configs: one task, one fine-tuning.
ONE_TASK = {"tasks": [2], "finetune": {"inits": ["random"]}}
RUN_TIMEOUT_S = 1500


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
def report_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout copy after a tiny run of Task 2 and ``snakemake --report report.zip``."""
    workdir = _copy_checkout(tmp_path_factory.mktemp("report_run") / "fmcib-workflow")
    (workdir / "one_task.yaml").write_text(json.dumps(ONE_TASK))
    configs = ("one_task.yaml",)
    result = _snakemake(workdir, "all", configs=configs, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-6000:]
    result = _snakemake(workdir, "--report", "report.zip", configs=configs, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_report_zip_holds_the_figures_with_their_captions(report_run: Path) -> None:
    with zipfile.ZipFile(report_run / "report.zip") as archive:
        names = archive.namelist()
        files = {Path(n).name: archive.read(n) for n in names if "/data/raw/" in n}
        page = archive.read("report/report.html").decode("utf-8")
    assert "report/report.html" in names
    assert sorted(files) == ["comparison.html", "ssl_curves.png", "task2.png"]
    results = report_run / "results" / "report"
    assert files["task2.png"] == (results / "roc" / "task2.png").read_bytes()
    assert files["ssl_curves.png"] == (results / "ssl" / "ssl_curves.png").read_bytes()
    assert files["task2.png"].startswith(b"\x89PNG") and files["ssl_curves.png"][:4] == b"\x89PNG"
    table = files["comparison.html"].decode("utf-8")
    # One row per model of Task 2: linear (foundation, random-init control), fine-tuned random.
    assert table.count("<tr><td>2 (malignancy)</td>") == 4
    for caption in (
        "Test-set results of every model, task by task",  # comparison.rst
        "ROC curves of task2",  # roc.rst, with the pattern's wildcard
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
    assert sorted(p.name for p in (results / "roc").glob("*.png")) == ["task2.png"]
    page = (results / "report.html").read_text(encoding="utf-8")
    assert page.count("<tr><td>2 (malignancy)</td>") == 4  # 3 linear evaluations, 1 fine-tuning
    assert (results / "comparison.html").is_file()
