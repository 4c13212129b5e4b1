"""Weights files: the published layout round trip, our Lightning checkpoints, strict loading."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from fmcib_core.io import OutputError
from fmcib_core.io.weights import (
    WeightsError,
    load_into,
    load_weights,
    save_fmcib_weights,
)
from fmcib_core.models import build_backbone, projection_head, task_head
from fmcib_core.models.backbone import empty_backbone
from fmcib_core.optim import LARS, cosine_per_step

TINY = "resnet10_w025"


def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_backbone(TINY).state_dict()


def _published_layout() -> dict[str, torch.Tensor]:
    """The 322 keys and shapes of resnet50x2, each tensor a distinct constant.

    Expanded single values keep the file a few kB while the shapes are the real ones.
    """
    layout = empty_backbone("resnet50x2").state_dict()
    return {
        key: torch.full((), float(i)).to(ref.dtype).expand(ref.shape)
        for i, (key, ref) in enumerate(layout.items())
    }


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.mark.slow
def test_published_layout_round_trip(tmp_path: Path) -> None:
    trunk = _published_layout()
    path = save_fmcib_weights(tmp_path / "model_weights.torch", trunk)
    weights = load_weights(path)
    assert weights.source_format == "fmcib"
    assert weights.head is None
    assert len(weights.trunk) == 322
    _assert_same(weights.trunk, trunk)
    model = build_backbone("resnet50x2")
    load_into(model, weights.trunk, what="backbone", source=path)
    assert torch.equal(model.conv1.weight, trunk["conv1.weight"])
    assert torch.equal(model.layer4[2].bn3.running_var, trunk["layer4.2.bn3.running_var"])
    assert _leftovers(tmp_path) == []


def test_zip_files_are_memory_mapped_and_legacy_files_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trunk = _tiny_state()
    zipped = save_fmcib_weights(tmp_path / "new.torch", trunk)
    legacy = tmp_path / "legacy.torch"
    torch.save({"trunk_state_dict": trunk}, legacy, _use_new_zipfile_serialization=False)
    calls, load = [], torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    for path in (zipped, legacy):
        _assert_same(load_weights(path).trunk, trunk)
    assert calls == [True, False]


def test_round_trip_with_head(tmp_path: Path) -> None:
    trunk = _tiny_state()
    head = task_head(2, 128).state_dict()
    weights = load_weights(save_fmcib_weights(tmp_path / "w.torch", trunk, head))
    _assert_same(weights.trunk, trunk)
    assert weights.head is not None
    _assert_same(weights.head, head)
    model, head_module = build_backbone(TINY), task_head(2, 128)
    load_into(model, weights.trunk, what="backbone", source="w.torch")
    load_into(head_module, weights.head, what="head", source="w.torch")
    _assert_same(model.state_dict(), trunk)


def test_plain_and_ddp_state_dicts(tmp_path: Path) -> None:
    trunk = _tiny_state()
    torch.save(trunk, tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in trunk.items()}, tmp_path / "ddp.pt")
    for name in ("plain.pt", "ddp.pt"):
        weights = load_weights(tmp_path / name)
        assert weights.source_format == "state_dict"
        _assert_same(weights.trunk, trunk)
    torch.save({"trunk_state_dict": {f"module.{k}": v for k, v in trunk.items()}}, tmp_path / "f")
    _assert_same(load_weights(tmp_path / "f").trunk, trunk)


class _Pretrain(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = build_backbone(TINY)
        self.head = projection_head(128)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.head(self.backbone(batch)).pow(2).mean()

    def configure_optimizers(self) -> dict:
        optimizer = LARS(self.parameters(), lr=0.1)
        scheduler = {"scheduler": cosine_per_step(optimizer, 4), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def test_lightning_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _Pretrain()
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    data = torch.utils.data.DataLoader(torch.randn(4, 1, 16, 16, 16), batch_size=2)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")

    weights = load_weights(tmp_path / "last.ckpt")
    assert weights.source_format == "lightning"
    _assert_same(weights.trunk, module.backbone.state_dict())
    assert weights.head is not None
    _assert_same(weights.head, module.head.state_dict())
    backbone = build_backbone(TINY)
    load_into(backbone, weights.trunk, what="backbone", source=weights.path)
    _assert_same(backbone.state_dict(), module.backbone.state_dict())


def test_lightning_checkpoint_with_unknown_prefix(tmp_path: Path) -> None:
    state = {f"backbone.{k}": v for k, v in _tiny_state().items()}
    state["teacher.conv1.weight"] = torch.zeros(1)
    torch.save({"state_dict": state, "epoch": 0}, tmp_path / "odd.ckpt")
    with pytest.raises(WeightsError, match=r"odd\.ckpt: .*1 key unknown: teacher\.conv1\.weight"):
        load_weights(tmp_path / "odd.ckpt")


def _load_tiny(path: Path) -> None:
    load_into(build_backbone(TINY), load_weights(path).trunk, what="backbone", source=path)


def test_missing_key(tmp_path: Path) -> None:
    trunk = _tiny_state()
    del trunk["layer4.0.bn2.running_var"]
    path = save_fmcib_weights(tmp_path / "missing.torch", trunk)
    with pytest.raises(
        WeightsError,
        match=r"missing\.torch: backbone weights do not fit the model \(75 keys\): "
        r"1 key missing: layer4\.0\.bn2\.running_var$",
    ):
        _load_tiny(path)


def test_many_missing_keys_are_counted(tmp_path: Path) -> None:
    trunk = _tiny_state()
    gone = [k for k in trunk if k.startswith("layer1.")]
    for key in gone:
        del trunk[key]
    path = save_fmcib_weights(tmp_path / "w.torch", trunk)
    with pytest.raises(
        WeightsError, match=rf"{len(gone)} keys missing: layer1\.0\.conv1\.weight, "
    ):
        _load_tiny(path)
    with pytest.raises(WeightsError, match=rf"\.\.\. \({len(gone) - 5} more\)"):
        _load_tiny(path)


def test_unexpected_key(tmp_path: Path) -> None:
    trunk = _tiny_state()
    trunk["fc.weight"] = torch.zeros(400, 128)
    path = save_fmcib_weights(tmp_path / "extra.torch", trunk)
    with pytest.raises(WeightsError, match=r"extra\.torch: .*1 key unexpected: fc\.weight$"):
        _load_tiny(path)


def test_wrong_shape(tmp_path: Path) -> None:
    trunk = _tiny_state()
    trunk["conv1.weight"] = torch.zeros(16, 1, 3, 3, 3)
    path = save_fmcib_weights(tmp_path / "shape.torch", trunk)
    with pytest.raises(
        WeightsError,
        match=r"1 key with a wrong shape: conv1\.weight \(file \(16, 1, 3, 3, 3\), "
        r"model \(16, 1, 7, 7, 7\)\)",
    ):
        _load_tiny(path)


def test_all_problems_reported_together(tmp_path: Path) -> None:
    trunk = _tiny_state()
    del trunk["bn1.bias"]
    trunk["extra"] = torch.zeros(1)
    trunk["conv1.weight"] = torch.zeros(1)
    path = save_fmcib_weights(tmp_path / "w.torch", trunk)
    with pytest.raises(
        WeightsError, match="1 key missing: bn1.bias; 1 key unexpected: extra; 1 key"
    ):
        _load_tiny(path)


def test_not_a_dict(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match=r"list\.pt: holds a list, not a dict of weights"):
        load_weights(tmp_path / "list.pt")


def test_trunk_not_a_state_dict(tmp_path: Path) -> None:
    torch.save({"trunk_state_dict": {"conv1.weight": 1.0}}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="trunk_state_dict is not a dict of tensors; 1 key"):
        load_weights(tmp_path / "w.pt")
    torch.save({"trunk_state_dict": [torch.zeros(1)]}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="trunk_state_dict is a list, not a dict of tensors"):
        load_weights(tmp_path / "w.pt")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.torch: weights file does not exist"):
        load_weights(tmp_path / "nope.torch")


def _mark(path: str) -> None:
    Path(path).touch()


class _Payload:
    """An object that runs code when unpickled: weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (_mark, (self.marker,))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    torch.save({"trunk_state_dict": {"x": _Payload(marker)}}, tmp_path / "evil.torch")
    with pytest.raises(WeightsError, match=r"evil\.torch: cannot be read .*weights_only=True"):
        load_weights(tmp_path / "evil.torch")
    assert not marker.exists()


