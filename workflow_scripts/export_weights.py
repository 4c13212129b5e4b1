"""Export the backbone of a pretraining checkpoint as an FMCIB weights file (docs/method.md 3).

Usage: python workflow_scripts/export_weights.py --checkpoint C --backbone NAME --out W
    [--out-safetensors W.safetensors]

Reads the Lightning checkpoint with ``weights_only=True``, loads its ``backbone.`` weights strictly
into a freshly built backbone (a key or shape that does not fit fails here, naming the keys) and
writes ``{"trunk_state_dict": ...}`` to W atomically. Exit status 1, and no output, on failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fmcib_core.io.weights import load_into, load_weights, save_fmcib_weights
from fmcib_core.models import BACKBONES, build_backbone
from workflow_scripts._cli import log_problems, set_torch_threads, setup_logging

log = logging.getLogger("export_weights")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="Lightning checkpoint")
    parser.add_argument("--backbone", choices=BACKBONES, required=True)
    parser.add_argument("--out", type=Path, required=True, help="FMCIB weights file to write")
    parser.add_argument("--out-safetensors", type=Path, help="also write them as .safetensors")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the rule's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    set_torch_threads(args.threads)
    try:
        weights = load_weights(args.checkpoint)
        backbone = build_backbone(args.backbone)
        load_into(backbone, weights.trunk, what="backbone", source=args.checkpoint)
        for out in filter(None, (args.out, args.out_safetensors)):
            save_fmcib_weights(out, backbone.state_dict())
    except (ValueError, OSError) as err:  # WeightsError, unwritable --out
        log_problems(log, err)
        return 1
    log.info(
        "%s: exported %d %s tensors (%s) to %s",
        args.checkpoint,
        len(weights.trunk),
        args.backbone,
        weights.source_format,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
