"""Seed-point stability of a task's features and test metrics (docs/method.md section 6).

Usage: python workflow_scripts/stability.py --task N --table TEST
    --source NAME WEIGHTS MODEL [--source ...] --copies K --sigma-mm S --distribution normal
    --backbone B --patch-size P --accelerator cpu --seed N --batch-size B --precision fp32
    --threads T --out stability.json

Each source is a feature source of linear evaluation: its backbone (a weights file, or
``random-init`` for the seeded control, or ``handcrafted`` for the handcrafted descriptor) and
the linear model linear_eval fitted on it (.npz), applied unchanged to K perturbed copies of the
test table. Every source's features of the table and its copies come from one pass over their
patches (each image read once, each patch sampled once, each batch through every backbone); the
handcrafted descriptor joins that pass when ``--patch-size`` is its own 50 and takes a pass of its
own otherwise. On any error nothing is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fmcib_core.eval.features import PRECISIONS, extract_feature_sources, load_backbone
from fmcib_core.eval.handcrafted import PATCH_SIZE, lesion_descriptor, table_descriptors
from fmcib_core.eval.linear import load_linear_model
from fmcib_core.eval.stability import (
    DISTRIBUTIONS,
    evaluate_source,
    perturb_seeds,
    stability_rows,
)
from fmcib_core.io.atomic import write_outputs
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.models.backbone import BACKBONES
from workflow_scripts import _cli
from workflow_scripts.extract_features import pick_device

log = logging.getLogger("stability")
RANDOM = "random-init"
HANDCRAFTED = "handcrafted"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    _cli.add_task_arguments(parser)
    add("--table", type=Path, required=True, help="the test lesion table")
    source_help = (
        f"a feature source: name, weights file (or {RANDOM} or {HANDCRAFTED}), linear model (.npz)"
    )
    add("--source", nargs=3, action="append", required=True, help=source_help,
        metavar=("NAME", "WEIGHTS", "MODEL"))  # fmt: skip
    add("--copies", type=int, required=True, help="perturbed copies K (paper: 50)")
    add("--sigma-mm", type=float, required=True, help="sd of the offsets per axis (paper: 4)")
    add("--distribution", choices=DISTRIBUTIONS, required=True)
    add("--backbone", choices=BACKBONES, required=True)
    add("--patch-size", type=int, required=True)
    add("--accelerator", choices=("cpu", "gpu"), required=True)
    add("--seed", type=int, required=True, help="seeds the offsets and the random-init control")
    add("--batch-size", type=int, required=True)
    add("--precision", choices=PRECISIONS, required=True)
    add("--threads", type=int, required=True, help="torch threads (the rule's)")
    add("--out", type=Path, required=True, help="stability.json to write")
    add("--progress", action="store_true")
    add("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.task = _cli.task_from_args(parser, args)
    names = [name for name, _, _ in args.source]
    if len(set(names)) < len(names):
        parser.error(f"--source names must differ; got {names}")
    return args


def source_features(
    args: argparse.Namespace, rows: pd.DataFrame, device: torch.device
) -> dict[str, np.ndarray]:
    """Each source's (N, F) features of ``rows`` (absolute ``image_path``), in one pass over the
    patches for all backbones; the handcrafted descriptor joins it when the patch sizes agree."""
    backbones = {
        name: load_backbone(args.backbone, None if weights == RANDOM else weights, seed=args.seed)
        for name, weights, _ in args.source
        if weights != HANDCRAFTED
    }
    described = [name for name, weights, _ in args.source if weights == HANDCRAFTED]
    shared = described[:1] if backbones and args.patch_size == PATCH_SIZE else []
    features = {}
    if backbones:
        features = extract_feature_sources(
            backbones, rows, per_patch=dict.fromkeys(shared, lesion_descriptor),
            patch_size=args.patch_size, batch_size=args.batch_size, device=device,
            precision=args.precision, progress=args.progress,
        )  # fmt: skip
    if described and not shared:  # the descriptor is defined on its own PATCH_SIZE patch
        features[described[0]] = table_descriptors(rows, progress=args.progress)
    for name in described[1:]:  # the same descriptor under another name
        features[name] = features[described[0]]
    return features


def run(args: argparse.Namespace) -> dict:
    device = pick_device(args.accelerator)
    table = read_table(args.table)
    table = table.assign(image_path=resolve_image_paths(table, args.table))
    perturbed = perturb_seeds(
        table, n_copies=args.copies, sigma_mm=args.sigma_mm,
        distribution=args.distribution, seed=args.seed,
    )  # fmt: skip
    log.info(
        "%d lesions x %d copies; %d seeds clamped", len(table), args.copies, perturbed.n_clamped
    )
    models = {name: load_linear_model(model) for name, _, model in args.source}
    features = source_features(args, stability_rows(table, perturbed), device)
    sources = {
        name: evaluate_source(features[name], model, args.task, table, perturbed)
        for name, model in models.items()
    }
    return {
        "task": args.task.id,
        "label": args.task.label_column,
        "n_lesions": len(table),
        "perturbations": {
            "copies": args.copies,
            "sigma_mm": args.sigma_mm,
            "distribution": args.distribution,
            "seed": args.seed,
        },  # fmt: skip
        "seeds_outside_scan": {
            "count": perturbed.n_clamped,
            "of": len(perturbed.table),
            "handling": "clamped to the scan's extent (voxel centres, half a voxel out)",
        },
        "sources": sources,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    _cli.set_torch_threads(args.threads)
    try:
        report = run(args)
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        write_outputs({args.out: lambda tmp: tmp.write_text(text)})
    except (ValueError, OSError, RuntimeError) as err:  # tables, weights, models, patches
        _cli.log_problems(log, err)
        return 1
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
