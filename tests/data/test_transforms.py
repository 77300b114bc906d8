"""Clip transforms: one crop for all frames, eval geometry equal to Resize + CenterCrop."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2 as T

from respike_nm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, denormalize


def _clip(n=4, h=60, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_eval_equals_torchvision_resize_then_centre_crop():
    # the 256 -> 224 convention: Resize(S * 8/7) then CenterCrop(S); here S = 28, short side 64
    clip = _clip(h=64, w=96)
    ref = T.Compose([T.Resize(32, antialias=True), T.CenterCrop(28)])
    expected = ref(torch.as_tensor(clip).permute(0, 3, 1, 2)).float() / 255
    got = ClipTransform(28, train=False)(clip)
    assert got.shape == (4, 3, 28, 28) and got.dtype == torch.uint8
    got = got.float() / 255
    # one resized crop vs resize-then-crop: same geometry, interpolation differs at the borders
    assert (got - expected).abs().mean() < 0.02


def test_normalisation_uses_imagenet_statistics():
    clip = np.full((2, 16, 16, 3), 255, np.uint8)
    got = ClipTransform(16, train=False, normalize=True)(clip)
    for c in range(3):
        expected = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        torch.testing.assert_close(got[:, c], torch.full((2, 16, 16), expected))
    torch.testing.assert_close(denormalize(got), torch.ones_like(got))


def test_train_crop_and_flip_are_the_same_for_every_frame():
    frame = _clip(n=1)[0]
    clip = np.stack([frame] * 6)
    tf = ClipTransform(24, train=True)
    for seed in range(10):
        out = tf(clip, seed=seed)
        assert all(torch.equal(out[0], out[t]) for t in range(1, 6))


def test_train_transform_is_seeded_and_varies_with_the_seed():
    clip = _clip()
    tf = ClipTransform(24, train=True)
    assert torch.equal(tf(clip, seed=3), tf(clip, seed=3))
    outs = {tf(clip, seed=s).sum().item() for s in range(10)}
    assert len(outs) > 5


def test_train_flip_mirrors_the_frames():
    clip = _clip(h=32, w=32)
    no_flip = ClipTransform(32, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    flip = ClipTransform(32, train=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    ref = no_flip(clip, seed=0)
    seen = {torch.equal(flip(clip, seed=s), ref.flip(-1)) for s in range(12)}
    assert seen == {True, False}  # some seeds flip, some do not


def test_train_seed_means_torchvisions_crop_under_torch_manual_seed():
    """``seed`` gives the crop and flip that torchvision's RandomResizedCrop.get_params and one
    ``torch.rand`` draw give after ``torch.manual_seed(seed)`` (so runs seeded before keep their
    data), and the caller's random state is left as it was."""
    from respike_nm.data.transforms import resize_uint8

    clip = _clip(h=48, w=64)
    tf = ClipTransform(24, train=True)
    video = torch.as_tensor(clip).permute(0, 3, 1, 2)
    for seed in range(8):
        torch.manual_seed(1000 + seed)
        before = torch.rand(3)
        torch.manual_seed(1000 + seed)
        got = tf(clip, seed=seed)
        assert torch.equal(torch.rand(3), before)  # the global generator untouched
        torch.manual_seed(seed)
        top, left, h, w = T.RandomResizedCrop.get_params(video, tf.scale, tf.ratio)
        flip = bool(torch.rand(()) < 0.5)
        expected = resize_uint8(video[:, :, top:top + h, left:left + w].contiguous(), 24)
        assert torch.equal(got, expected.flip(-1) if flip else expected)
