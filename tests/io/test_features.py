"""Feature tables: round trips and schema errors of fmcib_core.io.features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmcib_core.io.features import (
    FEATURE_PREFIX,
    SHARD_ROW,
    FeatureTableError,
    feature_names,
    read_feature_shard,
    read_features,
    write_feature_shard,
    write_features,
)


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {"lesion_id": ["a", "b", "c"], "coordX": [1.5, -2.0, 3.25], "malignancy": [0, 1, 1]},
        index=[10, 11, 12],
    )


@pytest.fixture
def features() -> np.ndarray:
    return np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def test_feature_names_follow_the_prefix():
    assert FEATURE_PREFIX == "pred_"
    assert feature_names(3) == ["pred_0", "pred_1", "pred_2"]


@pytest.mark.parametrize("name,csv", [("f.parquet", False), ("f.csv", True)])
def test_round_trip_keeps_columns_and_values(tmp_path, table, features, name, csv):
    path = tmp_path / name
    write_features(path, table, features, csv=csv)
    back, X, names = read_features(path)
    assert names == ["pred_0", "pred_1", "pred_2", "pred_3"]
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, features)
    pd.testing.assert_frame_equal(back, table.reset_index(drop=True))


def test_parquet_stores_float32_after_the_table_columns(tmp_path, table, features):
    path = tmp_path / "f.parquet"
    write_features(path, table, features.astype(np.float64))
    raw = pd.read_parquet(path)
    assert list(raw.columns) == [*table.columns, "pred_0", "pred_1", "pred_2", "pred_3"]
    assert all(raw[n].dtype == np.float32 for n in feature_names(4))


def test_nan_features_are_kept(tmp_path, table, features):
    features[1, 2] = np.nan
    write_features(tmp_path / "f.parquet", table, features)
    _, X, _ = read_features(tmp_path / "f.parquet")
    assert np.isnan(X[1, 2]) and np.isfinite(np.delete(X.ravel(), 6)).all()


def test_float64_columns_are_accepted_and_cast(tmp_path, table):
    frame = table.assign(pred_0=[0.1, 0.2, 0.3], pred_1=[1.0, 2.0, 3.0])
    frame.to_parquet(tmp_path / "f.parquet")
    _, X, names = read_features(tmp_path / "f.parquet")
    assert names == ["pred_0", "pred_1"] and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], [0.1, 0.2, 0.3], rtol=1e-7)


@pytest.mark.parametrize(
    "columns,message",
    [
        ({"pred_0": [0.1, 0.2, 0.3], "pred_1": ["x", "y", "z"]}, "'pred_1'"),
        ({"pred_0": [1, 2, 3]}, "'pred_0' (int64)"),
        ({}, "no feature columns"),
        ({"pred_0": [0.1] * 3, "pred_2": [0.2] * 3}, "['pred_2']"),
        ({"pred_1": [0.1] * 3, "pred_0": [0.2] * 3}, "in order"),
        ({"pred_0": [0.1] * 3, "other": [1] * 3, "pred_1": [0.2] * 3}, "not contiguous"),
    ],
    ids=["string", "integer", "none", "gap", "order", "split"],
)
def test_bad_schema_names_file_and_column(tmp_path, table, columns, message):
    path = tmp_path / "bad.parquet"
    table.assign(**columns).to_parquet(path)
    with pytest.raises(FeatureTableError) as err:
        read_features(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.parquet", None, "does not exist"),
        ("f.txt", "a,b\n", "unknown feature table format"),
        ("f.parquet", "not parquet", "cannot be parsed"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(FeatureTableError, match=message):
        read_features(path)


@pytest.mark.parametrize(
    "name,csv,rows,extra,message",
    [
        ("f.parquet", False, 2, {}, "feature rows"),
        ("f.parquet", False, 3, {"pred_9": [1, 2, 3]}, "feature-like"),
        ("f.csv", False, 3, {}, "does not match"),
        ("f.parquet", True, 3, {}, "does not match"),
    ],
)
def test_write_rejects_bad_input_and_leaves_nothing(
    tmp_path, table, features, name, csv, rows, extra, message
):
    with pytest.raises(ValueError, match=message):
        write_features(tmp_path / name, table.assign(**extra), features[:rows], csv=csv)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_text_features(tmp_path, table):
    with pytest.raises(ValueError, match="real numbers"):
        write_features(tmp_path / "f.parquet", table, np.array([["a"], ["b"], ["c"]]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [3, 0])
def test_shard_round_trip(tmp_path, features, n):
    rows = np.array([7, 2, 4])[:n]
    shard = features[:n] if n else np.empty((0, 0))
    write_feature_shard(tmp_path / "s.parquet", rows, shard)
    got_rows, got = read_feature_shard(tmp_path / "s.parquet")
    assert got_rows.dtype == np.int64 and got_rows.tolist() == rows.tolist()
    assert got.dtype == np.float32 and got.shape == ((3, 4) if n else (0, 0))
    np.testing.assert_array_equal(got, shard)
    columns = pd.read_parquet(tmp_path / "s.parquet").columns.tolist()
    assert columns == [SHARD_ROW, *feature_names(4 if n else 0)]
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]


@pytest.mark.parametrize(
    "frame,message",
    [
        (pd.DataFrame({"pred_0": [1.0]}), "starts with a 'row' column"),
        (pd.DataFrame({"row": [0.5], "pred_0": [1.0]}), "'row' must hold integers"),
        (pd.DataFrame({"row": [0], "pred_0": [1.0], "case": ["a"]}), r"other columns \['case'\]"),
        (pd.DataFrame({"row": [0], "pred_1": [1.0]}), "must be pred_0 ... pred_0"),
        (pd.DataFrame({"row": [0]}), "no feature columns"),
    ],
)
def test_bad_shard_names_file_and_column(tmp_path, frame, message):
    path = tmp_path / "s.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(FeatureTableError, match=message):
        read_feature_shard(path)


@pytest.mark.parametrize(
    "name,rows,shard,message",
    [
        ("s.parquet", [0, 1], np.ones((3, 2)), "expected \\(n,\\) and \\(n, F\\)"),
        ("s.parquet", [0], np.ones((1, 0)), "needs F >= 1"),
        ("s.parquet", [0.0], np.ones((1, 2)), "must be integers"),
        ("s.parquet", [0], np.array([["a"]]), "real numbers"),
        ("s.csv", [0], np.ones((1, 2)), "use a .parquet name"),
    ],
)
def test_write_shard_rejects_bad_input_and_leaves_nothing(tmp_path, name, rows, shard, message):
    with pytest.raises(ValueError, match=message):
        write_feature_shard(tmp_path / name, np.array(rows), shard)
    assert list(tmp_path.iterdir()) == []
