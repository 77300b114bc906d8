"""Spatial transforms for clips: one crop for every frame of a clip, ImageNet normalisation.

Input ``uint8 [T, H, W, 3]`` as decoded; output ``uint8 [T, 3, S, S]``. Normalisation to
``float32`` is a separate step (:func:`normalize`) applied to whole batches where the model runs:
DataLoader workers then pass 4x fewer bytes and skip the float arithmetic.
Training: RandomResizedCrop (torchvision's parameter sampler) + horizontal flip with p = 0.5.
Evaluation: Resize(short side to S / f) + CenterCrop(S), done as one resized crop of the central
square of side ``short * f``, which is the same geometry; ``f`` = 7/8 is the 256 -> 224
convention, ``f`` = 1 the published code's Resize(S) + CenterCrop(S) (``data.eval_resize``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as F

from respike_nm.errors import UsageError
from respike_nm.layout import thwc_to_tchw

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 7 / 8  # CenterCrop(224) after Resize(256)


@dataclass(frozen=True)
class ClipTransform:
    """Crop/flip a clip ``uint8 [T, H, W, 3]`` into ``uint8 [T, 3, S, S]`` (``float32``,
    normalised, with ``normalize=True``).

    ``train`` picks the augmenting variant; ``scale``/``ratio`` are RandomResizedCrop's area and
    aspect-ratio ranges; ``flip`` can be turned off for data whose motion direction is the label.
    ``crop_fraction``: the evaluation crop's side relative to the short side (7/8 or 1, above).
    """

    size: int
    train: bool
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    normalize: bool = False
    crop_fraction: float = EVAL_CROP_FRACTION

    def __post_init__(self):
        if not 0 < self.crop_fraction <= 1:
            raise UsageError(f"crop_fraction must lie in (0, 1], not {self.crop_fraction}")

    def __call__(self, frames: np.ndarray | torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """``seed`` fixes the random crop and flip (for reproducible, worker-independent data)."""
        frames = torch.as_tensor(frames)
        h, w = frames.shape[1:3]
        if self.train:
            with torch.random.fork_rng(devices=[]):
                if seed is not None:  # the CPU generator only, as fork_rng(devices=[]) restores only it
                    torch.random.default_generator.manual_seed(seed)  # (torch.manual_seed would also
                    # queue a lazy CUDA seeding, recording a stack trace, on every clip)
                top, left, ch, cw = T.RandomResizedCrop.get_params(
                    thwc_to_tchw(frames), self.scale, self.ratio)
                do_flip = self.flip and bool(torch.rand(()) < 0.5)
        else:
            side = max(1, round(min(h, w) * self.crop_fraction))
            top, left, ch, cw = (h - side) // 2, (w - side) // 2, side, side
            do_flip = False
        # crop first (less to copy), then make channels-first contiguous: torchvision's uint8
        # antialiased resize is fastest on contiguous [T, 3, H, W] (measured 1.5-2x)
        video = thwc_to_tchw(frames[:, top : top + ch, left : left + cw]).contiguous()
        if (ch, cw) != (self.size, self.size):
            video = resize_uint8(video, self.size)
        if do_flip:
            video = video.flip(-1)
        return normalize(video) if self.normalize else video.contiguous()


def resize_uint8(video: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8 [T, 3, H, W]`` -> ``[T, 3, size, size]``, bilinear with antialiasing, on PyTorch's
    native uint8 kernel. torchvision 0.18 takes that kernel only when the CPU reports "AVX2", so on
    an AVX-512 CPU it converts to float32 and back instead: 1.7x slower here, and within 1 of this
    result (its rounding of the float result)."""
    if video.dtype != torch.uint8:
        return F.resize(video, [size, size], antialias=True)
    return torch.nn.functional.interpolate(video, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)


@dataclass(frozen=True)
class InputKind:
    """A kind of frame a model takes: ``channels`` per frame, and the per-channel ``mean`` and ``std``
    of ``x / 255`` that normalise it. The model normalises its uint8 clips itself
    (:meth:`respike_nm.models.respike.ReSpike.prepare`, option ``model.input``), so a new kind of
    input (event-camera polarity frames, depth, ...) is a dataset that yields ``uint8 [T, C, H, W]``
    clips and an entry here."""

    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (self.channels >= 1 and len(self.mean) == len(self.std) == self.channels):
            raise UsageError(f"an input of {self.channels} channel(s) needs as many means and stds, "
                             f"not {len(self.mean)} and {len(self.std)}")


INPUTS: dict[str, InputKind] = {"rgb": InputKind(3, IMAGENET_MEAN, IMAGENET_STD)}  # ImageNet statistics
RGB = INPUTS["rgb"]


@functools.cache
def _affine(kind: InputKind) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.tensor(kind.std)
    return (1 / (255 * std)).view(-1, 1, 1), (-torch.tensor(kind.mean) / std).view(-1, 1, 1)


def normalize(video: torch.Tensor, kind: InputKind = RGB) -> torch.Tensor:
    """``uint8 [..., C, H, W]`` to normalised ``float32``: ``(x / 255 - mean) / std`` per channel
    (default: RGB with ImageNet's statistics)."""
    scale, shift = _affine(kind)
    return video.float().mul_(scale).add_(shift)  # in place on the new float copy: 20x faster


def denormalize(video: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, to ``float32`` in [0, 1] (for display)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (video * std + mean).clamp(0, 1)
