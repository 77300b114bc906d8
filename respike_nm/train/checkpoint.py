"""Checkpoints: written atomically, read with ``weights_only=True`` (never unpickles objects).

A checkpoint is a dict of tensors and plain values: ``format``, ``format_version``, ``model``
(state dict), ``optimizer``, ``scheduler``, ``epoch`` (completed epochs), ``kind``, ``classes``,
``config`` and ``history`` (JSON text), ``rng`` (torch RNG state as a uint8 tensor), and ``aux``
only for a run with training-only modules (the auxiliary heads of ``train.branch_loss=aux``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from respike_nm.atomic import atomic_file
from respike_nm.errors import RespikeError
from respike_nm.state import compare_state

FORMAT = "respike-nm-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RespikeError, ValueError):
    """A checkpoint that is missing, unreadable, of another format, or does not fit the model."""


@dataclass
class Checkpoint:
    path: str
    model: dict
    optimizer: dict | None
    scheduler: dict | None
    epoch: int
    kind: str
    classes: list[str]
    config: dict
    history: list[dict]
    rng: torch.Tensor | None
    aux: dict | None = None  # state of training-only modules (train.branch_loss=aux heads); not the model


def save_checkpoint(path: str | Path, ck: Checkpoint) -> Path:
    """Write ``ck`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": ck.model,
        "optimizer": ck.optimizer, "scheduler": ck.scheduler, "epoch": ck.epoch, "kind": ck.kind,
        "classes": list(ck.classes), "config": json.dumps(ck.config),
        "history": json.dumps(ck.history), "rng": ck.rng,
    }
    if ck.aux is not None:
        payload["aux"] = ck.aux
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable respike-nm checkpoint ({first})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a respike-nm checkpoint (no format {FORMAT!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {raw.get('format_version')}, "
                              f"this version reads {FORMAT_VERSION}")
    for key in ("model", "epoch", "kind", "classes", "config", "history"):
        if key not in raw:
            raise CheckpointError(f"{path}: missing field {key!r}")
    try:
        config, history = json.loads(raw["config"]), json.loads(raw["history"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: field 'config' or 'history' is not JSON ({exc})") from None
    expected = {"model": dict, "epoch": int, "kind": str, "classes": list, "config": dict, "history": list}
    for key, typ in expected.items():
        value = {"config": config, "history": history}.get(key, raw[key])
        if not isinstance(value, typ) or isinstance(value, bool):
            raise CheckpointError(f"{path}: field {key!r} must be a {typ.__name__}, "
                                  f"not {type(value).__name__}")
    if not all(isinstance(c, str) for c in raw["classes"]):
        raise CheckpointError(f"{path}: field 'classes' must list class names")
    return Checkpoint(str(path), raw["model"], raw.get("optimizer"), raw.get("scheduler"),
                      raw["epoch"], raw["kind"], list(raw["classes"]), config, history, raw.get("rng"),
                      raw.get("aux"))


def load_model_state(model: nn.Module, state: dict, source: str) -> None:
    """Load strictly; a mismatch is a :class:`CheckpointError` naming the tensors."""
    mismatch = compare_state(model.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{source}: checkpoint does not match the model: {mismatch.summary()}")
    model.load_state_dict(state, strict=True)
