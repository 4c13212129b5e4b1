"""Extract frozen-backbone features for every lesion of a table (docs/method.md section 6).

Usage: python workflow_scripts/extract_features.py --table T (--weights W | --random-init)
    --backbone NAME --patch-size S --accelerator cpu|gpu --seed N --batch-size B
    --precision fp32|bf16 --threads T --out FEATURES.parquet [--csv FEATURES.csv | --shard I-of-K]

Writes the table's columns followed by float32 ``pred_0`` ... ``pred_{F-1}``, as parquet and,
with ``--csv``, also as CSV. With ``--shard I-of-K``, only shard I of the table's K (cut by image,
fmcib_core.eval.shards), and ``--out`` is a feature shard for gather_features.py. On any error
(missing or ill-fitting weights, an unreadable image, a seed outside its image, no CUDA device
for ``--accelerator gpu``) the exit status is 1 and nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fmcib_core.eval.features import PRECISIONS, extract_features, load_backbone
from fmcib_core.eval.shards import full_batches, shard_rows
from fmcib_core.io.atomic import OutputError, write_outputs
from fmcib_core.io.features import write_feature_shard, write_features
from fmcib_core.io.tables import read_table, resolve_image_paths
from fmcib_core.models.backbone import BACKBONES
from workflow_scripts import _cli

log = logging.getLogger("extract_features")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="lesion table (.csv/.parquet)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="backbone weights file (FMCIB format)")
    source.add_argument(
        "--random-init", action="store_true", help="seeded random backbone (the paper's control)"
    )
    parser.add_argument("--backbone", choices=BACKBONES, required=True)
    parser.add_argument("--patch-size", type=int, required=True, help="patch side in 1 mm voxels")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--seed", type=int, required=True, help="seed of the random-init backbone")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, required=True)
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d layout")
    parser.add_argument("--out", type=Path, required=True, help="feature table (.parquet)")
    parser.add_argument("--csv", type=Path, help="also write the feature table as CSV here")
    parser.add_argument("--threads", type=int, required=True, help="torch threads (the rule's)")
    parser.add_argument(
        "--shard", type=_cli.shard_arg, metavar="I-of-K", help="only shard I of K (by image)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    args = parser.parse_args(argv)
    if args.shard and args.csv:
        parser.error("--csv is for the gathered table, not a shard (gather_features.py --csv)")
    return args


def pick_device(accelerator: str) -> torch.device:
    """``cpu`` or the first CUDA device; no silent fallback from gpu to cpu."""
    if accelerator == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            "--accelerator gpu, but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "run on a GPU node or set accelerator: cpu in the config"
        )
    return torch.device("cuda")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _cli.setup_logging(args.verbose)
    _cli.set_torch_threads(args.threads)  # what the scheduler gave, not every core of the node
    try:
        device = pick_device(args.accelerator)
        table = read_table(args.table)
        located = table.assign(image_path=resolve_image_paths(table, args.table))
        if args.shard:
            shard, shards = args.shard
            rows = shard_rows(located["image_path"], shards)[shard - 1]
            log.info("shard %d of %d: %d of %d lesions", shard, shards, len(rows), len(table))
            if not len(rows):
                log.warning("shard %d has no lesions: more shards than images", shard)
                write_feature_shard(args.out, rows, np.empty((0, 0), dtype=np.float32))
                return 0
            located = located.iloc[rows].reset_index(drop=True)
        backbone = load_backbone(
            args.backbone, None if args.random_init else args.weights, seed=args.seed
        )
        features = extract_features(
            backbone,
            full_batches(located, args.batch_size),  # the same features in any shard
            patch_size=args.patch_size,
            batch_size=args.batch_size,
            device=device,
            precision=args.precision,
            channels_last=args.channels_last,
            progress=args.progress,
        )[: len(located)]
        if args.shard:
            outputs = {args.out: lambda tmp: write_feature_shard(tmp, rows, features)}
        else:
            outputs = {args.out: lambda tmp: write_features(tmp, table, features)}
        if args.csv is not None:
            outputs[args.csv] = lambda tmp: write_features(tmp, table, features, csv=True)
        write_outputs(outputs)  # both or neither
    except (ValueError, OSError, RuntimeError) as err:  # table, weights, patch, device errors
        _cli.log_problems(log, err)
        if not isinstance(err, OutputError):  # that one line says it all
            log.error("%s: feature extraction failed; nothing was written", args.table)
        return 1
    log.info("wrote %d x %d features to %s", *features.shape, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
