"""Extract frozen-backbone features for every lesion of a table (docs/method.md section 6).

Usage: python workflow_scripts/extract_features.py --table T (--weights W | --random-init)
    --backbone NAME --patch-size S --accelerator cpu|gpu --seed N --batch-size B
    --precision fp32|bf16 --out FEATURES.parquet [--csv FEATURES.csv]

Writes the table's columns followed by float32 ``pred_0`` ... ``pred_{F-1}``, as parquet and,
with ``--csv``, also as CSV. On any error (missing or ill-fitting weights, an unreadable image, a
seed outside its image, no CUDA device for ``--accelerator gpu``) the exit status is 1 and
nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from fmcib_core.eval.features import PRECISIONS, extract_features, load_backbone
from fmcib_core.io.atomic import OutputError, write_outputs
from fmcib_core.io.features import write_features
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
    parser.add_argument("--out", type=Path, required=True, help="feature table (.parquet)")
    parser.add_argument("--csv", type=Path, help="also write the feature table as CSV here")
    parser.add_argument("--threads", type=int, required=True, help="torch threads (the rule's)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


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
    torch.set_num_threads(args.threads)  # what the scheduler gave, not every core of the node
    try:
        device = pick_device(args.accelerator)
        table = read_table(args.table)
        located = table.assign(image_path=resolve_image_paths(table, args.table))
        backbone = load_backbone(
            args.backbone, None if args.random_init else args.weights, seed=args.seed
        )
        features = extract_features(
            backbone,
            located,
            patch_size=args.patch_size,
            batch_size=args.batch_size,
            device=device,
            precision=args.precision,
            progress=args.progress,
        )
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
