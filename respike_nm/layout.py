"""Named tensor layout changes; every permute in the project goes through one of these. And the
one formula for a convolution's output size (:func:`conv_out`), which the exporter, the checks of
exported files, the mapper and the energy counter share.

Video code uses ``T, C, H, W`` per clip (``B, T, C, H, W`` batched), decoders produce
``T, H, W, C`` (channels last, as PyAV and image files do), SLAYER code uses
``N, C, H, W, T``.
"""

from __future__ import annotations

import torch


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length along one axis of a zero-padded convolution (PyTorch's, SLAYER's and netx's):
    ``(size + 2 padding - dilation (kernel - 1) - 1) // stride + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def thwc_to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, C] -> [T, C, H, W]`` (a view)."""
    return frames.permute(0, 3, 1, 2)


def tchw_to_thwc(frames: torch.Tensor) -> torch.Tensor:
    """``[T, C, H, W] -> [T, H, W, C]`` (a view)."""
    return frames.permute(0, 2, 3, 1)


def btchw_to_nchwt(video: torch.Tensor) -> torch.Tensor:
    """Video layout ``[B, T, C, H, W]`` to SLAYER's ``[N, C, H, W, T]``."""
    return video.permute(0, 2, 3, 4, 1)


def nchwt_to_steps(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W, T]`` -> ``[N * T, C, H, W]``: every time step as its own image (for ``conv2d``)."""
    n, c, h, w, t = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w)


def steps_to_nchwt(y: torch.Tensor, steps: int) -> torch.Tensor:
    """Inverse of :func:`nchwt_to_steps`: ``[N * T, C, H, W]`` -> ``[N, C, H, W, T]``."""
    nt, c, h, w = y.shape
    return y.reshape(nt // steps, steps, c, h, w).permute(0, 2, 3, 4, 1)
