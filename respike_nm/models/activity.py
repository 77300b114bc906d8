"""Spike activity recorded from outside the model, by forward hooks (never a forward flag), and the
one definition of a firing rate (:func:`firing_rate`) and of a layer output's spike count
(:func:`spike_count`), which evaluation, the energy counter and the verification share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


def firing_rate(spikes: float, neuron_steps: float) -> float:
    """Spikes per neuron per time step (0 when nothing was observed)."""
    return spikes / neuron_steps if neuron_steps else 0.0


def spike_count(out: torch.Tensor) -> tuple[float, int]:
    """``(spikes, neuron steps)`` of a spiking layer's output ``[N, C, (H, W,) T]``."""
    with torch.no_grad():
        return float(out.detach().sum()), out.numel()


@dataclass
class LayerActivity:
    spikes: float = 0.0  # total spikes emitted
    neuron_steps: int = 0  # neurons x time steps x samples observed
    shape: tuple[int, ...] = ()  # [C, H, W, T] of one sample

    @property
    def rate(self) -> float:
        """Spikes per neuron per time step."""
        return firing_rate(self.spikes, self.neuron_steps)


@dataclass
class ActivityLog:
    layers: dict[str, LayerActivity] = field(default_factory=dict)

    def rates(self) -> dict[str, float]:
        return {name: round(a.rate, 6) for name, a in self.layers.items()}

    def add(self, other: ActivityLog) -> None:
        """Add ``other``'s counts (the same model on other samples) into this log."""
        for name, a in other.layers.items():
            mine = self.layers.setdefault(name, LayerActivity())
            mine.spikes += a.spikes
            mine.neuron_steps += a.neuron_steps
            mine.shape = a.shape


def spiking_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    from respike_nm.models.neurons import CubaLIF

    for name, module in model.named_modules():
        if isinstance(module, CubaLIF):
            yield name, module


@contextmanager
def record_activity(model: nn.Module):
    """``with record_activity(model) as log: model(x)`` fills ``log.layers`` per spiking layer."""
    log = ActivityLog()
    handles = []
    for name, module in spiking_modules(model):
        log.layers[name] = LayerActivity()

        def hook(mod, args, out, name=name):
            act = log.layers[name]
            spikes, steps = spike_count(out)
            act.spikes += spikes
            act.neuron_steps += steps
            act.shape = tuple(out.shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        yield log
    finally:
        for h in handles:
            h.remove()
