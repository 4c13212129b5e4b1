"""The prediction-table convention shared by linear evaluation, fine-tuning and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fmcib_core.io.predictions import probability_columns, with_probabilities


def test_probability_table_follows_the_linear_eval_convention() -> None:
    table = pd.DataFrame({"lesion_id": ["a", "b"], "malignancy": [0, 1]}, index=[5, 7])
    binary = with_probabilities(table, np.array([[0.8, 0.2], [0.3, 0.7]]), np.arange(2), False)
    assert list(binary.columns) == ["lesion_id", "malignancy", "prob"]
    assert binary["prob"].tolist() == [0.2, 0.7]
    multi = with_probabilities(table, np.full((2, 3), 1 / 3), np.arange(3), True)
    assert list(multi.columns)[2:] == ["prob_0", "prob_1", "prob_2"]
    with pytest.raises(ValueError, match="already present"):
        with_probabilities(binary, np.zeros((2, 2)), np.arange(2), False)
    with pytest.raises(ValueError, match="3 rows for 2"):
        with_probabilities(table, np.zeros((3, 2)), np.arange(2), False)


def test_probability_columns_read_back_what_was_written() -> None:
    table = pd.DataFrame({"y": [0, 1]})
    binary = with_probabilities(table, np.array([[0.8, 0.2], [0.3, 0.7]]), np.arange(2), False)
    assert probability_columns(binary) == {-1: "prob"}
    multi = with_probabilities(table, np.full((2, 3), 1 / 3), np.array([0, 2, 10]), True)
    assert probability_columns(multi) == {0: "prob_0", 2: "prob_2", 10: "prob_10"}
    assert probability_columns(pd.DataFrame({"prob_x": [1], "y": [0]})) == {}
