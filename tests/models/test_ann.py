"""ANN branch: feature taps, equivalence with torchvision's ResNet, and safe local weight loading."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor

from respike_nm.models.ann import (
    ARCHS,
    ResNetBackbone,
    WeightsError,
    _build_scaled,
    create_ann_backbone,
)

EXECUTED: list[str] = []  # set by Payload if a checkpoint's pickle were ever run


def _record_execution() -> str:
    EXECUTED.append("payload ran")
    return "payload"


class Payload:
    """An arbitrary object: unpickling it without weights_only would call _record_execution."""

    def __reduce__(self):
        return (_record_execution, ())


def random_torchvision_resnet18(seed: int = 0) -> torchvision.models.ResNet:
    """Random torchvision ResNet-18 in eval mode, with random BN statistics so eval BN is no identity."""
    torch.manual_seed(seed)
    tv = torchvision.models.resnet18(weights=None)
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return tv.eval()


def head_logits(backbone: ResNetBackbone, fc: torch.nn.Linear, x: Tensor) -> Tensor:
    """Stage-4 features, global-average-pooled, through a torchvision classifier: ``[N, classes]``."""
    return fc(backbone.eval()(x)[-1].mean(dim=(2, 3)))


def frames(n: int = 2, h: int = 64, w: int = 96) -> Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("arch", "width", "channels"), [
    ("resnet18", 1.0, (64, 128, 256, 512)),
    ("resnet50", 1.0, (256, 512, 1024, 2048)),
    ("resnet18", 0.25, (16, 32, 64, 128)),
    ("resnet50", 0.25, (64, 128, 256, 512)),
])
@pytest.mark.parametrize(("h", "w"), [(64, 96), (37, 53)])
def test_feature_maps_match_feature_info(arch, width, channels, h, w):
    model = create_ann_backbone(arch, width).eval()
    assert model.feature_info.channels == channels
    assert model.feature_info.strides == (4, 8, 16, 32)
    with torch.no_grad():
        feats = model(frames(2, h, w))
    assert len(feats) == 4
    for f, c, s in zip(feats, model.feature_info.channels, model.feature_info.strides, strict=True):
        assert tuple(f.shape) == (2, c, math.ceil(h / s), math.ceil(w / s))


def test_rejects_clip_layout():
    with pytest.raises(ValueError, match=r"B\*G"):
        create_ann_backbone("resnet18", 0.25)(torch.zeros(1, 2, 3, 32, 32))


def test_equals_torchvision_forward():
    tv = random_torchvision_resnet18()
    model = create_ann_backbone("resnet18")
    model.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = frames()
    with torch.no_grad():
        torch.testing.assert_close(head_logits(model, tv.fc, x), tv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_scaled_builder_reproduces_torchvision_topology(arch):
    """The reduced-width builder at width 1.0 has torchvision's exact tensor names and shapes."""
    tv = ARCHS[arch].torchvision_fn(weights=None).state_dict()
    ours = _build_scaled(ARCHS[arch], 1.0).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in tv.items() if not k.startswith("fc.")
    }


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_reduced_width_keeps_torchvision_names(arch):
    narrow = create_ann_backbone(arch, 0.25).state_dict()
    full = create_ann_backbone(arch).state_dict()
    assert narrow.keys() == full.keys()
    assert narrow["conv1.weight"].shape[0] == 16


