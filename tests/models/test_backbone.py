"""The backbone family: the paper's layout, parameter count and key names; every member's shape."""

from __future__ import annotations

import pytest
import torch

from fmcib_core.models import BACKBONES, backbone_output_dim, build_backbone


def _meta_backbone(name: str) -> torch.nn.Module:
    # The meta device builds the layout (shapes, names) without allocating or initialising memory.
    with torch.device("meta"):
        return build_backbone(name)


def test_resnet50x2_parameter_count_and_keys() -> None:
    model = _meta_backbone("resnet50x2")
    assert sum(p.numel() for p in model.parameters()) == 184_477_824
    keys = list(model.state_dict())
    assert len(keys) == 322
    assert keys[:5] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ]
    assert keys[-1] == "layer4.2.bn3.num_batches_tracked"
    assert {"layer1.0.conv1.weight", "layer1.0.downsample.0.bias"} <= set(keys)
    assert not [k for k in keys if k.startswith("fc.")]


def test_resnet50x2_layout() -> None:
    model = _meta_backbone("resnet50x2")
    assert model.conv1.weight.shape == (128, 1, 7, 7, 7)
    assert model.conv1.stride == (2, 2, 2)
    assert model.conv1.padding == (3, 3, 3)
    assert not model.no_max_pool
    assert model.fc is None
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert model.layer4[2].conv3.out_channels == 4096
    assert model.layer1[0].downsample[0].bias is not None  # shortcut B with a biased conv


@pytest.mark.parametrize(
    ("name", "features"),
    [
        ("resnet50x2", 4096),
        ("resnet50", 2048),
        ("resnet18", 512),
        ("resnet10", 512),
        ("resnet10_w025", 128),
    ],
)
def test_output_shape(name: str, features: int) -> None:
    assert backbone_output_dim(name) == features
    model = _meta_backbone(name)
    with torch.device("meta"):
        out = model(torch.empty(3, 1, 50, 50, 50))
    assert out.shape == (3, features)


def test_backbone_names() -> None:
    assert BACKBONES == ("resnet50x2", "resnet50", "resnet18", "resnet10", "resnet10_w025")


@pytest.mark.parametrize("side", [16, 33, 50])
def test_tiny_backbone_runs_on_cpu(side: int) -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet10_w025")
    out = model(torch.randn(2, 1, side, side, side))
    assert out.shape == (2, 128)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert model.conv1.weight.grad is not None


def test_same_seed_same_weights() -> None:
    weights = []
    for _ in range(2):
        torch.manual_seed(7)
        weights.append(build_backbone("resnet10_w025").state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'.*resnet50x2"):
        build_backbone("resnet51")
    with pytest.raises(ValueError, match="unknown backbone"):
        backbone_output_dim("vit")
