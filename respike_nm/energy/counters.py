"""Operation counters attached from outside the model (forward hooks), never by a forward flag.

``with count_ops(model) as log: model(video)`` fills one :class:`LayerCount` per layer:

This module is the ReSpike adapter: it knows the branches (:func:`attribution`), the SNN's synapses
and neurons and the stage shapes the plans need; the arithmetic of convolutions, linear layers and
attention products is :mod:`respike_nm.energy.ops`, which knows no model.

- ANN, fusion and head (convolutions 1-3 D, ``nn.Linear``): MACs; dense = every input, effective =
  MACs whose input is nonzero (NeuroBench's Effective_MACs). EfficientNet-Lite's "same" padding,
  applied inside its convolutions' forward, is applied to the hooked input first, so borders count
  as in the network. Attention matrix products: a module's own ``matmul_macs`` (``ops``).
- SNN synapses (every :class:`~respike_nm.models.snn.ConvBN`, time folded into the batch): with a
  binary input, synaptic operations (accumulates) = sum over steps of (input spikes x fan-out),
  computed exactly as a convolution of the spike map with an all-ones kernel (borders included);
  a real-valued (graded) input, as the first layer's residual frames, is counted as MACs instead.
- SNN neurons (every ``CubaLIF``): neuron updates (neurons x steps) and spikes out (spikes routed).
  A neuron update is *active* when its neuron received at least one synaptic event in that step.

Counts are totals over everything the hooks saw; :func:`per_clip` divides by the clips run.
Not counted: normalisation, activations, softmax, pooling and additions (a few percent of an ANN).
A weighted layer that none of these rules counts is an error, not a silent zero.

:func:`count_shapes` counts one clip from shapes alone (a forward pass on the ``meta`` device, no
weights, no arithmetic): every count dense, no activity; :mod:`respike_nm.energy.scale` then gives
the SNN its firing rates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn

from respike_nm.energy.ops import (
    CONVS,
    COUNTED,
    conv_macs,
    conv_ops,
    dense_conv_macs,
    linear_dense_macs,
    linear_ops,
    nonzero_per_position,
    on_meta,
    unaccounted,
)
from respike_nm.errors import UsageError
from respike_nm.models.activity import firing_rate, spike_count

BRANCHES = ("ann", "fusion", "head", "snn")


@dataclass
class LayerCount:
    """Operations of one layer, summed over the samples and time steps observed."""

    name: str
    branch: str  # ann | fusion | head | snn
    op: str  # mac (conv/linear), matmul (attention), synop (binary input), graded (real input, MACs)
    effective_macs: float = 0.0
    dense_macs: float = 0.0
    effective_acs: float = 0.0
    dense_acs: float = 0.0
    inputs: float = 0.0  # input elements seen (x steps)
    nonzero_inputs: float = 0.0
    neuron_updates: float = 0.0  # neurons x steps
    active_updates: float = 0.0  # neuron-steps that received >= 1 synaptic event
    active_known: bool = False  # False: no synapse feeds this neuron through a hook (resnet LIF)
    spikes_out: float = 0.0
    params: int = 0  # weights (NeuroBench's Footprint counts these)
    out_shape: tuple[int, ...] = ()  # of one sample, SNN layers [C, H, W] per step

    @property
    def activation_sparsity(self) -> float:
        """Share of zero inputs (NeuroBench's ActivationSparsity, per layer)."""
        return 1.0 - self.nonzero_inputs / self.inputs if self.inputs else 0.0

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per step."""
        return firing_rate(self.spikes_out, self.neuron_updates)

    def scaled(self, factor: float) -> LayerCount:
        """Every count multiplied by ``factor`` (shapes and parameters unchanged)."""
        return replace(self, **{f: getattr(self, f) * factor for f in _COUNT_FIELDS})


# the fields of a LayerCount that count operations (the rest: identity, shape, parameters)
_COUNT_FIELDS = tuple(f.name for f in fields(LayerCount)
                      if f.name not in {"name", "branch", "op", "active_known", "params", "out_shape"})


@dataclass
class OpLog:
    """Per-layer counts and the shapes of the stage outputs (one sample) seen by the hooks."""

    layers: dict[str, LayerCount] = field(default_factory=dict)
    snn_stage_shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # stage -> [C, H, W, T]
    ann_stage_shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # stage -> [C, H, W]

    def entry(self, name: str, branch: str, op: str) -> LayerCount:
        if name not in self.layers:
            self.layers[name] = LayerCount(name, branch, op)
        return self.layers[name]


def _is_binary(x: torch.Tensor, nonzero: int | None = None) -> bool:
    """Every element 0 or 1: as many ones as nonzero elements (two reductions, no temporary mask)."""
    nonzero = int(torch.count_nonzero(x)) if nonzero is None else nonzero
    return int((x == 1).sum()) == nonzero


def attribution(model: nn.Module) -> Callable[[str], str]:
    """``name -> branch`` for the layers of ``model``. A model with any top-level part named after a
    branch (a ReSpike: ``ann``, ``snn``, ``fusion``, ``head``) must have only such parts: a layer
    under another name is an error here, before anything is counted, not silently priced as ANN. A
    plain network (a backbone on its own) is one ANN."""
    parts = {name for name, _ in model.named_children()}
    if not parts & set(BRANCHES):
        return lambda name: "ann"
    unknown = sorted(p for p in parts - set(BRANCHES)
                     if any(True for _ in getattr(model, p).parameters()))
    if unknown:
        raise UsageError(f"energy: cannot attribute {', '.join(unknown)} to a branch "
                         f"({', '.join(BRANCHES)}); name the part after its branch or extend "
                         "energy.counters.BRANCHES")
    return lambda name: name.split(".", 1)[0]


def _layer_key(name: str) -> str:
    """A plain SNN's ``SpikingConv`` holds ``.synapse`` and ``.neuron``: one layer, one entry."""
    for suffix in (".synapse", ".neuron"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _count_mac(log: OpLog, name: str, branch: str, module: nn.Module, x: torch.Tensor) -> None:
    from respike_nm.models.effnet_lite import same_padded

    e = log.entry(name, branch, "mac")
    if isinstance(module, nn.Conv2d):
        per_pos = nonzero_per_position(x)
        nonzero = int(per_pos.sum())  # exact: integers in float64
        # a convolution that pads inside its forward (TensorFlow "same") is counted on the padded input
        padded = same_padded(module, x)
        eff, dense = conv_macs(module, padded, per_pos if padded is x else None)
    elif isinstance(module, CONVS):
        nonzero = int(torch.count_nonzero(x))
        eff, dense = conv_macs(module, x)
    else:
        nonzero = int(torch.count_nonzero(x))
        eff, dense = linear_ops(module, x, nonzero)
    e.effective_macs += eff
    e.dense_macs += dense
    e.inputs += x.numel()
    e.nonzero_inputs += nonzero
    e.params = module.weight.numel()


def _shape_mac(log: OpLog, name: str, branch: str, module: nn.Module, x: torch.Tensor) -> None:
    """Shapes only: every input counted active (effective = dense)."""
    from respike_nm.models.effnet_lite import same_padded

    e = log.entry(name, branch, "mac")
    if isinstance(module, CONVS):
        shape = tuple(same_padded(module, x).shape) if isinstance(module, nn.Conv2d) else tuple(x.shape)
        dense = dense_conv_macs(module, shape)
    else:
        dense = linear_dense_macs(module, tuple(x.shape))
    e.effective_macs += dense
    e.dense_macs += dense
    e.inputs += x.numel()
    e.nonzero_inputs += x.numel()
    e.params = module.weight.numel()


def _count_matmul(log: OpLog, name: str, branch: str, module: nn.Module, args, kwargs) -> None:
    macs = float(module.matmul_macs(*args, **kwargs))
    e = log.entry(f"{name}.matmul", branch, "matmul")
    e.effective_macs += macs
    e.dense_macs += macs


def _count_synapse(log: OpLog, name: str, module: nn.Module, x: torch.Tensor) -> None:
    """An SNN ConvBN on ``x [N*T, C, H, W]``: synops (binary input) or MACs (graded input)."""
    active = (x != 0).to(torch.float32)
    nonzero = int(active.sum(dtype=torch.float64))
    graded = not torch.equal(x, active) if x.dtype == torch.float32 else not _is_binary(x, nonzero)
    e = log.entry(_layer_key(name), "snn", "graded" if graded else "synop")
    if graded:
        e.op = "graded"
    eff, dense, events = conv_ops(module.conv, x, active)
    if graded:
        e.effective_macs += eff
        e.dense_macs += dense
    else:
        e.effective_acs += eff
        e.dense_acs += dense
    e.active_updates += float((events > 0).sum()) * (module.conv.out_channels // module.conv.groups)
    e.active_known = True
    e.inputs += x.numel()
    e.nonzero_inputs += nonzero
    e.params = module.conv.weight.numel()


def _shape_synapse(log: OpLog, name: str, module: nn.Module, x: torch.Tensor, graded: bool) -> None:
    """Shapes only: a synapse's dense operations; graded input for the stem only
    (:func:`_graded_synapses`). No activity yet."""
    e = log.entry(_layer_key(name), "snn", "graded" if graded else "synop")
    dense = dense_conv_macs(module.conv, tuple(x.shape))
    if graded:
        e.dense_macs += dense
        e.effective_macs += dense  # graded input: every value is a message
        e.nonzero_inputs += x.numel()
    else:
        e.dense_acs += dense
    e.inputs += x.numel()
    e.params = module.conv.weight.numel()


def _count_neuron(log: OpLog, name: str, out: torch.Tensor) -> None:
    """A CubaLIF's spikes ``[N, C, H, W, T]``."""
    e = log.entry(_layer_key(name), "snn", "synop")
    spikes, steps = spike_count(out)
    e.neuron_updates += steps
    e.spikes_out += spikes
    e.out_shape = tuple(out.shape[1:-1])


def _shape_neuron(log: OpLog, name: str, out: torch.Tensor) -> None:
    e = log.entry(_layer_key(name), "snn", "synop")
    e.neuron_updates += out.numel()
    e.out_shape = tuple(out.shape[1:-1])


def _graded_synapses(model: nn.Module) -> set[str]:
    """Names of the SNN synapses (``ConvBN``) fed graded values in every deployment: the stem's (the
    residual frames). A fusion point's entry is graded only in a plan that fuses there, and the
    plans charge it so (:mod:`respike_nm.energy.plans`); from shapes it is counted as spikes."""
    from respike_nm.models.snn import ConvBN

    return {n for n, m in model.named_modules() if isinstance(m, ConvBN) and n.startswith("snn.stem")}


def _hooks(model: nn.Module, log: OpLog, shapes: bool = False) -> Iterator[torch.utils.hooks.RemovableHandle]:
    from respike_nm.models.neurons import CubaLIF
    from respike_nm.models.snn import ConvBN

    branch = attribution(model)
    synapses = {n for n, m in model.named_modules() if isinstance(m, (ConvBN, CubaLIF))}
    missing = [n for n in unaccounted(model, synapses) if n]
    if missing:
        raise UsageError(f"energy: no counter for {', '.join(missing[:5])} (weighted layers other than "
                         "convolutions, linear layers, normalisations and the SNN's synapses and neurons)")
    graded = _graded_synapses(model) if shapes else set()
    for name, m in model.named_modules():
        in_snn, part = name.split(".", 1)[0] == "snn", branch(name)
        if isinstance(m, ConvBN):
            yield m.register_forward_hook(
                (lambda mod, a, o, n=name: _shape_synapse(log, n, mod, a[0], n in graded)) if shapes else
                (lambda mod, a, o, n=name: _count_synapse(log, n, mod, a[0])))
        elif isinstance(m, CubaLIF):
            neuron = _shape_neuron if shapes else _count_neuron
            yield m.register_forward_hook(lambda mod, a, o, n=name, f=neuron: f(log, n, o))
        elif isinstance(m, COUNTED) and not in_snn:
            mac = _shape_mac if shapes else _count_mac
            yield m.register_forward_hook(
                lambda mod, a, o, n=name, b=part, f=mac: f(log, n, b, mod, a[0]))
        elif callable(getattr(m, "matmul_macs", None)):
            yield m.register_forward_hook(
                lambda mod, a, kw, o, n=name, b=part: _count_matmul(log, n, b, mod, a, kw),
                with_kwargs=True)
    yield from _shape_hooks(model, log)


def _shape_hooks(model: nn.Module, log: OpLog) -> Iterator[torch.utils.hooks.RemovableHandle]:
    """Stage output shapes (one sample) of both branches, for the deployment plans."""
    snn, ann = getattr(model, "snn", None), getattr(model, "ann", None)
    for i, stage in enumerate(getattr(snn, "stages", ()), start=1):
        yield stage.register_forward_hook(
            lambda mod, a, o, i=i: log.snn_stage_shapes.__setitem__(i, tuple(o.shape[1:])))
    if hasattr(ann, "feature_info"):  # a backbone returning its stage outputs
        yield ann.register_forward_hook(lambda mod, a, o: log.ann_stage_shapes.update(
            {i: tuple(f.shape[1:]) for i, f in enumerate(o, start=1)}))


@contextmanager
def count_ops(model: nn.Module, shapes: bool = False):
    """``with count_ops(model) as log: model(x)``; the hooks are removed on exit. ``shapes``: count
    dense operations from shapes only (for a model on the ``meta`` device, :func:`count_shapes`)."""
    log = OpLog()
    handles = list(_hooks(model, log, shapes))
    try:
        with torch.no_grad():
            yield log
    finally:
        for h in handles:
            h.remove()


def per_clip(log: OpLog, clips: int) -> list[LayerCount]:
    """The log's layers divided by the number of clips run, in model order."""
    if clips < 1:
        raise UsageError(f"clips must be at least 1, got {clips}")
    return [c.scaled(1.0 / clips) for c in log.layers.values()]


@dataclass(frozen=True)
class Totals:
    """NeuroBench-style totals of a list of layers (per clip)."""

    Effective_MACs: float
    Effective_ACs: float
    Dense_MACs: float
    Dense_ACs: float
    ActivationSparsity: float  # share of zero inputs over every counted layer
    Footprint: int  # weights, counted as parameters
    neuron_updates: float
    spikes: float


def totals(layers: list[LayerCount]) -> Totals:
    inputs = sum(c.inputs for c in layers)
    nonzero = sum(c.nonzero_inputs for c in layers)
    return Totals(
        Effective_MACs=sum(c.effective_macs for c in layers),
        Effective_ACs=sum(c.effective_acs for c in layers),
        Dense_MACs=sum(c.dense_macs for c in layers),
        Dense_ACs=sum(c.dense_acs for c in layers),
        ActivationSparsity=1.0 - nonzero / inputs if inputs else 0.0,
        Footprint=sum(c.params for c in layers),
        neuron_updates=sum(c.neuron_updates for c in layers),
        spikes=sum(c.spikes_out for c in layers),
    )


@dataclass(frozen=True)
class ClipCounts:
    """What one clip costs, averaged over the clips run, with the geometry the plans need."""

    clips: int
    frames: int  # T
    stride: int  # s; G = T / s key-frame groups, T' = s - 1 SNN steps
    frame_shape: tuple[int, int]  # (H, W)
    layers: list[LayerCount]
    snn_stage_shapes: dict[int, tuple[int, ...]]  # [C, H, W, T'] per key-frame group
    ann_stage_shapes: dict[int, tuple[int, ...]]  # [C, H, W] per key frame
    channels: int = 3  # C of the frames [T, C, H, W]
    snn_arch: str = "plain"  # the run's SNN architecture (for the record)
    snn_emits: str = "spikes"  # what its stages hand on (SNNBranch.emits): spikes (1 bit) or currents
    fusion: str = "late"  # the run's fusion variant (whose activity was recorded)
    fused_stages: tuple[int, ...] = ()
    fusion_stages: tuple[int, ...] = (2, 3, 4)  # the multi-scale stages of the run's config
    num_classes: int = 0
    # stage number (1-based, as fused_stages) -> its layers as a chip gets them (SNNBranch.stage_layers)
    snn_stage_layers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    activity: str = "recorded"  # recorded (a run's spikes) | what scale.with_rates assumed

    @property
    def groups(self) -> int:
        return self.frames // self.stride

    @property
    def last_stage(self) -> int:
        """The SNN's last stage (its output always goes to the fusion or head)."""
        return max(self.snn_stage_shapes)

    def stage_entry(self, stage: int) -> str | None:
        """The counted layer that receives stage ``stage``'s input: the first SNN layer under the
        first layer of the stage's own description (None: the stage has no counted layer)."""
        first = self.snn_stage_layers[stage][0]
        return next((c.name for c in self.layers if c.branch == "snn"
                     and (c.name == first or c.name.startswith(first + "."))), None)


def count_log(model: nn.Module, batches: Iterable[torch.Tensor]) -> tuple[OpLog, int, tuple[int, ...]]:
    """``(log, clips, clip shape [T, C, H, W])``: totals of ``model`` on batches of clips
    ``[B, T, C, H, W]`` (uint8 as decoded, or normalised) under the counters (not yet per clip: logs
    of disjoint clips add exactly, :func:`merge_logs`)."""
    clips, shape = 0, None
    with count_ops(model) as log:
        for video in batches:
            if video.dim() != 5 or (shape is not None and video.shape[1:] != shape):
                raise ValueError(f"expected clips [B, T, C, H, W] of one size, got {tuple(video.shape)}")
            model(video)
            clips, shape = clips + video.shape[0], video.shape[1:]
    if shape is None:
        raise UsageError("no clips to count")
    return log, clips, tuple(shape)


def merge_logs(logs: list[OpLog]) -> OpLog:
    """One log of the clips of all ``logs`` (same model, disjoint clips): counts added per layer, in
    the first log's layer order. Every count is an integer in float64, so the sum is exact."""
    merged = OpLog()
    for log in logs:
        for name, c in log.layers.items():
            if name not in merged.layers:
                merged.layers[name] = replace(c)
            else:
                m = merged.layers[name]
                for f in _COUNT_FIELDS:
                    setattr(m, f, getattr(m, f) + getattr(c, f))
                m.op = "graded" if "graded" in (m.op, c.op) else m.op
        merged.snn_stage_shapes.update(log.snn_stage_shapes)
        merged.ann_stage_shapes.update(log.ann_stage_shapes)
    return merged


def clip_counts(model: nn.Module, log: OpLog, clips: int, shape: tuple[int, ...]) -> ClipCounts:
    """:class:`ClipCounts` of ``clips`` clips of ``shape [T, C, H, W]`` counted into ``log``."""
    t, c, h, w = shape
    spec = model.spec
    stages = {i + 1: tuple(f"snn.{n}" for n, _ in model.snn.stage_layers(i))
              for i in range(len(model.snn.stages))}
    return ClipCounts(clips, t, spec.stride, (h, w), per_clip(log, clips), dict(log.snn_stage_shapes),
                      dict(log.ann_stage_shapes), c, spec.snn.arch, model.snn.emits, spec.fusion,
                      spec.fused_stages, tuple(spec.fusion_stages), spec.num_classes, stages)


def count_shapes(model: nn.Module, shape: tuple[int, ...]) -> ClipCounts:
    """Dense counts of one clip of ``shape [T, C, H, W]`` from shapes alone: a forward pass of a
    ``meta`` copy of ``model`` (a ReSpike; no weights used, no arithmetic done, ``model`` unchanged).
    Every count is dense and the SNN has no activity yet (no spikes, no synaptic events): give it
    firing rates with :func:`respike_nm.energy.scale.with_rates`."""
    from respike_nm.models.snn import set_fake_quant

    meta = on_meta(model).eval()
    set_fake_quant(meta, False)  # weight quantization changes values, not shapes (and reads values)
    with count_ops(meta, shapes=True) as log:
        meta(torch.zeros(1, *shape, device="meta"))
    return replace(clip_counts(model, log, 1, tuple(shape)), activity="none (shapes only)")


def count_clips(model: nn.Module, batches: Iterable[torch.Tensor]) -> ClipCounts:
    """Run ``model`` (a ReSpike) on batches of clips ``[B, T, C, H, W]`` under the counters."""
    return clip_counts(model, *count_log(model, batches))
