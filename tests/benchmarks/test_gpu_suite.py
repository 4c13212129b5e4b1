"""benchmarks/gpu_suite.py runs end to end on the CPU with tiny sizes (a smoke test, no timing)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_suite_small_on_cpu_writes_its_json_and_table(tmp_path, capsys):
    out = tmp_path / "suite.json"
    assert load_suite().main(["--device", "cpu", "--small", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"torch", "cuda", "device", "driver"} <= set(result["environment"])
    combos = {(r["batch"], r["precision"]) for r in result["features"]}
    assert combos == {(b, p) for b in (4, 8) for p in ("fp32", "bf16")}
    for row in result["features"]:
        assert row["forward_lesions_s"] > 0 and row["end_to_end_lesions_s"] > 0
    modes = {(r["precision"], r["augment_on"]) for r in result["ssl"]}
    assert modes == {(p, a) for p in ("32-true", "bf16-mixed") for a in ("cpu", "device")}
    for row in result["ssl"]:
        assert row["items_s"] > 0 and 0 <= row["data_wait_share"] <= 1
    printed = capsys.readouterr().out
    assert "feature extraction" in printed and "SSL step" in printed and "CPU" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["suite.json"]


def test_gpu_suite_refuses_cuda_without_a_device(tmp_path, monkeypatch):
    suite = load_suite()
    monkeypatch.setattr(suite.torch.cuda, "is_available", lambda: False)
    assert suite.main(["--device", "cuda", "--out", str(tmp_path / "x.json")]) == 1
    assert not (tmp_path / "x.json").exists()
