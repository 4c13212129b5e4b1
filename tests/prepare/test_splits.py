"""Seeded patient-level splits balanced per class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fmcib_core.prepare.splits import split_patients


def test_patients_stay_together_and_classes_follow_the_fractions():
    rng = np.random.default_rng(1)
    patients = pd.Series(rng.integers(0, 120, 400)).map(lambda p: f"P{p}")
    labels = pd.Series(rng.integers(0, 2, 400))
    split = split_patients(patients, ("train", "val", "test"), (0.5, 0.25, 0.25), 3, labels)
    assert (split.groupby(patients).nunique() == 1).all()
    for cls in (0, 1):
        share = split[labels == cls].value_counts(normalize=True)
        assert abs(share["train"] - 0.5) < 0.03 and abs(share["val"] - 0.25) < 0.03
    again = split_patients(patients, ("train", "val", "test"), (0.5, 0.25, 0.25), 3, labels)
    assert again.equals(split)
    other = split_patients(patients, ("train", "val", "test"), (0.5, 0.25, 0.25), 4, labels)
    assert not other.equals(split)


def test_missing_stratum_is_a_class_and_zero_fraction_gets_nothing():
    patients = pd.Series([f"P{i}" for i in range(10)])
    strata = pd.Series([0, 1, None, 0, 1, None, 0, 1, 0, 1], dtype="Int64")
    split = split_patients(patients, ("a", "b"), (1.0, 0.0), 0, strata)
    assert (split == "a").all()
