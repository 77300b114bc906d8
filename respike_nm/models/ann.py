"""ReSpike's ANN branch: a 2D ResNet-18/50 trunk applied to every key frame (docs/method.md), or
EfficientNet-Lite0 with ImageNet weights from the package registry (:mod:`.effnet_lite`).

The four stage outputs (strides 4/8/16/32 relative to the input) are the context for fusion; the
last one also goes to the head. The trunk is torchvision's own (``conv1``, ``bn1``, ``layer1..4``
under the same names), so a torchvision state dict loads with ``strict=True`` once its ``fc.*``
keys are dropped. A reduced-width variant (for CPU work) has the same topology with fewer channels.

Pretrained weights are read only from local files: a path, or a torchvision weight name resolved
to the file torch.hub would have cached. Nothing is ever downloaded, and checkpoints are read with
``weights_only=True`` so that loading a file can never run code from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from respike_nm.errors import UsageError
from respike_nm.models.backbone import FeatureInfo, WeightsError, read_state_dict, state_dict_mismatches

log = logging.getLogger(__name__)

Block = type[BasicBlock] | type[Bottleneck]
WeightsSource = str | os.PathLike | None

STEM_STRIDE = 4  # conv1 (stride 2) then max-pool (stride 2)
BASE_PLANES = (64, 128, 256, 512)  # torchvision's planes per stage at width 1.0
STAGE_STRIDES = (1, 2, 2, 2)  # stride of each stage's first block
MIN_WIDTH = 8
WIDTH_DIVISOR = 8
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
HEAD_PREFIX = "fc."


@dataclass(frozen=True)
class ArchSpec:
    """One ResNet variant: block type, blocks per stage, torchvision constructor and weights enum."""

    block: Block
    layers: tuple[int, int, int, int]
    torchvision_fn: Callable[..., ResNet]
    weights_enum: str


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2), torchvision.models.resnet18, "ResNet18_Weights"),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3), torchvision.models.resnet50, "ResNet50_Weights"),
}


class ResNetBackbone(nn.Module):
    """ResNet trunk without pooling and classifier; returns the four stage outputs.

    Input ``[N, 3, H, W]`` (N = clips x key frames, flattened by the caller); output four maps
    ``[N, C_i, ceil(H / s_i), ceil(W / s_i)]`` with ``C_i, s_i`` from :attr:`feature_info`.
    """

    feature_info: FeatureInfo

    def __init__(self, conv1: nn.Conv2d, bn1: nn.BatchNorm2d, stages: Sequence[nn.Sequential]):
        super().__init__()
        if len(stages) != 4:
            raise ValueError(f"a ResNet trunk has 4 stages, got {len(stages)}")
        self.conv1, self.bn1 = conv1, bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_info = _feature_info(stages)

    @property
    def stages(self) -> tuple[nn.Sequential, ...]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` -> four maps ``[N, C_i, H / s_i, W / s_i]`` (sizes rounded up)."""
        if x.dim() != 4 or x.shape[1] != self.conv1.in_channels:
            raise ValueError(
                f"expected frames [N, {self.conv1.in_channels}, H, W], got {list(x.shape)} "
                "(flatten [B, G, C, H, W] key frames to [B*G, C, H, W] first)"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        """Same as :meth:`forward_features`."""
        return self.forward_features(x)


ANN_ARCHS = ("resnet18", "resnet50", "efficientnet_lite0")


def create_ann_backbone(arch: str = "resnet18", width: float = 1.0,
                        weights: WeightsSource = None, in_channels: int = 3) -> nn.Module:
    """Build the ANN branch: a module returning its four stage outputs, with ``feature_info``.

    ResNets: ``width`` scales every channel count (rounded to a multiple of 8, at least 8);
    ``weights`` is None (torchvision's random init), a local checkpoint path, or a torchvision weight
    name (``"ResNet18_Weights.IMAGENET1K_V1"`` or ``"IMAGENET1K_V1"``) looked up in the torch.hub
    cache. ``efficientnet_lite0``: :func:`.effnet_lite.create_lite_backbone` (``weights="imagenet"``
    reads the file of the registry package). ``in_channels``: channels of the key frames; other than
    3, a ResNet's first convolution takes them (random init: pretrained weights are for RGB).
    """
    if in_channels != 3 and (weights is not None or arch == "efficientnet_lite0"):
        raise WeightsError(f"{arch} with {weights or 'its weights'}: pretrained ANN trunks take 3-channel "
                           f"(RGB) frames, not {in_channels}; use a ResNet without ann_weights")
    if arch == "efficientnet_lite0":
        from respike_nm.models.effnet_lite import create_lite_backbone

        return create_lite_backbone(arch, width, weights)
    spec = arch_spec(arch)
    if width <= 0:
        raise UsageError(f"width must be positive, got {width}")
    if weights is not None and width != 1.0:
        raise WeightsError(
            f"pretrained weights {weights!r} need width 1.0, got width {width}: a reduced-width "
            "network has differently shaped tensors, so no pretrained state dict fits it"
        )
    model = _from_torchvision(spec) if width == 1.0 else _build_scaled(spec, width)
    if in_channels != 3:
        c = model.conv1
        model.conv1 = nn.Conv2d(in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
    if weights is not None:
        path = resolve_weights_path(weights, arch)
        load_backbone_weights(model, path)
        log.info("loaded %s weights from %s", arch, path)
    return model


def arch_spec(arch: str) -> ArchSpec:
    """The :class:`ArchSpec` of ``arch``; ValueError naming the valid ones otherwise."""
    if arch not in ARCHS:
        raise UsageError(f"unknown ANN arch {arch!r}; valid: {', '.join(ANN_ARCHS)}")
    return ARCHS[arch]


def scaled_planes(width: float) -> tuple[int, ...]:
    """Planes per stage at ``width``: ``64 * 2**i * width`` rounded to a multiple of 8, at least 8."""
    return tuple(max(MIN_WIDTH, WIDTH_DIVISOR * round(p * width / WIDTH_DIVISOR)) for p in BASE_PLANES)


def _from_torchvision(spec: ArchSpec) -> ResNetBackbone:
    tv = spec.torchvision_fn(weights=None)
    return ResNetBackbone(tv.conv1, tv.bn1, [tv.layer1, tv.layer2, tv.layer3, tv.layer4])


def _build_scaled(spec: ArchSpec, width: float) -> ResNetBackbone:
    """Same topology as torchvision's ResNet with scaled planes, initialised as torchvision does."""
    planes = scaled_planes(width)
    conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
    bn1 = nn.BatchNorm2d(planes[0])
    stages, inplanes = [], planes[0]
    for p, n, s in zip(planes, spec.layers, STAGE_STRIDES, strict=True):
        stages.append(_make_stage(spec.block, inplanes, p, n, s))
        inplanes = p * spec.block.expansion
    model = ResNetBackbone(conv1, bn1, stages)
    _torchvision_init(model)
    return model


def _make_stage(block: Block, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's ``ResNet._make_layer`` (groups 1, no dilation) with explicit channel counts."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _torchvision_init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _feature_info(stages: Sequence[nn.Sequential]) -> FeatureInfo:
    channels, strides, stride = [], [], STEM_STRIDE
    for stage in stages:
        stride *= stage[0].stride
        last = stage[-1]
        channels.append((last.conv3 if isinstance(last, Bottleneck) else last.conv2).out_channels)
        strides.append(stride)
    return FeatureInfo(tuple(channels), tuple(strides))


# ---------------------------------------------------------------------------------------------
# Weights: resolve a source to a local file, read it safely, match it to the backbone.


def resolve_weights_path(weights: str | os.PathLike, arch: str) -> Path:
    """Local checkpoint file for ``weights`` (a path or a torchvision weight name of ``arch``)."""
    text = os.fspath(weights)
    if _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    return torchvision_cache_path(text, arch)


def _looks_like_path(text: str) -> bool:
    return os.path.exists(text) or os.sep in text or "/" in text or text.endswith(CHECKPOINT_SUFFIXES)


def torchvision_cache_path(name: str, arch: str) -> Path:
    """Where torch.hub caches torchvision weight ``name``; WeightsError (with the URL) if absent.

    Never downloads: fetch the file beforehand (e.g. ``torchvision.models.get_weight(name)
    .get_state_dict()`` on a networked machine, or any download of the URL into that folder).
    """
    weight = _torchvision_weight(name, arch)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weight.url)
    if not path.is_file():
        raise WeightsError(
            f"torchvision weights {weight} are not in the local cache: missing file {path}; "
            f"download {weight.url} to that path (no download is attempted at run time)"
        )
    return path


def _torchvision_weight(name: str, arch: str) -> torchvision.models.WeightsEnum:
    enum_name = arch_spec(arch).weights_enum
    full = name if "." in name else f"{enum_name}.{name}"
    try:
        weight = torchvision.models.get_weight(full)
    except (KeyError, ValueError) as e:
        valid = ", ".join(m.name for m in torchvision.models.get_model_weights(arch))
        raise WeightsError(
            f"{name!r} is neither an existing file nor a torchvision weight name of {arch} "
            f"({enum_name}: {valid})"
        ) from e
    if type(weight).__name__ != enum_name:
        raise WeightsError(f"torchvision weights {weight} do not belong to {arch} (expected {enum_name}.*)")
    return weight


def load_backbone_weights(model: ResNetBackbone, path: str | os.PathLike) -> None:
    """Load a checkpoint file into ``model`` strictly (``fc.*`` dropped, ``module.`` stripped)."""
    state = backbone_state_dict(read_state_dict(path))
    own = model.state_dict()
    problems = state_dict_mismatches(own, state)
    if problems:
        raise WeightsError(f"weights in {path} do not fit the backbone:\n  " + "\n  ".join(problems))
    state |= {k: v for k, v in own.items() if k not in state}  # only num_batches_tracked can be left
    model.load_state_dict(state, strict=True)


def backbone_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip a ``module.`` prefix (DataParallel) and drop the classifier's ``fc.*`` tensors."""
    stripped = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in stripped.items() if not k.startswith(HEAD_PREFIX)}
