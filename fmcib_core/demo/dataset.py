"""The synthetic CT demo data set: cases to lesion rows to the tables of all tasks, on disk.

``make_demo_dataset`` draws, renders and writes every case from its own generator: labelled cases,
split into train, val and test for the three tasks' tables, and more pretraining-only cases for
the unlabelled pretraining table (columns of docs/method.md section 1).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from fmcib_core.demo.anatomy import _draw_case
from fmcib_core.demo.lesions import (
    LESION_TYPES,
    _draw_lesion,
    _Kind,
    _Lesion,
    patient_malignancy,
    patient_survival,
)
from fmcib_core.demo.render import _render, _write_image
from fmcib_core.demo.scales import _SPECS, SCALES, _ScaleSpec
from fmcib_core.io.atomic import atomic_path

log = logging.getLogger(__name__)

# Pretraining-only cases per labelled case when not given: more pretraining patients than
# labelled ones, as in the paper.
_PRETRAIN_CASES_PER_LABELLED = 1.25


def _make_case(
    index: int, pretrain: bool, *, seed: int, spec: _ScaleSpec, width: int, images: Path
) -> list[dict]:
    """Generate, render and write one case; return its lesions' table rows.

    A labelled case (``case_NNN``) draws from ``SeedSequence(seed, spawn_key=(0, index))``, a
    pretraining-only case (``pre_NNN``) from ``spawn_key=(2, index)``: the two sets never share a
    patient, and neither depends on how many of the other there are.
    """
    rng = np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(2 if pretrain else 0, index))
    )
    case = _draw_case(index, spec, rng, width)
    if pretrain:
        case.case_id = case.case_id.replace("case_", "pre_", 1)
    aggressiveness = float(rng.normal())
    n_extra = rng.integers(*spec.extra_lesions, endpoint=True)
    kinds = [*rng.permutation(len(_Kind)), *rng.integers(0, len(_Kind), n_extra)]
    lesions: list[_Lesion] = []
    for kind in kinds:
        lesion = _draw_lesion(case, _Kind(kind), rng, lesions, patient_malignancy(aggressiveness))
        if lesion is None:
            log.debug("%s: no room for a %s lesion", case.case_id, LESION_TYPES[kind])
            continue
        lesions.append(lesion)
    outcome = patient_survival(rng, aggressiveness, lesions)
    _write_image(case, _render(case, lesions, rng), images / f"{case.case_id}.nii.gz")
    return [
        {
            "image_path": f"{images.name}/{case.case_id}.nii.gz",
            "case_id": case.case_id,
            "lesion_id": f"{case.case_id}_L{j:02d}",
            **lesion.row,
            **outcome,
        }
        for j, lesion in enumerate(lesions)
    ]


class _InProcess:
    """The executor interface of ``workers=1``: cases made here, one after the other."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    map = staticmethod(map)


