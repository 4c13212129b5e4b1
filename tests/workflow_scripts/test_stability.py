"""workflow_scripts/stability.py, run in-process through main([...]): one pass for every source."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fmcib_core.eval.features import extract_features, load_backbone
from fmcib_core.eval.handcrafted import DESCRIPTOR_NAMES, PATCH_SIZE, table_descriptors
from fmcib_core.eval.linear import save_linear_model
from fmcib_core.eval.stability import evaluate_source, perturb_seeds, stability_rows
from fmcib_core.io.tables import resolve_image_paths
from fmcib_core.io.weights import save_fmcib_weights
from fmcib_core.models.backbone import backbone_output_dim
from fmcib_core.tasks import TASKS
from tests.eval.test_features import count_loads
from tests.eval.test_stability import random_linear_model
from tests.train import write_lesion_table
from tests.workflow_scripts import import_script

BACKBONE = "resnet10_w025"
N_IMAGES = 2
COPIES = 2
BATCH = 5  # 8 lesions x 3 = 24 rows: the last batch is short


@pytest.fixture(scope="module")
def script():
    return import_script("stability")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """A test table of 8 lesions in 2 images (labels 0 and 1), weights and linear models."""
    folder = tmp_path_factory.mktemp("stability")
    table_path = write_lesion_table(folder, n_images=N_IMAGES, lesions_per_image=4)
    table = pd.read_csv(table_path).assign(malignancy=lambda t: np.arange(len(t)) % 2)
    table.to_csv(table_path, index=False)
    save_fmcib_weights(folder / "w.torch", load_backbone(BACKBONE, seed=5).state_dict())
    save_linear_model(folder / "bb.npz", random_linear_model(backbone_output_dim(BACKBONE)))
    save_linear_model(folder / "hc.npz", random_linear_model(len(DESCRIPTOR_NAMES)))
    return {"folder": folder, "table_path": table_path, "table": table}


def _argv(data: dict, patch_size: int, out) -> list[str]:
    folder = data["folder"]
    return [
        "--task", "2", "--table", str(data["table_path"]),
        "--source", "foundation", str(folder / "w.torch"), str(folder / "bb.npz"),
        "--source", "random-init", "random-init", str(folder / "bb.npz"),
        "--source", "handcrafted", "handcrafted", str(folder / "hc.npz"),
        "--copies", str(COPIES), "--sigma-mm", "3", "--distribution", "normal",
        "--backbone", BACKBONE, "--patch-size", str(patch_size), "--accelerator", "cpu",
        "--seed", "0", "--batch-size", str(BATCH), "--precision", "fp32", "--threads", "1",
        "--out", str(out),
    ]  # fmt: skip


def _separate_passes(data: dict, patch_size: int) -> dict:
    """The sources as evaluated before one pass served them all: a pass per source."""
    table = data["table"].assign(image_path=resolve_image_paths(data["table"], data["table_path"]))
    perturbed = perturb_seeds(table, n_copies=COPIES, sigma_mm=3.0, seed=0)
    rows = stability_rows(table, perturbed)
    options = {"patch_size": patch_size, "batch_size": BATCH}
    features = {
        "foundation": extract_features(
            load_backbone(BACKBONE, data["folder"] / "w.torch"), rows, **options
        ),
        "random-init": extract_features(load_backbone(BACKBONE, seed=0), rows, **options),
        "handcrafted": table_descriptors(rows),
    }
    width = {"handcrafted": len(DESCRIPTOR_NAMES)}
    return {
        name: evaluate_source(
            values,
            random_linear_model(width.get(name, backbone_output_dim(BACKBONE))),
            TASKS[2],
            table,
            perturbed,
        )
        for name, values in features.items()
    }


@pytest.mark.parametrize(
    ("patch_size", "passes"),
    [(PATCH_SIZE, 1), (24, 2)],  # the descriptor keeps its 50^3 patch: a pass of its own
    ids=["shared-patch", "own-descriptor-pass"],
)
def test_one_pass_serves_every_source_and_equals_separate_passes(
    script, data, tmp_path, monkeypatch, patch_size, passes
):
    loads = count_loads(monkeypatch)
    out = tmp_path / "stability.json"
    assert script.main(_argv(data, patch_size, out)) == 0
    images = {str(data["folder"] / f"case{i}.nii.gz") for i in range(N_IMAGES)}
    assert sorted(loads) == sorted(list(images) * passes)
    report = json.loads(out.read_text())
    assert list(report["sources"]) == ["foundation", "random-init", "handcrafted"]
    monkeypatch.undo()
    expected = json.loads(json.dumps(_separate_passes(data, patch_size)))
    assert report["sources"] == expected  # every float the same


def test_source_names_must_differ(script, data, tmp_path):
    argv = _argv(data, PATCH_SIZE, tmp_path / "s.json")
    argv[argv.index("random-init")] = "foundation"  # the second source's name
    with pytest.raises(SystemExit):
        script.main(argv)
    assert not (tmp_path / "s.json").exists()
