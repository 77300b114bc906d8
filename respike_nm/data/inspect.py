"""Decode a clip, cut it as the model will see it, and summarise the decomposition."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from respike_nm.data.decompose import decompose
from respike_nm.data.records import ClipSpec, DecomposedClip
from respike_nm.data.sampling import eval_indices
from respike_nm.data.transforms import ClipTransform
from respike_nm.data.video import read_frames


@dataclass(frozen=True)
class ClipReport:
    """One inspected clip. ``residual_energy``: mean squared residual value (normalised units);
    ``residual_active``: fraction of residual values with magnitude above 0.1."""

    path: str
    frames: int  # frames that decoded
    fps: float
    width: int
    height: int
    codec: str
    key_frames: int
    residuals_per_key: int
    residual_energy: float
    residual_active: float
    header_frames: int = 0  # frames the container announces (0: it announces none)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def decompose_frames(frames: np.ndarray, spec: ClipSpec, transform=None) -> DecomposedClip:
    """The centre clip of ``uint8 [N, H, W, 3]`` frames, transformed for evaluation and decomposed
    (batch of one)."""
    idx = eval_indices(len(frames), ClipSpec(spec.frames, spec.stride, spec.sampling, spec.size))[0]
    clip = frames[np.minimum(idx, len(frames) - 1)]
    transform = transform or ClipTransform(spec.size, train=False, normalize=True)
    return decompose(transform(clip).unsqueeze(0), spec.stride)


def summarise(parts: DecomposedClip) -> tuple[float, float]:
    """``(residual_energy, residual_active)`` of a decomposed clip."""
    r = parts.residual.float()
    return float(r.pow(2).mean()), float((r.abs() > 0.1).float().mean())


def inspect_video(path, spec: ClipSpec) -> tuple[ClipReport, DecomposedClip]:
    """Decode all of ``path`` (raises :class:`VideoDecodeError`) and decompose its centre clip.

    The report warns when fewer frames decode than the container announces (a truncated or damaged
    file) and when the video is shorter than a clip (T frames), which training fills by repetition.
    """
    frames, meta = read_frames(path, short_side=spec.decode_short_side)
    header = meta.header_frames
    parts = decompose_frames(frames, spec)
    energy, active = summarise(parts)
    warnings = []
    if header > len(frames):
        warnings.append(f"only {len(frames)} of the {header} frames in its header decode "
                        "(truncated or damaged)")
    if len(frames) < spec.frames:
        warnings.append(f"{len(frames)} frame(s), fewer than a clip of T={spec.frames}")
    report = ClipReport(
        path=str(path), frames=len(frames), fps=round(meta.fps, 3), width=meta.width,
        height=meta.height, codec=meta.codec, key_frames=parts.key.shape[1],
        residuals_per_key=parts.residual.shape[2], residual_energy=round(energy, 6),
        residual_active=round(active, 6), header_frames=header, warnings=tuple(warnings),
    )
    return report, parts


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters become ``_``, at most 120 characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-120:]


def strip_name(path: str | Path) -> str:
    """The file name (no suffix) of ``path``'s PNG strip: the slug of its last three parts (class
    folder and file, readable), then a short hash of the whole path, so that paths the slug makes
    equal (``café.mp4``, ``cafè.mp4``) or that differ higher up get strips of their own."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=4).hexdigest()
    return f"{slug('_'.join(Path(path).parts[-3:]))}-{digest}"


def inspect_synthetic(n: int, spec: ClipSpec, out: Path | None = None) -> list[dict]:
    """Rows (and, into ``out``, PNG strips) for ``n`` synthetic-motion test clips, taken as the
    training pipeline takes them, at the generator's own resolution; the classes vary both factors."""
    from respike_nm.data.factory import DataSource, make_dataset
    from respike_nm.data.figures import save_strip
    from respike_nm.data.transforms import normalize

    source = DataSource("synthetic-motion")
    cfg = source.synthetic
    spec = replace(spec, size=cfg.height)  # the generator's own resolution: no crop, no resize
    ds, classes, _ = make_dataset(source, "test", spec, train=False)
    rows = []
    for i in range(min(n, len(classes))):
        cls = (i % cfg.appearances) * cfg.motions + i % cfg.motions  # vary both factors
        idx = next(j for j in range(len(ds)) if ds.label(j) == cls)
        parts = decompose(normalize(ds[idx].video), spec.stride)
        energy, active = summarise(parts)
        src = f"synthetic-motion:test:{idx} ({classes[cls]})"
        row = {"path": src, "frames": spec.frames, "fps": None, "width": cfg.width,
               "height": cfg.height, "codec": "synthetic", "key_frames": parts.key.shape[1],
               "residuals_per_key": parts.residual.shape[2], "residual_energy": round(energy, 6),
               "residual_active": round(active, 6)}
        if out:
            row["strip"] = str(save_strip(parts, out / f"{slug(f'synthetic_{classes[cls]}')}.png", title=src))
        rows.append(row)
    return rows
