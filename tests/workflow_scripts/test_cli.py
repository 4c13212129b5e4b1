"""workflow_scripts/_cli.py: the shard argument and torch's threads."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

import pytest
import torch

from tests.workflow_scripts import ROOT
from workflow_scripts import _cli


@pytest.mark.parametrize(("text", "shard"), [("1-of-1", (1, 1)), ("2-of-4", (2, 4))])
def test_shard_arg(text, shard):
    assert _cli.shard_arg(text) == shard


@pytest.mark.parametrize("text", ["0-of-2", "3-of-2", "2", "1of2", "-1-of-2", "a-of-b"])
def test_bad_shard_arg(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected I-of-K"):
        _cli.shard_arg(text)


@pytest.mark.parametrize(
    ("threads", "workers", "processes", "expected"),
    [
        (1, 0, 1, 1),
        (2, 0, 1, 2),  # pretrain without workers: threads max(1, 0) x 1 + 1
        (2, 1, 1, 1),  # the demo's pretraining: one worker, the main process the other core
        (9, 8, 1, 1),  # the paper's fine-tuning: threads = workers + 1
        (17, 8, 2, 1),  # the paper's pretraining: 8 workers per GPU x 2 + 1
        (12, 2, 2, 4),
        (1, 8, 2, 1),  # never below 1, even where --cores cut the job's threads
    ],
)
def test_torch_threads_leave_the_workers_their_cores(threads, workers, processes, expected):
    assert _cli.torch_threads(threads, workers, processes) == expected


# A fresh interpreter: torch fixes its inter-op threads once per process.
FRESH = """
import os, torch
from workflow_scripts import _cli
torch.set_num_threads(7)
n = torch.get_num_interop_threads() + 1  # not torch's default
assert _cli.set_torch_threads(2 * n + 2, workers=1, processes=2) == n
omp = os.environ["OMP_NUM_THREADS"] == str(n)  # inherited by DDP ranks
print(torch.get_num_threads() - n, torch.get_num_interop_threads() - n, omp)
assert _cli.set_torch_threads(n + 1) == n + 1  # inter-op threads are fixed now: kept, said so
print(torch.get_num_threads() - n, torch.get_num_interop_threads() - n)
"""


def test_set_torch_threads_sets_intra_and_inter_op_threads_once():
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "5", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["0 0 True", "1 0"]
    assert "torch inter-op threads stay" in result.stderr


def test_set_torch_threads_in_process_leaves_omp_alone_for_one_process(monkeypatch, caplog):
    monkeypatch.setenv("OMP_NUM_THREADS", "9")  # records the variable's state, restored after
    monkeypatch.delenv("OMP_NUM_THREADS")
    with caplog.at_level(logging.WARNING):
        assert _cli.set_torch_threads(3, workers=1) == 2
    assert torch.get_num_threads() == 2
    assert "OMP_NUM_THREADS" not in os.environ
    # a DDP rank that srun started: one process, but a rank like Lightning's, which inherit it
    assert _cli.set_torch_threads(3, workers=1, ddp=True) == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"


COMMON = [
    "--backbone",
    "resnet10_w025",
    "--patch-size",
    "16",
    "--accelerator",
    "cpu",
    "--seed",
    "0",
]
# Each torch script on an input that does not exist: it fails at once, its threads already set.
# (script, arguments, torch threads expected from --threads 5)
TORCH_SCRIPTS = [
    ("extract_features", ["--table", "absent.csv", "--random-init", "--out", "f.parquet",
                          "--batch-size", "2", *COMMON], 5),
    ("stability", ["--task", "2", "--table", "absent.csv", "--source", "a", "random-init",
                   "m.npz", "--copies", "2", "--sigma-mm", "1", "--distribution", "normal",
                   "--batch-size", "2", "--precision", "fp32", "--out", "s.json", *COMMON], 5),
    ("export_weights", ["--checkpoint", "absent.ckpt", "--backbone", "resnet10_w025",
                        "--out", "w.torch"], 5),
    # less the DataLoader workers: 2 per device; with 2 devices each rank gets half the rest
    ("finetune", ["--task", "2", "--init", "random", "--train", "absent.csv", "--test",
                  "absent.csv", "--out-dir", "o", "--work-dir", "w", "--num-workers", "2",
                  *COMMON], 3),
    ("pretrain", ["--cache", "absent", "--work-dir", "w", "--out-checkpoint", "c.ckpt",
                  "--out-log", "l.csv", "--num-workers", "1", "--devices", "2", *COMMON], 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "argv", "expected"), TORCH_SCRIPTS, ids=[s[0] for s in TORCH_SCRIPTS]
)
def test_every_torch_script_sets_torch_threads_from_threads(
    load_script, monkeypatch, tmp_path, name, argv, expected
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # pretrain's two ranks set it: restored after
    torch.set_num_threads(7)
    assert load_script(name).main([*argv, "--threads", "5"]) == 1
    assert torch.get_num_threads() == expected
    assert not list(tmp_path.iterdir()), "a failed run wrote something"


def test_the_torch_scripts_are_every_script_that_imports_torch():
    scripts = sorted(ROOT.glob("workflow_scripts/*.py"))
    calls = {p.stem for p in scripts if "set_torch_threads(" in p.read_text()} - {"_cli"}
    assert calls == {name for name, *_ in TORCH_SCRIPTS}
    for path in scripts:
        text = path.read_text()
        assert "torch.set_num_threads" not in text or path.stem == "_cli", path
        if "import torch" in text and path.stem != "_cli":
            assert path.stem in calls, f"{path.name} imports torch but sets no threads"