def _case_pool(workers: int) -> ProcessPoolExecutor | _InProcess:
    """Processes for the cases; spawned (not forked), as on macOS and Windows, so a parent that
    already runs torch or OpenMP threads is safe and every platform behaves alike."""
    if workers == 1:
        return _InProcess()
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _split_of_cases(n_cases: int, seed: int) -> list[str]:
    """Case-level split of the labelled cases: 20% val, 40% test (at least one case each), the
    rest train (at least one). The test split is the largest held-out part so that its metrics'
    confidence intervals are narrow enough to compare feature sources."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    n_val = max(1, round(0.2 * n_cases))
    n_test = min(max(1, round(0.4 * n_cases)), n_cases - n_val - 1)
    split = np.full(n_cases, "train", dtype=object)
    order = rng.permutation(n_cases)
    split[order[:n_val]], split[order[n_val : n_val + n_test]] = "val", "test"
    return split.tolist()


def _tables(rows: list[dict]) -> dict[str, pd.DataFrame]:
    """The pretraining table (the pretraining-only cases) and the three splits of the tasks."""
    lesions = pd.DataFrame(rows)
    common = ["image_path", "coordX", "coordY", "coordZ", "case_id", "lesion_id"]
    extra = ["split", "lesion_type", "diameter_mm"]
    tables = {"pretrain": lesions.loc[lesions["split"] == "pretrain", common]}
    for split in ("train", "val", "test"):
        part = lesions[lesions["split"] == split]
        tables[f"task1_{split}"] = part[[*common, *extra, "Coarse_lesion_type"]]
        tables[f"task2_{split}"] = part[[*common, *extra, "malignancy"]]
        known = part[part["survival"].notna()]
        task3 = known[[*common, *extra, "survival", "survival_time", "event"]]
        tables[f"task3_{split}"] = task3.astype({"survival": int})
    return {name: table.reset_index(drop=True) for name, table in tables.items()}


def make_demo_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    scale: str = "demo",
    n_cases: int | None = None,
    n_pretrain_cases: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Path]:
    """Write synthetic CT volumes and lesion tables for the three FMCIB tasks.

    Volumes are int16 HU NIfTI files ``images/case_NNN.nii.gz`` with anisotropic spacing,
    per-case origins and sizes; every third case (``case_001``, ``case_004``, ...) is stored
    RAS-ordered (direction diag(-1, -1, 1), array flipped so the anatomy is the same in world
    space). Tables are CSV files in ``out_dir`` whose ``image_path`` is relative to ``out_dir``
    and whose ``coordX/Y/Z`` are lesion centres in world millimetres, LPS.

    Tables and labels:
      - ``pretrain.csv``: the lesions of the pretraining-only cases ``pre_NNN``, unlabelled
        (image_path, coordX, coordY, coordZ, case_id, lesion_id). These patients are more than
        the labelled ones and none of them is in a task table, as in the paper, where the
        pretraining lesions (11,467) outnumber Task 1's and come from other patients.
      - ``task{1,2,3}_{train,val,test}.csv``: those columns plus ``split``, ``lesion_type``
        (name) and ``diameter_mm``, then the labels. Task 1 ``Coarse_lesion_type`` (0..7,
        ``LESION_TYPES``: DeepLesion's coarse types minus one); every case holds one lesion of
        every type plus a few random extra ones. Task 2 ``malignancy``: a latent class makes
        lesions larger, brighter than benign ones of their type, lobulated and spiculated with an
        ill-defined margin, and heterogeneous with a necrotic core; the label is that class
        flipped with probability 0.05. Each case is a patient with a latent aggressiveness
        a ~ N(0, 1): each of their lesions is malignant with probability 1 / (1 + exp(-4 a)).
        Task 3 is the patient's outcome, the same in every row of a case: death time is Weibull
        (shape 1.2) with a hazard rising with a and with the mean over the patient's lesions of
        size, latent malignancy and heterogeneity; follow-up ends uniformly between 1 and 6
        years (administrative censoring). ``survival_time`` (days) and ``event`` are the
        observed time and whether death was observed; ``survival`` is 1 when the patient is
        known alive at 730 days (observed time > 730), 0 when death was observed at or before
        730 days. Patients censored at or before 730 days have an unknown 2-year status and
        their lesions are left out of the Task 3 tables (they stay in Tasks 1 and 2).
        ``case_id`` groups a patient's lesions (``linear_eval.patient_level``).
    The labelled cases ``case_NNN`` are split case-disjointly (20% val, 40% test, the rest
    train); all tasks share the split.

    Every case draws from its own generator (``SeedSequence(seed, spawn_key=(0, index))``), so
    a case does not depend on generation order or on ``n_cases``; the same seed gives identical
    voxels and byte-identical tables. Images are written atomically, tables last.

    Args:
        out_dir: folder to write into (created if needed).
        seed: non-negative seed.
        scale: ``"demo"`` (40 labelled cases of 128-192 x 128-192 x 30-70 voxels, in-plane
            0.7-0.9 mm, slices 1.25-5 mm), ``"medium"`` (96 such cases) or ``"full"`` (3 cases of
            512 x 512 x ~300 voxels at ~0.7 x 0.7 x 1.25 mm; for benchmarks).
        n_cases: overrides the scale's number of labelled cases (at least 3: one per split).
        n_pretrain_cases: number of pretraining-only cases (at least 1); default
            ``ceil(1.25 * n_cases)``, more patients than all the labelled ones.
        workers: processes that make cases side by side (1: in this process). Every case has
            its own generator, so the files are the same, byte for byte, for any number.
        progress: show a progress bar over cases.

    Returns:
        Table name (``pretrain``, ``task1_train``, ..., ``task3_test``) -> CSV path, plus
        ``images`` -> the image folder.

    Raises:
        ValueError: unknown scale, fewer than 3 cases or no pretraining case, a negative seed,
            or fewer than 1 worker.
    """
    if scale not in _SPECS:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    spec = _SPECS[scale]
    n_cases = spec.n_cases if n_cases is None else int(n_cases)
    if n_cases < 3:
        raise ValueError(f"n_cases must be at least 3 (one case per split); got {n_cases}")
    if n_pretrain_cases is None:
        n_pretrain_cases = math.ceil(_PRETRAIN_CASES_PER_LABELLED * n_cases)
    n_pretrain_cases = int(n_pretrain_cases)
    if n_pretrain_cases < 1:
        raise ValueError(f"n_pretrain_cases must be at least 1; got {n_pretrain_cases}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative; got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1; got {workers}")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(max(n_cases, n_pretrain_cases) - 1)))
    splits = _split_of_cases(n_cases, seed)
    jobs = [(i, False, splits[i]) for i in range(n_cases)]
    jobs += [(i, True, "pretrain") for i in range(n_pretrain_cases)]
    make = partial(_make_case, seed=seed, spec=spec, width=width, images=images)
    indices, pretrains, _ = zip(*jobs, strict=True)
    bar = tqdm(total=len(jobs), desc="synthetic cases", unit="case", disable=not progress)
    rows = []
    with bar, _case_pool(workers) as pool:
        # map keeps the order of jobs, so the tables do not depend on which process ends first
        for (_, _, split), case_rows in zip(jobs, pool.map(make, indices, pretrains), strict=True):
            rows += [{**row, "split": split} for row in case_rows]
            bar.update()
    paths: dict[str, Path] = {}
    for name, table in _tables(rows).items():
        paths[name] = out_dir / f"{name}.csv"
        with atomic_path(paths[name]) as tmp:
            table.to_csv(tmp, index=False)
    log.info(
        "wrote %d labelled and %d pretraining cases, %d lesions and %d tables to %s",
        n_cases, n_pretrain_cases, len(rows), len(paths), out_dir,
    )  # fmt: skip
    return {**paths, "images": images}
