"""Pictures of the data: a strip of key frames beside their residual frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from respike_nm.atomic import atomic_file
from respike_nm.data.records import DecomposedClip
from respike_nm.data.transforms import IMAGENET_STD, denormalize


def save_strip(parts: DecomposedClip, out: str | Path, title: str = "") -> Path:
    """Write a PNG: one row per key-frame group, the key frame (RGB) then its s-1 residual frames.

    Residuals are shown as signed luminance change on a diverging map (red brighter, blue darker,
    white unchanged), scaled to the clip's largest change, so static regions read as white.
    """
    key = denormalize(parts.key[0]).permute(0, 2, 3, 1).numpy()  # [G, H, W, 3]
    std = np.asarray(IMAGENET_STD).reshape(1, 1, 1, 1, 3)
    res = parts.residual[0].permute(0, 1, 3, 4, 2).numpy() * std  # [G, s-1, H, W, 3], in [-1, 1]
    lum = res @ np.array([0.299, 0.587, 0.114])
    scale = max(float(np.abs(lum).max()), 1e-6)
    g, r = lum.shape[:2]
    fig = Figure(figsize=(1.6 * (r + 1), 1.6 * g + 0.4))
    axes = fig.subplots(g, r + 1, squeeze=False)
    for k in range(g):
        axes[k, 0].imshow(key[k])
        axes[k, 0].set_ylabel(f"group {k}", fontsize=7)
        for j in range(r):
            axes[k, j + 1].imshow(lum[k, j], cmap="RdBu_r", vmin=-scale, vmax=scale)
    for j, name in enumerate(["key frame"] + [f"residual {j + 1}" for j in range(r)]):
        axes[0, j].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out))


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=110)
    return out
