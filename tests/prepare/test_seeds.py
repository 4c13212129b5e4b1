"""Seeds from masks: label maps, DICOM-SEG and RTSTRUCT, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from tests.prepare import fixtures
from tests.prepare.checks import (
    assert_seeds_in_lesions,
    rasterised_independently,
    world_centroid,
    write_label_map,
)
from tests.prepare.conftest import CENTRE, ORIGIN, RADIUS, SPACING


@pytest.fixture
def main(load_script):
    return load_script("seeds_from_masks").main


def _table(tmp_path: Path, mask_paths: list[str], **extra) -> Path:
    table = pd.DataFrame({"image_path": "ct", "mask_path": mask_paths, **extra})
    path = tmp_path / "masks.csv"
    table.to_csv(path, index=False)
    return path


def _nothing_written(out: Path) -> bool:
    return not out.exists() and not out.with_name("seeds.summary.json").exists()


def _far_blocks(shape_zyx) -> np.ndarray:
    """Two separate 2x2x2 blocks (one label, two components) away from the lesion."""
    mask = np.zeros(shape_zyx, dtype=bool)
    mask[2:4, 2:4, 2:4] = True
    mask[15:17, 30:32, 34:36] = True
    return mask


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_label_map_one_seed_per_label(tmp_path, ct, lesion_mask, main, suffix):
    labels = lesion_mask * 1 + _far_blocks(lesion_mask.shape) * 2
    write_label_map(tmp_path / f"labels{suffix}", labels, ct.image())
    out = tmp_path / "out" / "seeds.csv"
    assert (
        main([str(_table(tmp_path, [f"labels{suffix}"], patient=["P1"])), "--out", str(out)]) == 0
    )
    table = pd.read_csv(out)
    assert table["mask_label"].tolist() == [1, 2] and table["patient"].tolist() == ["P1", "P1"]
    for label, row in zip((1, 2), table.itertuples(), strict=True):
        expected = world_centroid(labels == label, ORIGIN, SPACING)
        assert np.abs([row.coordX, row.coordY, row.coordZ] - expected).max() < 1e-3
        assert row.mask_volume_mm3 == pytest.approx((labels == label).sum() * np.prod(SPACING))
    assert table["image_path"].tolist() == ["../ct"] * 2  # still valid from out/
    lesion = tmp_path / "out" / "lesion.csv"
    table.iloc[:1].to_csv(lesion, index=False)
    assert_seeds_in_lesions(lesion, fixtures.LESION_HU, fixtures.BACKGROUND_HU)
    summary = json.loads((tmp_path / "out" / "seeds.summary.json").read_text())
    assert summary["tables"] == {"seeds.csv": 2} and summary["n_skipped"] == 0


def test_components_give_one_seed_each(tmp_path, ct, lesion_mask, main):
    blocks = _far_blocks(lesion_mask.shape)
    write_label_map(tmp_path / "labels.nii.gz", lesion_mask * 1 + blocks * 2, ct.image())
    out = tmp_path / "seeds.csv"
    assert main([str(_table(tmp_path, ["labels.nii.gz"])), "--out", str(out), "--components"]) == 0
    table = pd.read_csv(out)
    assert table[["mask_label", "mask_component"]].values.tolist() == [[1, 1], [2, 1], [2, 2]]
    assert (table["mask_voxels"].tolist()) == [lesion_mask.sum(), 8, 8]


def test_empty_mask_is_skipped_and_counted(tmp_path, ct, lesion_mask, main):
    write_label_map(tmp_path / "a.nii.gz", lesion_mask, ct.image())
    write_label_map(tmp_path / "empty.nii.gz", np.zeros_like(lesion_mask), ct.image())
    out = tmp_path / "seeds.csv"
    assert main([str(_table(tmp_path, ["a.nii.gz", "empty.nii.gz"])), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 1
    skipped = json.loads((tmp_path / "seeds.summary.json").read_text())["skipped"]
    assert skipped["mask has no labelled voxel"]["count"] == 1


def test_rtstruct_seed_per_matching_roi(tmp_path, ct, main):
    gtv = fixtures.circle_contours(ct, CENTRE, RADIUS)
    other = fixtures.circle_contours(ct, (ORIGIN[0] + 6, ORIGIN[1] + 6, CENTRE[2]), 3.0)
    fixtures.write_rtstruct(tmp_path / "rt" / "rs.dcm", ct, {"Body": other, "GTV-1": gtv})
    out = tmp_path / "seeds.csv"
    assert main([str(_table(tmp_path, ["rt/rs.dcm"])), "--out", str(out), "--roi", "^gtv"]) == 0
    table = assert_seeds_in_lesions(out, fixtures.LESION_HU, fixtures.BACKGROUND_HU)
    assert table["roi_name"].tolist() == ["GTV-1"] and table["mask_label"].tolist() == [2]
    expected_mask = rasterised_independently(gtv, ct)
    expected = world_centroid(expected_mask, ORIGIN, SPACING)
    row = table.iloc[0]
    assert np.abs(row[["coordX", "coordY", "coordZ"]].to_numpy(float) - expected).max() < 1e-3
    assert row["mask_voxels"] == expected_mask.sum()
    assert np.linalg.norm(expected - np.asarray(CENTRE)) < 1.0
    assert main([str(_table(tmp_path, ["rt/rs.dcm"])), "--out", str(out)]) == 0
    assert pd.read_csv(out)["roi_name"].tolist() == ["Body", "GTV-1"]


def test_seg_seed_per_segment(tmp_path, ct, lesion_mask, main):
    blocks = _far_blocks(lesion_mask.shape)
    empty = np.zeros_like(lesion_mask)
    segments = {"tumour": lesion_mask, "blocks": blocks, "empty": empty}
    fixtures.write_seg(tmp_path / "seg.dcm", ct, segments)
    out = tmp_path / "seeds.csv"
    assert main([str(_table(tmp_path, ["seg.dcm"])), "--out", str(out), "--components"]) == 0
    skipped = json.loads((tmp_path / "seeds.summary.json").read_text())["skipped"]
    assert skipped["segment or ROI has no voxel"]["items"] == ["row 1: empty"]
    table = pd.read_csv(out)
    assert table[["mask_label", "roi_name", "mask_component"]].values.tolist() == [
        [1, "tumour", 1], [2, "blocks", 1], [2, "blocks", 2]
    ]  # fmt: skip
    expected = world_centroid(lesion_mask, ORIGIN, SPACING)
    assert (
        np.abs(table.iloc[0][["coordX", "coordY", "coordZ"]].to_numpy(float) - expected).max()
        < 1e-3
    )
    table.iloc[:1].to_csv(tmp_path / "lesion.csv", index=False)
    assert_seeds_in_lesions(tmp_path / "lesion.csv", fixtures.LESION_HU, fixtures.BACKGROUND_HU)


def test_mask_on_another_grid_is_an_error_unless_resampled(tmp_path, ct, lesion_mask, main, capsys):
    coarse = sitk.Image([20, 18, 10], sitk.sitkUInt8)
    coarse.SetSpacing((1.8, 1.6, 4.0))
    coarse.SetOrigin(ORIGIN)
    fine_labels = write_label_map(tmp_path / "fine.nii.gz", lesion_mask, ct.image())
    resampled = sitk.Resample(sitk.ReadImage(str(fine_labels)), coarse, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0)  # fmt: skip
    sitk.WriteImage(resampled, str(tmp_path / "coarse.nii.gz"))
    table, out = _table(tmp_path, ["coarse.nii.gz"]), tmp_path / "seeds.csv"
    assert main([str(table), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "voxel grid differs from its image's" in err and "--resample" in err
    assert _nothing_written(out)
    assert main([str(table), "--out", str(out), "--resample"]) == 0
    seed = pd.read_csv(out).iloc[0][["coordX", "coordY", "coordZ"]].to_numpy(float)
    assert np.linalg.norm(seed - np.asarray(CENTRE)) < 2.0  # within a coarse voxel


def _bad_inputs(tmp_path, ct, lesion_mask):
    uids = {"study_uid": ct.study_uid, "frame_uid": ct.frame_uid}
    zeros = np.zeros(ct.shape_zyx)
    other = fixtures.write_ct_series(tmp_path / "other", zeros, ct.spacing, ct.origin, **uids)
    fixtures.write_seg(tmp_path / "other_seg.dcm", other, {"tumour": lesion_mask})
    gtv = fixtures.circle_contours(ct, CENTRE, RADIUS)
    fixtures.write_rtstruct(tmp_path / "rs.dcm", ct, {"Body": gtv})
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    return {
        "missing column": (pd.DataFrame({"image_path": ["ct"]}), "column 'mask_path' is missing"),
        "no roi": (pd.DataFrame({"image_path": ["ct"], "mask_path": ["rs.dcm"]}),
                   "no ROI matches --roi 'gtv' (ROIs: 'Body')"),
        "other series": (pd.DataFrame({"image_path": ["ct"], "mask_path": ["other_seg.dcm"]}),
                         f"not the image's series {ct.series_uid}"),
        "unreadable": (pd.DataFrame({"image_path": ["ct"], "mask_path": ["broken.dcm"]}),
                       "unreadable DICOM"),
        "missing mask": (pd.DataFrame({"image_path": ["ct"], "mask_path": ["nope.nii.gz"]}),
                         "does not exist"),
    }  # fmt: skip


def test_bad_inputs_give_a_clear_message_and_write_nothing(tmp_path, ct, lesion_mask, main, capsys):
    cases = _bad_inputs(tmp_path, ct, lesion_mask)
    every = []
    for name, (table, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        table.to_csv(path, index=False)
        out = tmp_path / "out" / "seeds.csv"
        assert main([str(path), "--out", str(out), "--roi", "gtv"]) == 1, name
        errors = [e for e in capsys.readouterr().err.splitlines() if " ERROR " in e]
        assert any(message in e for e in errors), (name, errors)
        assert _nothing_written(out), name
        every.append(cases[name][0])
    # All problems of one table are reported together, one line each.
    table = pd.concat(every[1:])
    table.to_csv(tmp_path / "all.csv", index=False)
    assert (
        main([str(tmp_path / "all.csv"), "--out", str(tmp_path / "seeds.csv"), "--roi", "gtv"]) == 1
    )
    errors = [e for e in capsys.readouterr().err.splitlines() if " ERROR " in e]
    for row, (_, message) in enumerate(list(cases.values())[1:], start=1):
        assert any(f"row {row}:" in e and message in e for e in errors), (row, errors)


def test_usage_errors_exit_2(tmp_path, main):
    table = _table(tmp_path, ["labels.nii.gz"])
    with pytest.raises(SystemExit) as bad_suffix:
        main([str(table), "--out", str(tmp_path / "seeds.txt")])
    with pytest.raises(SystemExit) as bad_regex:
        main([str(table), "--out", str(tmp_path / "seeds.csv"), "--roi", "("])
    assert bad_suffix.value.code == bad_regex.value.code == 2


def test_flipped_direction_nifti(tmp_path, main):
    """A RAS-stored volume (direction diag(-1, -1, 1)): the seed follows the image's geometry."""
    direction = np.diag([-1.0, -1.0, 1.0])
    origin, spacing, shape = (35.0, 60.0, -20.0), (0.9, 0.8, 2.0), (20, 36, 40)
    z, y, x = np.indices(shape, dtype=float)
    world = np.stack([origin[i] + direction[i, i] * (x, y, z)[i] * spacing[i] for i in range(3)])
    centre = np.array([origin[0] - 0.9 * 21.2, origin[1] - 0.8 * 14.7, origin[2] + 2.0 * 9.6])
    lesion = ((world - centre[:, None, None, None]) ** 2).sum(0) <= 6.0**2
    ct = sitk.GetImageFromArray(np.where(lesion, fixtures.LESION_HU, fixtures.BACKGROUND_HU)
                                .astype(np.int16))  # fmt: skip
    ct.SetOrigin(origin)
    ct.SetSpacing(spacing)
    ct.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    write_label_map(tmp_path / "labels.nii.gz", lesion, ct)
    table = pd.DataFrame({"image_path": ["ct.nii.gz"], "mask_path": ["labels.nii.gz"]})
    table.to_csv(tmp_path / "masks.csv", index=False)
    assert main([str(tmp_path / "masks.csv"), "--out", str(tmp_path / "seeds.csv")]) == 0
    row = pd.read_csv(tmp_path / "seeds.csv").iloc[0]
    expected = world_centroid(lesion, origin, spacing, direction)
    assert np.abs(row[["coordX", "coordY", "coordZ"]].to_numpy(float) - expected).max() < 1e-3
    assert_seeds_in_lesions(tmp_path / "seeds.csv", fixtures.LESION_HU, fixtures.BACKGROUND_HU)


def test_seg_off_the_image_grid_or_rtstruct_of_another_series(
    tmp_path, ct, lesion_mask, main, capsys
):
    fixtures.write_seg(tmp_path / "seg.dcm", ct, {"tumour": lesion_mask})
    shifted = sitk.Image(list(ct.shape_zyx[::-1]), sitk.sitkInt16)
    shifted.SetSpacing(ct.spacing)
    shifted.SetOrigin((ct.origin[0] + 0.45, ct.origin[1], ct.origin[2]))  # half a voxel off
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    gtv = fixtures.circle_contours(ct, CENTRE, RADIUS)
    fixtures.write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": gtv}, series_uid="1.2.826.0.1.3")
    table = pd.DataFrame(
        {"image_path": ["shifted.nii.gz", "ct"], "mask_path": ["seg.dcm", "rs.dcm"]}
    )
    table.to_csv(tmp_path / "masks.csv", index=False)
    out = tmp_path / "seeds.csv"
    assert main([str(tmp_path / "masks.csv"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "row 1: seg.dcm: frame 1 does not lie on the image's voxel grid" in err
    assert "row 2: rs.dcm: references series 1.2.826.0.1.3, not the image's series" in err
    assert _nothing_written(out)
