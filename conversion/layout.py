"""Layout changes of the deployment side; every permute in ``conversion`` goes through one of these.

PyTorch code keeps SLAYER's ``[N, C, H, W, T]`` (one clip per ``N``). Lava keeps ``(x, y, c, t)``:
``x`` is the width axis, ``y`` the height axis, channels last, and time last; several clips run back
to back on one Lava time axis (clip ``k``, step ``t`` at Lava step ``k * T + t``).
"""

from __future__ import annotations

import numpy as np


def chw_to_xyc(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """A SLAYER shape ``(C, H, W)`` as Lava's ``(x, y, c) = (W, H, C)``."""
    c, h, w = shape
    return w, h, c


def xyc_to_chw(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Inverse of :func:`chw_to_xyc`."""
    x, y, c = shape
    return c, y, x


def clips_to_xyct(clips: np.ndarray) -> np.ndarray:
    """SLAYER clips ``[N, C, H, W, T]`` -> one Lava stream ``(x, y, c, N * T)``, clip after clip."""
    n, c, h, w, t = clips.shape
    return np.ascontiguousarray(clips.transpose(3, 2, 1, 0, 4)).reshape(w, h, c, n * t)


def xyct_to_clips(stream: np.ndarray, clips: int, steps: int) -> np.ndarray:
    """Inverse of :func:`clips_to_xyct`: ``(x, y, c, clips * steps)`` -> ``[clips, C, H, W, steps]``."""
    x, y, c, total = stream.shape
    if total != clips * steps:
        raise ValueError(f"a stream of {total} steps is not {clips} clips of {steps} steps")
    return stream.reshape(x, y, c, clips, steps).transpose(3, 2, 1, 0, 4)
