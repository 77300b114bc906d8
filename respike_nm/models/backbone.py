"""What every ANN backbone shares: its feature taps, and reading pretrained weights safely.

A backbone returns its four stage outputs and declares them in ``feature_info`` (channels and
stride per stage), so fusion and the head pick taps without knowing the architecture. Weights are
read only from local files, with ``weights_only=True``, so that loading a file can never run code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from respike_nm.errors import RespikeError
from respike_nm.state import compare_state

WRAPPER_KEYS = ("state_dict", "model")  # where training scripts nest the state dict


class WeightsError(RespikeError, ValueError):
    """Pretrained weights that cannot be found, read or matched to the backbone."""


@dataclass(frozen=True)
class FeatureInfo:
    """Feature taps of a backbone: output channels and stride (relative to the input) per stage."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.strides):
            raise ValueError(f"{len(self.channels)} channel counts but {len(self.strides)} strides")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a checkpoint, read with ``weights_only=True`` (a plain state dict, or one nested
    under ``"state_dict"`` / ``"model"``). Any other content -> WeightsError naming the file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (UnpicklingError, RuntimeError, EOFError...)
        raise WeightsError(f"cannot read {path} as a weights-only state dict: {type(e).__name__}: {e}") from e
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise WeightsError(f"{path} is not a state dict: non-tensor entries {bad[:5]}")
    return dict(obj)


def state_dict_mismatches(expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> list[str]:
    """One line per missing, unexpected or wrongly shaped tensor, with shapes.

    A missing ``num_batches_tracked`` is tolerated (the model's own counter is kept): old torchvision
    checkpoints lack it, and it plays no part in eval or in training with a set momentum.
    """
    return compare_state(expected, given, tolerate_missing=("num_batches_tracked",)).lines()
