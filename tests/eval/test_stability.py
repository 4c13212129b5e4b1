"""Seed-point stability: perturbations, clamping, ICC(1,1) and the whole evaluation of a source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from fmcib_core.eval.features import extract_features, load_backbone
from fmcib_core.eval.linear import LinearModel
from fmcib_core.eval.stability import (
    evaluate_source,
    icc_1_1,
    perturb_seeds,
    stability_rows,
)
from fmcib_core.tasks import TASKS

SHAPE = (60, 60, 40)  # x, y, z voxels of 1.5 x 1.5 x 2 mm


def _volume(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 200, size=SHAPE[::-1]).astype(np.float32) - 400
    array[15:25, 20:40, 20:40] += 900  # a bright lesion
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    image.SetOrigin((-40.0, 10.0, 100.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("stability")
    rows = []
    for case in range(4):
        path = str(_volume(folder / f"ct{case}.nii.gz", case))
        for lesion in range(3):
            centre = (-40 + 1.5 * (25 + 3 * lesion), 10 + 1.5 * 30, 100 + 2.0 * 20)
            rows.append({"image_path": path, "coordX": centre[0], "coordY": centre[1],
                         "coordZ": centre[2], "malignancy": (case + lesion) % 2})  # fmt: skip
    return pd.DataFrame(rows)


def test_perturbations_are_reproducible_and_have_the_configured_sd(table) -> None:
    one = perturb_seeds(table, n_copies=200, sigma_mm=3.0, seed=7)
    again = perturb_seeds(table, n_copies=200, sigma_mm=3.0, seed=7)
    other = perturb_seeds(table, n_copies=200, sigma_mm=3.0, seed=8)
    pd.testing.assert_frame_equal(one.table, again.table)
    assert not one.table.equals(other.table)
    assert one.n_clamped == 0 and len(one.table) == 200 * len(table)
    coords = ["coordX", "coordY", "coordZ"]
    offsets = one.table[coords].to_numpy() - np.tile(table[coords].to_numpy(), (200, 1))
    assert offsets.std(axis=0, ddof=1) == pytest.approx([3.0] * 3, rel=0.05)
    assert np.abs(offsets.mean(axis=0)).max() < 4 * 3.0 / np.sqrt(len(offsets))  # 4 standard errors
    uniform = perturb_seeds(table, n_copies=200, sigma_mm=3.0, distribution="uniform", seed=7)
    spread = uniform.table[coords].to_numpy() - np.tile(table[coords].to_numpy(), (200, 1))
    assert spread.std(axis=0, ddof=1) == pytest.approx([3.0] * 3, rel=0.05)
    assert np.abs(spread).max() <= 3.0 * np.sqrt(3) + 1e-9


def test_seeds_outside_the_scan_are_clamped_and_counted(table) -> None:
    far = perturb_seeds(table, n_copies=20, sigma_mm=60.0, seed=1)
    assert far.n_clamped > 0
    low = np.array([-40.0 - 0.75, 10.0 - 0.75, 100.0 - 1.0])
    high = low + np.array(SHAPE) * np.array([1.5, 1.5, 2.0])
    coords = far.table[["coordX", "coordY", "coordZ"]].to_numpy()
    assert (coords >= low - 1e-9).all() and (coords <= high + 1e-9).all()
    with pytest.raises(ValueError, match="n_copies >= 1"):
        perturb_seeds(table, n_copies=0, sigma_mm=1.0)


def test_icc_against_a_hand_computed_case() -> None:
    # subjects [1, 2], [3, 4], [5, 7]: MSB = 10.1667, MSW = 1, ICC = 9.1667 / 11.1667
    values = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])[:, :, None]
    assert icc_1_1(values)[0] == pytest.approx(9.1666667 / 11.1666667, rel=1e-6)
    same = np.repeat(np.arange(5.0)[:, None, None], 3, axis=1)
    assert icc_1_1(same)[0] == pytest.approx(1.0)
    assert np.isnan(icc_1_1(np.ones((4, 3, 1)))[0])


def random_linear_model(width: int) -> LinearModel:
    rng = np.random.default_rng(0)
    return LinearModel(rng.normal(size=(1, width)), np.zeros(1), np.array([0, 1]),
                       np.zeros(width), np.ones(width), 1.0)  # fmt: skip


def test_sigma_zero_gives_the_unperturbed_metric_in_every_copy(table) -> None:
    backbone = load_backbone("resnet10_w025", None, seed=0)

    def evaluate(perturbed):
        rows = stability_rows(table, perturbed)
        features = extract_features(backbone, rows, patch_size=16, batch_size=8)
        return evaluate_source(features, random_linear_model(128), TASKS[2], table, perturbed)

    perturbed = perturb_seeds(table, n_copies=3, sigma_mm=0.0, seed=0)
    result = evaluate(perturbed)
    for metric in ("roc_auc", "average_precision"):
        entry = result["metrics"][metric]
        assert entry["values"] == [entry["unperturbed"]] * 3
        assert entry["perturbed"]["sd"] == 0.0
    assert result["icc"]["share"]["above_0.9"] == 1.0  # identical copies agree perfectly
    moved = evaluate(perturb_seeds(table, n_copies=3, sigma_mm=4.0, seed=0))
    assert moved["metrics"]["roc_auc"]["unperturbed"] == result["metrics"]["roc_auc"]["unperturbed"]
    assert moved["icc"]["share"]["above_0.9"] < 1.0


def test_stability_rows_are_the_table_then_each_copy(table) -> None:
    perturbed = perturb_seeds(table, n_copies=2, sigma_mm=1.0, seed=3)
    rows = stability_rows(table, perturbed)
    assert list(rows.columns) == list(table.columns) and len(rows) == 3 * len(table)
    pd.testing.assert_frame_equal(rows.iloc[: len(table)], table)
    second = perturbed.table[perturbed.table.perturbation == 1].drop(columns="perturbation")
    np.testing.assert_array_equal(rows.iloc[2 * len(table) :].to_numpy(), second.to_numpy())


def test_features_of_other_rows_are_refused(table) -> None:
    perturbed = perturb_seeds(table, n_copies=2, sigma_mm=1.0, seed=3)
    with pytest.raises(ValueError, match=r"need \(36, F\) features .* 2 copies; got shape"):
        evaluate_source(np.zeros((24, 4)), random_linear_model(4), TASKS[2], table, perturbed)