def test_bad_state_dict_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="trunk_state_dict is not a dict of tensors; 1 key"):
        save_fmcib_weights(tmp_path / "w.torch", {"conv1.weight": "not a tensor"})
    with pytest.raises(WeightsError, match="head_state_dict is a list, not a dict of tensors"):
        save_fmcib_weights(tmp_path / "w.torch", _tiny_state(), [torch.zeros(1)])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_fmcib_weights(tmp_path / "w.torch", _tiny_state())
    assert list(tmp_path.iterdir()) == []


def test_empty_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "model_weights.torch"
    path.write_bytes(b"")
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert str(info.value) == (
        f"{path}: empty file (0 bytes); it was not written completely, export or download it again"
    )


def _corrupt(trunk: dict[str, torch.Tensor], keys: list[str]) -> None:
    for i, key in enumerate(keys):
        trunk[key] = trunk[key].clone()
        trunk[key].view(-1)[0] = float("nan") if i % 2 else float("inf")


def test_non_finite_values_are_refused_naming_the_keys(tmp_path: Path) -> None:
    trunk = _tiny_state()
    keys = ["conv1.weight", "layer1.0.conv1.weight", "layer4.0.bn2.running_var"]
    _corrupt(trunk, keys)
    path = save_fmcib_weights(tmp_path / "nan.torch", trunk)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert str(info.value) == (
        f"{path}: 3 tensors hold NaN or infinite values ({', '.join(keys)}); "
        "the file is corrupt or the training diverged"
    )


