"""The backbone family: the paper's layout, parameter count and key names; every member's shape."""

from __future__ import annotations

import copy

import pytest
import torch

from fmcib_core.models import BACKBONES, backbone_output_dim, build_backbone
from fmcib_core.models.backbone import ChannelsLastMaxPool3d, empty_backbone


def test_resnet50x2_parameter_count_and_keys() -> None:
    model = empty_backbone("resnet50x2")
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
    model = empty_backbone("resnet50x2")
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
    model = empty_backbone(name)
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


def _with_plain_max_pool(model: torch.nn.Module) -> torch.nn.Module:
    plain = copy.deepcopy(model)
    pool = model.maxpool
    plain.maxpool = torch.nn.MaxPool3d(
        pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode
    )
    return plain


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_channels_last_max_pool_changes_no_value_and_no_gradient(mode: str) -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet10_w025")
    assert isinstance(model.maxpool, ChannelsLastMaxPool3d)
    plain = _with_plain_max_pool(model)
    x = torch.randn(3, 1, 21, 18, 23)  # odd sides: windows cut by the padding on every axis
    outs, grads = [], []
    for net in (plain, model):
        getattr(net, mode)()
        y = net(x)
        y.pow(2).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad for p in net.parameters()])
        with torch.no_grad():
            assert torch.equal(net(x), y.detach())
    assert torch.equal(*outs)
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_channels_last_max_pool_gradient_reaches_the_input() -> None:
    pool = ChannelsLastMaxPool3d(3, 2, 1)
    x = torch.randn(2, 4, 9, 8, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pool, (x,))
    reference = torch.nn.MaxPool3d(3, 2, 1)
    assert torch.equal(pool(x), reference(x))
    channels_last = x.detach().contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(pool(channels_last), reference(channels_last))


def test_empty_backbone_has_the_layout_and_takes_weights() -> None:
    torch.manual_seed(1)
    trained = build_backbone("resnet10_w025").state_dict()
    empty = empty_backbone("resnet10_w025")
    state = empty.state_dict()
    assert list(state) == list(trained)
    assert all(t.is_meta and t.shape == trained[k].shape for k, t in state.items())
    empty.load_state_dict(trained, strict=True, assign=True)
    assert all(torch.equal(t, trained[k]) for k, t in empty.state_dict().items())
    assert sum(p.numel() for p in empty_backbone("resnet50x2").parameters()) == 184_477_824
    # the initialisers are skipped only while it builds, and only on meta tensors
    assert build_backbone("resnet10_w025").conv1.weight.std() > 0
