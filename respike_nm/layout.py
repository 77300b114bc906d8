"""Named tensor layout changes; every permute in the project goes through one of these.

Video code uses ``T, C, H, W`` per clip (``B, T, C, H, W`` batched), decoders produce
``T, H, W, C`` (channels last, as PyAV and image files do), SLAYER code uses
``N, C, H, W, T``.
"""

from __future__ import annotations

import torch


def thwc_to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, C] -> [T, C, H, W]`` (a view)."""
    return frames.permute(0, 3, 1, 2)


def tchw_to_thwc(frames: torch.Tensor) -> torch.Tensor:
    """``[T, C, H, W] -> [T, H, W, C]`` (a view)."""
    return frames.permute(0, 2, 3, 1)


def btchw_to_nchwt(video: torch.Tensor) -> torch.Tensor:
    """Video layout ``[B, T, C, H, W]`` to SLAYER's ``[N, C, H, W, T]``."""
    return video.permute(0, 2, 3, 4, 1)
