"""Key/residual decomposition of a clip (ReSpike, docs/method.md).

A clip of T frames is cut into T/s groups of s frames. The first frame of each group is its key
frame (ANN input); the other s-1 are residual frames ``R[k, j] = F[k*s + j] - F[k*s]``, the
difference to the group's key frame (SNN input, one time step each). Applied after normalisation.
"""

from __future__ import annotations

import torch

from respike_nm.data.records import DecomposedClip, check_divisible


def decompose(video: torch.Tensor, stride: int) -> DecomposedClip:
    """Split ``video [B, T, C, H, W]`` into key ``[B, T/s, C, H, W]`` and residual
    ``[B, T/s, s-1, C, H, W]`` frames."""
    if video.dim() != 5:
        raise ValueError(f"expected a video batch [B, T, C, H, W], got shape {tuple(video.shape)}")
    b, t, c, h, w = video.shape
    check_divisible(t, stride)
    groups = video.reshape(b, t // stride, stride, c, h, w)
    key = groups[:, :, 0]
    residual = groups[:, :, 1:] - key.unsqueeze(2)
    return DecomposedClip(key=key.contiguous(), residual=residual.contiguous())


def recompose(clip: DecomposedClip) -> torch.Tensor:
    """Inverse of :func:`decompose`: ``[B, T, C, H, W]`` from key and residual frames."""
    key, residual = clip
    frames = torch.cat([key.unsqueeze(2), residual + key.unsqueeze(2)], dim=2)
    b, g, s, c, h, w = frames.shape
    return frames.reshape(b, g * s, c, h, w)
