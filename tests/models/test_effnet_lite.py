"""EfficientNet-Lite0 backbone: the packaged ImageNet weights, the taps against the package's own
network, ImageNet plausibility on real frames, and exact MAC counts against ptflops and brute force."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

from respike_nm.data.transforms import ClipTransform, normalize
from respike_nm.energy.counters import count_ops, totals
from respike_nm.models.ann import WeightsError, create_ann_backbone
from respike_nm.models.effnet_lite import packaged_weights


@pytest.fixture(scope="module")
def lite():
    return create_ann_backbone("efficientnet_lite0", weights="imagenet").eval()


@pytest.fixture(scope="module")
def package_net():
    """The package's own complete network with the same file, as its README loads it."""
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    net.load_state_dict(torch.load(packaged_weights(), weights_only=True), strict=True)
    return net.eval()


def test_packaged_weights_load_every_key_and_match_the_published_size(lite):
    # 4.65 M parameters with the 1000-class classifier (published: 4.7 M); 1280 * 1000 + 1000 dropped
    assert sum(p.numel() for p in lite.parameters()) + 1280 * 1000 + 1000 == 4_652_008
    assert lite.feature_info.channels == (24, 40, 112, 1280)
    assert lite.feature_info.strides == (4, 8, 16, 32)


def test_taps_and_head_reproduce_the_package_network(lite, package_net):
    """Our taps fed to the package's classifier give the package's logits; each tap has the shape
    its stride says and equals the package's block output there (hooks on its blocks)."""
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    seen = {}
    handles = [b.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o))
               for i, b in enumerate(package_net._blocks)]
    with torch.no_grad():
        ref = package_net((pixels.float() - 127) / 128)  # TensorFlow Lite's input normalisation
        feats = lite(normalize(pixels))
    for h in handles:
        h.remove()
    for f, c, s in zip(feats, lite.feature_info.channels, lite.feature_info.strides, strict=True):
        assert f.shape == (2, c, -(-96 // s), -(-128 // s))
    for f, i in zip(feats[:3], lite.taps, strict=True):
        torch.testing.assert_close(f, seen[i], rtol=1e-4, atol=1e-4)
    logits = package_net._fc(feats[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)


def test_reduced_width_and_bad_weights_are_refused(tmp_path):
    small = create_ann_backbone("efficientnet_lite0", width=0.5)
    assert small.feature_info.channels[0] < 24 and small.feature_info.channels[-1] == 1280  # head fixed
    with pytest.raises(WeightsError, match="width 1.0"):
        create_ann_backbone("efficientnet_lite0", width=0.5, weights="imagenet")
    with pytest.raises(WeightsError, match="not found"):
        create_ann_backbone("efficientnet_lite0", weights=str(tmp_path / "none.pth"))
    other = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    with pytest.raises(WeightsError, match="do not fit"):
        create_ann_backbone("efficientnet_lite0", weights=str(other))


def test_dense_macs_equal_ptflops_and_the_published_size(lite):
    from ptflops import get_model_complexity_info

    macs = {}
    for side in (224, 96):
        with count_ops(lite) as log:
            lite(torch.randn(1, 3, side, side))
        macs[side] = totals(list(log.layers.values())).Dense_MACs
        ref, _ = get_model_complexity_info(lite, (3, side, side), as_strings=False, backend="aten",
                                           print_per_layer_stat=False, verbose=False)
        assert macs[side] == ref  # no convolution has a bias: aten.convolution counts exactly the MACs
    # published (TensorFlow release table): 407 M "MACs" for Lite0 at 224, a figure that also counts
    # the classifier (1.28 M) and element-wise work; the convolutions alone are within 6 % below it
    assert 0.94 * 407e6 < macs[224] + 1280 * 1000 < 407e6


def test_effective_macs_of_a_same_padded_depthwise_conv_by_brute_force():
    """Depthwise k5 s2 with TensorFlow 'same' padding (asymmetric: the extra row/column at the end)
    on a sparse input: effective MACs = pairs (output, tap) whose input is nonzero, counted by loops."""
    c, h, w, k, s = 3, 7, 6, 5, 2
    conv = Conv2dDynamicSamePadding(c, c, k, stride=s, groups=c, bias=False)
    torch.manual_seed(1)
    x = (torch.rand(1, c, h, w) < 0.3).float() * torch.randn(1, c, h, w)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, v):
            return self.conv(v)

    with count_ops(Net()) as log:
        out = Net()(x)
    oh, ow = out.shape[-2:]
    assert (oh, ow) == (-(-h // s), -(-w // s))
    pad_h, pad_w = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
    top, left = pad_h // 2, pad_w // 2
    count = 0
    for ch in range(c):
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(k):
                    for kx in range(k):
                        y, xx = oy * s - top + ky, ox * s - left + kx
                        count += 0 <= y < h and 0 <= xx < w and bool(x[0, ch, y, xx] != 0)
    entry = log.layers["conv"]
    assert entry.effective_macs == count
    assert entry.dense_macs == c * oh * ow * k * k


ROOT = os.environ.get("RESPIKE_REALDATA")
# clips whose key frame shows an ImageNet object plainly: class folder -> acceptable top-5 labels
OBJECTS = {"PlayingGuitar": {"electric guitar", "acoustic guitar"}, "SoccerJuggling": {"soccer ball"},
           "abseiling": {"cliff", "alp"}, "CricketShot": {"ballplayer"},
           "Biking": {"unicycle", "bicycle-built-for-two", "mountain bike", "tricycle"}}


@pytest.mark.realdata
@pytest.mark.skipif(not ROOT or not (Path(ROOT) / "MANIFEST.tsv").is_file(),
                    reason="RESPIKE_REALDATA does not name the real-clip folder")
def test_imagenet_predictions_are_plausible_on_real_frames(lite, package_net):
    """The middle frame of clips showing a guitar, a football, a bicycle, a cliff and a batsman: the
    ImageNet classifier on our features names the object in its top 5 (a random network would do
    so for about 5 of 1000 labels each); the same frames through a randomly initialised trunk don't."""
    cats = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    rows = [r for r in csv.DictReader(open(Path(ROOT) / "MANIFEST.tsv"), delimiter="\t")
            if r["class"] in OBJECTS]
    picked = {r["class"]: r["path"] for r in rows}  # one clip per class
    assert set(picked) == set(OBJECTS)
    crop = ClipTransform(224, train=False)
    random_net = create_ann_backbone("efficientnet_lite0").eval()
    hits = random_hits = 0
    for cls, rel in sorted(picked.items()):
        with av.open(str(Path(ROOT) / rel), metadata_errors="ignore") as c:
            decoded = zip(range(40), c.decode(video=0), strict=False)
            frames = [f.to_ndarray(format="rgb24") for _, f in decoded]
        frame = np.asarray(frames[len(frames) // 2])[None]
        x = normalize(crop(frame))  # [1, 3, 224, 224]: centre square, resized, as evaluation does
        with torch.no_grad():
            top = package_net._fc(lite(x)[-1].mean(dim=(2, 3)))[0].topk(5).indices
            top_random = package_net._fc(random_net(x)[-1].mean(dim=(2, 3)))[0].topk(5).indices
        hits += bool({cats[i] for i in top} & OBJECTS[cls])
        random_hits += bool({cats[i] for i in top_random} & OBJECTS[cls])
    assert hits == len(OBJECTS) and random_hits <= 1
