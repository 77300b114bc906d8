"""Shared fixtures: tiny videos written with PyAV whose pixels the tests know exactly."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest


def frame_pattern(n: int, h: int, w: int) -> np.ndarray:
    """``uint8 [n, h, w, 3]``: frame t has value (7t + 3y + x) mod 256 in R, G = x, B = y."""
    t = np.arange(n)[:, None, None]
    y = np.arange(h)[None, :, None]
    x = np.arange(w)[None, None, :]
    r = (7 * t + 3 * y + x) % 256
    g = np.broadcast_to(x % 256, r.shape)
    b = np.broadcast_to(y % 256, r.shape)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "png",
                pts: list[int] | None = None, pix_fmt: str = "rgb24") -> Path:
    """Write ``uint8 [N, H, W, 3]`` frames. ``png`` in .mov is lossless, so decoding gives the
    exact pixels back. ``pts`` (in 1/fps units... of a 1/1000 time base) makes a variable rate."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = pix_fmt
        if pts is not None:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                vf.pts = pts[i]
                vf.time_base = fractions.Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture
def pattern_video(tmp_path) -> tuple[Path, np.ndarray]:
    frames = frame_pattern(20, 24, 32)
    return write_video(tmp_path / "pattern.mov", frames), frames


# A training config that runs in seconds on a CPU: 2 appearances x 2 motions at 32x32, few clips.
SMALL_TRAIN = ["data.size=32", "data.frames=8", "data.appearances=2", "data.motions=2",
               "data.train_per_class=6", "data.test_per_class=2", "model.ann_width=0.125",
               "model.snn_width=0.125", "train.batch_size=4", "train.warmup_epochs=0"]


def randomize(layer, g, gain: float = 2.5):
    """Random weights with a positive mean (so that spikes propagate) and BN statistics far from identity
    (``gain`` 2.5 keeps every layer of the tests' stacks spiking at 10-60 %)."""
    import torch

    conv, bn = layer.synapse.conv, layer.synapse.bn
    with torch.no_grad():
        fan_in = conv.weight[0].numel()
        conv.weight.copy_((torch.randn(conv.weight.shape, generator=g) + 0.3) * gain / fan_in ** 0.5)
        bn.running_mean.copy_(torch.randn(conv.out_channels, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(conv.out_channels, generator=g) * 1.5 + 0.5)
        bn.weight.copy_(torch.rand(conv.out_channels, generator=g) * 0.8 + 0.6)
        bn.bias.copy_(torch.randn(conv.out_channels, generator=g) * 0.3)
    return layer


def liven_run(run: Path, gain: float = 2.5) -> None:
    """Give a short run's SNN layers random weights and BN statistics (every layer spiking 10-60 %; a
    one-epoch SNN is silent after its first layers), in its checkpoint: a Lava/PyTorch comparison on
    it tests every layer, where one on silent layers would pass whatever the export held."""
    import torch

    from respike_nm.models.snn import SpikingConv
    from respike_nm.train.checkpoint import load_checkpoint, save_checkpoint
    from respike_nm.train.run import load_run

    model, _, _ = load_run(run)
    g = torch.Generator().manual_seed(0)
    for layer in model.snn.modules():
        if isinstance(layer, SpikingConv):
            randomize(layer, g, gain)
    ck = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint(run / "checkpoint.pt", ck.__class__(**{**ck.__dict__, "model": model.state_dict()}))