def test_non_finite_values_first_five_keys_and_the_count(tmp_path: Path) -> None:
    trunk = _tiny_state()
    keys = [k for k in trunk if trunk[k].is_floating_point()][:7]
    _corrupt(trunk, keys)
    head = task_head(2, 128).state_dict()
    head["0.weight"][0, 0] = float("nan")
    path = save_fmcib_weights(tmp_path / "nan.torch", trunk, head)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    assert str(info.value) == (
        f"{path}: 8 tensors hold NaN or infinite values ({', '.join(keys[:5])}, ... (3 more)); "
        "the file is corrupt or the training diverged"
    )


def test_non_finite_head_and_lightning_keys_are_named(tmp_path: Path) -> None:
    trunk = _tiny_state()
    head = task_head(2, 128).state_dict()
    name = next(iter(head))
    head[name][0] = float("nan")
    with pytest.raises(WeightsError, match=rf": 1 tensor holds NaN .* \(head\.{name}\); "):
        load_weights(save_fmcib_weights(tmp_path / "w.torch", trunk, head))
    state = {f"backbone.{k}": v for k, v in trunk.items()}
    state["backbone.bn1.bias"] = torch.full_like(trunk["bn1.bias"], float("-inf"))
    torch.save({"state_dict": state}, tmp_path / "ssl.ckpt")
    with pytest.raises(WeightsError, match=r"ssl\.ckpt: 1 tensor holds NaN .* \(bn1\.bias\); "):
        load_weights(tmp_path / "ssl.ckpt")


def test_huge_finite_values_whose_sum_overflows_are_accepted(tmp_path: Path) -> None:
    trunk = _tiny_state()
    trunk["conv1.weight"] = torch.full_like(trunk["conv1.weight"], 3e38)  # sum: inf
    assert not trunk["conv1.weight"].sum().isfinite()
    loaded = load_weights(save_fmcib_weights(tmp_path / "huge.torch", trunk))
    assert torch.equal(loaded.trunk["conv1.weight"], trunk["conv1.weight"])


def test_torch_zip_writer_failure_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", fail)
    out = tmp_path / "w.torch"
    with pytest.raises(OutputError) as info:
        save_fmcib_weights(out, _tiny_state())
    assert str(info.value) == (
        f"{out}: cannot write (PytorchStreamWriter failed writing file data/0: file write failed)"
        "; free disk space or choose another output folder"
    )
    assert list(tmp_path.iterdir()) == []


def test_safetensors_round_trip_gives_identical_tensors(tmp_path):
    from fmcib_core.models import build_backbone, task_head

    torch.manual_seed(3)
    trunk = build_backbone("resnet10_w025").state_dict()
    head = task_head(2, 128).state_dict()
    pickled = save_fmcib_weights(tmp_path / "w.torch", trunk, head)
    safe = save_fmcib_weights(tmp_path / "w.safetensors", trunk, head)
    assert safe.read_bytes()[:8] != pickled.read_bytes()[:8]  # a different container
    a, b = load_weights(pickled), load_weights(safe)
    assert b.source_format == "fmcib" and list(a.trunk) == list(b.trunk)
    for part in ("trunk", "head"):
        first, second = getattr(a, part), getattr(b, part)
        assert first.keys() == second.keys()
        for key in first:
            assert first[key].dtype == second[key].dtype and torch.equal(first[key], second[key])
    model = build_backbone("resnet10_w025")
    load_into(model, b.trunk, what="backbone", source=safe)  # strict
    only_trunk = load_weights(save_fmcib_weights(tmp_path / "t.safetensors", trunk))
    assert only_trunk.head is None


def test_safetensors_with_foreign_keys_or_bad_values_is_refused(tmp_path):
    import safetensors.torch

    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"conv1.weight": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not an FMCIB safetensors file.*conv1.weight"):
        load_weights(path)
    nan = tmp_path / "nan.safetensors"
    save_fmcib_weights(nan, {"a": torch.tensor([float("nan")])})
    with pytest.raises(WeightsError, match="NaN or infinite"):
        load_weights(nan)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="cannot be read as a safetensors file"):
        load_weights(junk)
