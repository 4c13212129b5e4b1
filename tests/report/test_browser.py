"""The HTML report in a real browser: headless Chromium renders the page that build_report makes.

Chromium (Debian's ``chromium`` package) is installed with apt-get when it is missing, as the
SLURM test installs its packages; the test is skipped, saying why, where that cannot be done.
No Python dependency is added: Chromium's own command line renders the page (``--dump-dom``
for what a probe script found, ``--screenshot`` for a picture, ``--enable-logging=stderr`` for
console messages). The screenshot is kept under the test's tmp folder and copied into
``$FMCIB_TEST_ARTEFACTS`` when that is set.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

from fmcib_core.report import build_report
from fmcib_core.tasks import TASKS

pytestmark = pytest.mark.slow

PACKAGES = ["chromium"]
BROWSER_TIMEOUT_S = 120
WIDTH = 1280
# Runs first in <head>: records uncaught errors, failed resources and console errors/warnings.
PROBE_HEAD = """<script>
window.__problems = [];
window.addEventListener("error", (e) => window.__problems.push(e.message ||
  "failed to load " + String((e.target && (e.target.src || e.target.href)) || "?").slice(-80)),
  true);
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { window.__problems.push(level + ": " + args.join(" "));
                                  original.apply(console, args); };
}
</script>"""
# Runs at the load event: writes what it measured into the DOM, which --dump-dom prints.
PROBE_BODY = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map((img) => {
    const box = img.getBoundingClientRect();
    return {alt: img.alt, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            shown: [box.width, box.height]};
  });
  const rows = [...document.querySelectorAll("table tbody tr")].map(
    (tr) => [...tr.cells].slice(0, 2).map((td) => td.textContent));
  const probe = document.createElement("pre");
  probe.id = "fmcib-probe";
  probe.textContent = JSON.stringify({images, rows, problems: window.__problems,
                                      height: document.documentElement.scrollHeight});
  document.body.appendChild(probe);
});
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def ensure_chromium() -> tuple[str | None, str | None]:
    """Chromium's path, installing it with apt-get if needed; else None and the reason."""
    if _chromium():
        return _chromium(), None
    if os.geteuid() != 0:
        return None, f"Chromium is not installed and installing {' '.join(PACKAGES)} needs root"
    if shutil.which("apt-get") is None:
        return None, "Chromium is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        try:
            result = subprocess.run(
                cmd, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=600
            )
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(cmd)}` took more than 600 s"
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            return None, f"`{' '.join(cmd)}` failed with status {result.returncode}:\n{tail}"
    if not _chromium():
        return None, f"installed {' '.join(PACKAGES)} but there is still no chromium command"
    return _chromium(), None


@pytest.fixture(scope="module")
def chromium() -> str:
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(f"cannot run headless Chromium: {reason}")
    return path


def _browse(chromium: str, page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` (a file) with ``flags``; console messages go to stderr."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += ["--no-first-run", "--disable-extensions", f"--user-data-dir={profile}"]
    cmd += ["--enable-logging=stderr", "--v=0", *flags, page.as_uri()]
    result = subprocess.run(
        cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=BROWSER_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _console_messages(stderr: str) -> list[str]:
    """The page's console messages (and uncaught errors) that Chromium logged."""
    return re.findall(r":CONSOLE[^\]]*\] (.*)", stderr)


def _predictions(task: int, seed: int, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = TASKS[task].label_column
    if TASKS[task].multiclass:
        y = np.arange(n) % 4
        logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[y]
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return pd.DataFrame({label: y} | {f"prob_{k}": proba[:, k] for k in range(4)})
    y = np.arange(n) % 2
    return pd.DataFrame({label: y, "prob": np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)})


def _metric(value: float) -> dict[str, float]:
    return {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.05, "n_rows": 40}


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    """A report of Tasks 1 and 2 (linear, control, three fine-tunes), SSL log and previews.

    Returns the page and the (task cell, model cell) each comparison-table row must show.
    """
    base = tmp_path_factory.mktemp("browser_report")
    linear, finetune, expected = [], [], []
    for task, metric in ((1, "mean_average_precision"), (2, "roc_auc")):
        label = TASKS[task].label_column
        folder = base / f"task{task}"
        folder.mkdir()
        for stem, source, name in (
            ("linear_eval", "foundation", "Linear, foundation-model features"),
            ("linear_eval_random-init", "random-init", "Linear, random-init features (control)"),
        ):
            body = {"task": task, "feature_source": source, "n_rows": {"test": 40}}
            body["test_metrics"] = {metric: _metric(0.7)}
            (folder / f"{stem}.json").write_text(json.dumps(body))
            _predictions(task, len(linear)).to_parquet(folder / f"{stem}_predictions.parquet")
            linear.append(folder / f"{stem}.json")
            expected.append((f"{task} ({label})", name))
        # Task 1 has no supervised init: that init is Task 1's own random-init backbone.
        for init in (
            ("random", "foundation") if task == 1 else ("random", "supervised", "foundation")
        ):
            run = folder / f"finetune_{init}"
            run.mkdir()
            body = {"task": task, "init": init, "best_epoch": 2}
            body["test_metrics"] = {metric: _metric(0.6)}
            (run / "metrics.json").write_text(json.dumps(body))
            _predictions(task, 10 + len(finetune)).to_parquet(run / "predictions.parquet")
            finetune.append(run / "metrics.json")
            expected.append((f"{task} ({label})", f"Fine-tuned, {init} init"))
    steps = np.arange(40)
    ssl = pd.DataFrame({"step": steps, "loss": 6.0 - 0.05 * steps, "lr": 0.075})
    ssl.loc[::10, "loss"] = np.nan
    ssl.to_csv(base / "ssl_log.csv", index=False)
    hu = np.full((30, 60, 60), -800, np.int16)
    hu[10:20, 25:35, 25:35] = 100
    image = sitk.GetImageFromArray(hu)
    sitk.WriteImage(image, str(base / "ct.nii.gz"))
    centre = image.TransformContinuousIndexToPhysicalPoint((30.0, 30.0, 15.0))
    lesions = pd.DataFrame([centre] * 3, columns=["coordX", "coordY", "coordZ"])
    lesions.insert(0, "image_path", "ct.nii.gz")
    lesions.assign(Coarse_lesion_type=[3, 5, 0]).to_csv(base / "lesions.csv", index=False)
    page = build_report(
        linear,
        finetune,
        ssl_log=base / "ssl_log.csv",
        preview_table=base / "lesions.csv",
        patch_size=16,
        config={"tasks": [1, 2], "note": "<script>alert(1)</script>"},
        created=datetime(2024, 5, 1, tzinfo=timezone.utc),
    )
    path = base / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, expected


def test_embedded_pngs_decode_completely(report_page):
    page = report_page[0].read_text(encoding="utf-8")
    found = re.findall(r'src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    # ROC Task 1, ROC Task 2, SSL curves, patch previews
    assert [html.unescape(alt) for _, alt in found] == [
        "ROC curves, task 1",
        "ROC curves, task 2",
        "SSL loss and learning rate",
        "Patch previews",
    ]
    for data, alt in found:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as png:
            assert png.format == "PNG", alt
            png.load()  # decodes every row: a truncated PNG raises here
            assert png.width > 100 and png.height > 100, alt
            assert len(png.getcolors(maxcolors=1 << 16) or [0, 1]) > 1, f"{alt}: one colour"


def test_report_renders_in_chromium(chromium, report_page, tmp_path):
    page, expected_rows = report_page
    text = page.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(
        text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace(
            "</body>", PROBE_BODY + "</body>", 1
        ),
        encoding="utf-8",
    )
    dom = _browse(chromium, probed, tmp_path / "profile", "--dump-dom")
    match = re.search(r'<pre id="fmcib-probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the probe script did not run:\n" + dom.stderr[-3000:]
    probe = json.loads(html.unescape(match[1]))

    assert probe["problems"] == []
    assert _console_messages(dom.stderr) == []
    assert len(probe["images"]) == 4
    for image in probe["images"]:
        assert image["complete"], image
        assert min(image["natural"]) > 0 and min(image["shown"]) > 0, image
    assert probe["rows"] == [list(row) for row in expected_rows]  # one row per model, in order
    assert "<script>alert(1)</script>" not in dom.stdout.split('id="fmcib-probe"')[0]

    # The page as it is, without the probe: no console message at all, and a picture of it.
    shot = tmp_path / "report.png"
    height = min(max(int(probe["height"]), 600), 16000)
    plain = _browse(
        chromium,
        page,
        tmp_path / "profile",
        f"--window-size={WIDTH},{height}",
        f"--screenshot={shot}",
    )
    assert _console_messages(plain.stderr) == []
    with Image.open(shot) as picture:
        assert picture.size == (WIDTH, height)
        # Not blank: the figures and the table put many colours on the page.
        assert len(picture.convert("RGB").getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50
    artefacts = os.environ.get("FMCIB_TEST_ARTEFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artefacts) / "report_chromium.png")


def test_the_probe_sees_a_broken_page(chromium, tmp_path):
    """The checks above can fail: a truncated PNG, a missing file and a script error are seen."""
    png = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(png, format="PNG")
    data = base64.b64encode(png.getvalue()).decode("ascii")
    page = tmp_path / "broken.html"
    page.write_text(
        f"<!DOCTYPE html><html><head>{PROBE_HEAD}</head><body>"
        f'<img src="data:image/png;base64,{data}" alt="whole">'
        '<img src="missing.png" alt="missing">'
        "<script>console.error('seen'); notAFunction();</script>"
        f"{PROBE_BODY}</body></html>",
        encoding="utf-8",
    )
    dom = _browse(chromium, page, tmp_path / "profile", "--dump-dom")
    probe = json.loads(html.unescape(re.search(r'id="fmcib-probe">(.*?)</pre>', dom.stdout)[1]))
    assert [image["natural"] for image in probe["images"]] == [[40, 30], [0, 0]]
    assert "error: seen" in probe["problems"]
    assert any("notAFunction" in p for p in probe["problems"])
    assert any("missing.png" in p for p in probe["problems"])
    assert any("notAFunction" in m for m in _console_messages(dom.stderr))