@pytest.mark.parametrize(("arch", "expected"), [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_parameter_count_is_torchvision_minus_fc(arch, expected):
    """Published torchvision totals (11.69 M / 25.56 M) minus the 1000-way fc, cross-checked live."""
    tv = ARCHS[arch].torchvision_fn(weights=None)
    tv_total = sum(p.numel() for p in tv.parameters())
    fc = sum(p.numel() for p in tv.fc.parameters())
    ours = sum(p.numel() for p in create_ann_backbone(arch).parameters())
    assert tv_total == expected
    assert ours == tv_total - fc


# -- weight files -------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_round_trip_through_file(tmp_path, wrap):
    tv = random_torchvision_resnet18(seed=3)
    state = tv.state_dict()
    payload = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 7},
        "model": {"model": state},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "r18.pth"
    torch.save(payload, path)
    model = create_ann_backbone("resnet18", weights=str(path))
    x = frames()
    with torch.no_grad():
        torch.testing.assert_close(head_logits(model, tv.fc, x), tv(x), rtol=1e-5, atol=1e-5)


def test_accepts_pathlike_and_missing_num_batches_tracked(tmp_path):
    tv = random_torchvision_resnet18(seed=4)
    state = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old_style.pt"
    torch.save(state, path)
    model = create_ann_backbone("resnet18", weights=path)
    key = "layer3.1.bn2.running_var"
    torch.testing.assert_close(model.state_dict()[key], state[key])


def test_wrong_shape_names_tensor_and_shapes(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        create_ann_backbone("resnet18", weights=str(path))
    msg = str(err.value)
    assert "layer2.0.conv1.weight" in msg and "[128, 32, 3, 3]" in msg and "[128, 64, 3, 3]" in msg
    assert str(path) in msg


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer4.1.bn2.running_mean"]
    state["extra.weight"] = torch.zeros(5)
    path = tmp_path / "keys.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        create_ann_backbone("resnet18", weights=str(path))
    assert "missing layer4.1.bn2.running_mean [512]" in str(err.value)
    assert "unexpected extra.weight [5]" in str(err.value)


def test_random_bytes_name_the_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="garbage.pth"):
        create_ann_backbone("resnet18", weights=str(path))


def test_arbitrary_pickle_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    EXECUTED.clear()
    with pytest.raises(WeightsError, match="evil.pth"):
        create_ann_backbone("resnet18", weights=str(path))
    assert EXECUTED == []


def test_non_tensor_state_dict_is_refused(tmp_path):
    path = tmp_path / "numbers.pth"
    torch.save({"conv1.weight": 3}, path)
    with pytest.raises(WeightsError, match="non-tensor"):
        create_ann_backbone("resnet18", weights=str(path))


def test_missing_local_file(tmp_path):
    path = tmp_path / "nowhere" / "r18.pth"
    with pytest.raises(WeightsError, match="not found"):
        create_ann_backbone("resnet18", weights=str(path))


# -- torchvision names, resolved in the local torch.hub cache -----------------------------------


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert Path(torch.hub.get_dir()) == home / "hub"  # nothing has called torch.hub.set_dir
    return home


@pytest.mark.parametrize("name", ["ResNet18_Weights.IMAGENET1K_V1", "IMAGENET1K_V1"])
def test_torchvision_name_uses_local_cache_only(empty_torch_home, name):
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    expected = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsError) as err:
        create_ann_backbone("resnet18", weights=name)
    assert str(expected) in str(err.value) and url in str(err.value)
    assert not expected.exists()  # nothing was downloaded

    tv = random_torchvision_resnet18(seed=5)
    expected.parent.mkdir(parents=True)
    torch.save(tv.state_dict(), expected)
    model = create_ann_backbone("resnet18", weights=name)
    x = frames()
    with torch.no_grad():
        torch.testing.assert_close(head_logits(model, tv.fc, x), tv(x), rtol=1e-5, atol=1e-5)


def test_torchvision_name_of_other_arch_is_refused(empty_torch_home):
    with pytest.raises(WeightsError, match="ResNet18_Weights"):
        create_ann_backbone("resnet18", weights="ResNet50_Weights.IMAGENET1K_V2")


def test_unknown_torchvision_name_lists_valid(empty_torch_home):
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        create_ann_backbone("resnet18", weights="IMAGENET9K")


# -- argument validation ------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", "some/file.pth"])
def test_pretrained_needs_full_width(weights):
    with pytest.raises(WeightsError, match="width 1.0"):
        create_ann_backbone("resnet18", width=0.25, weights=weights)


def test_unknown_arch_lists_valid():
    with pytest.raises(ValueError, match="resnet18, resnet50") as err:
        create_ann_backbone("resnet10")
    assert not isinstance(err.value, WeightsError)


@pytest.mark.parametrize("width", [0.0, -0.5])
def test_non_positive_width(width):
    with pytest.raises(ValueError, match="positive"):
        create_ann_backbone("resnet18", width=width)
