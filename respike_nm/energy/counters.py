"""Operation counters attached from outside the model (forward hooks), never by a forward flag.

``with count_ops(model) as log: model(video)`` fills one :class:`LayerCount` per layer:

- ANN, fusion and head (``nn.Conv2d``, ``nn.Linear``): MACs; dense = every input, effective = MACs
  whose input is nonzero (NeuroBench's Effective_MACs). Grouped and depthwise convolutions count
  ``C_in / groups`` inputs per output; EfficientNet-Lite's "same" padding, applied inside its
  convolutions' forward, is applied to the hooked input first, so borders count as in the network.
  Attention matrix products are functional (``scaled_dot_product_attention``), so hooks on modules
  miss them: each ``Attention`` module adds ``2 * n * Lq * Lk * heads * head_dim`` MACs (QK^T and
  AV) explicitly.
- SNN synapses (every :class:`~respike_nm.models.snn.ConvBN`, time folded into the batch): with a
  binary input, synaptic operations (accumulates) = sum over steps of (input spikes x fan-out),
  computed exactly as a convolution of the spike map with an all-ones kernel (borders included);
  a real-valued (graded) input, as the first layer's residual frames, is counted as MACs instead.
- SNN neurons (every ``CubaLIF``): neuron updates (neurons x steps) and spikes out (spikes routed).
  A neuron update is *active* when its neuron received at least one synaptic event in that step.

Counts are totals over everything the hooks saw; :func:`per_clip` divides by the clips run.
Not counted: normalisation, activations, softmax, pooling and additions (a few percent of an ANN).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from respike_nm.errors import UsageError
from respike_nm.layout import conv_out
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


def fanout_events(active: torch.Tensor, weight_shape: tuple[int, ...], stride, padding, dilation,
                  groups: int) -> torch.Tensor:
    """Synaptic events per output position ``[N, groups, H', W']``: the number of active inputs in
    each output's receptive field, from ``active [N, C_in, H, W]`` (0/1) and a conv's geometry.
    Multiply by the output channels per group for operations (each event reaches each of them)."""
    n, c, h, w = active.shape
    per_group = active.reshape(n, groups, c // groups, h, w).sum(2)
    ones = torch.ones(groups, 1, *weight_shape[2:], dtype=per_group.dtype, device=active.device)
    return F.conv2d(per_group, ones, None, stride, padding, dilation, groups)


def conv_ops(conv: nn.Conv2d, x: torch.Tensor,
             active: torch.Tensor | None = None) -> tuple[float, float, torch.Tensor]:
    """``(effective, dense, events [N, groups, H', W'])`` operations of ``conv`` on ``x [N, C, H, W]``.

    Dense counts every weight at every output position, zero padding included (as every MAC counter
    does); effective counts only the nonzero inputs inside the frame. ``active``: ``x != 0`` as
    float32, if known."""
    geo = (tuple(conv.weight.shape), conv.stride, conv.padding, conv.dilation, conv.groups)
    per_out = conv.out_channels // conv.groups
    # float32 is exact here: each count is at most k*k*C_in/groups (< 2^24); the total is summed in float64
    events = fanout_events((x != 0).to(torch.float32) if active is None else active, *geo)
    dense = events.numel() // conv.groups * conv.weight[0].numel() * conv.out_channels  # padding included
    return float(events.sum(dtype=torch.float64)) * per_out, float(dense), events


_REACH: dict[tuple, torch.Tensor] = {}


def reach(weight_shape: tuple[int, ...], stride, padding, dilation, h: int, w: int) -> torch.Tensor:
    """``[H, W]``: how many output positions each input position reaches (its fan-out per output
    channel), for a conv's geometry on an ``H x W`` input: the transposed convolution of an all-ones
    output map with an all-ones kernel; positions that no window covers reach none. Cached."""
    key = (tuple(weight_shape[2:]), tuple(stride), tuple(padding), tuple(dilation), h, w)
    if key not in _REACH:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = weight_shape[2:], stride, padding, dilation
        oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
        full = F.conv_transpose2d(torch.ones(1, 1, oh, ow, dtype=torch.float64),
                                  torch.ones(1, 1, kh, kw, dtype=torch.float64), None, (sh, sw), 0, 0, 1,
                                  (dh, dw))[0, 0]
        out = torch.zeros(h + 2 * ph, w + 2 * pw, dtype=torch.float64)
        out[: full.shape[0], : full.shape[1]] = full[: h + 2 * ph, : w + 2 * pw]
        _REACH[key] = out[ph : ph + h, pw : pw + w].contiguous()
    return _REACH[key]


def conv_macs(conv: nn.Conv2d, x: torch.Tensor, nonzero: torch.Tensor | None = None) -> tuple[float, float]:
    """``(effective, dense)`` MACs of ``conv`` on ``x [N, C, H, W]`` as :func:`conv_ops` counts them,
    without the per-output events: each nonzero input times the output positions it reaches
    (:func:`reach`) times the output channels of its group; ``nonzero``: the ``[H, W]`` count of
    nonzero inputs per position (over clips and channels), if known."""
    n, c, h, w = x.shape
    per_pos = nonzero_per_position(x) if nonzero is None else nonzero  # each group reaches its own outputs
    fan = reach(tuple(conv.weight.shape), conv.stride, conv.padding, conv.dilation, h, w).to(x.device)
    effective = float((per_pos * fan).sum()) * (conv.out_channels // conv.groups)
    (kh, kw), (ph, pw), (dh, dw), (sh, sw) = conv.kernel_size, conv.padding, conv.dilation, conv.stride
    oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    dense = n * oh * ow * conv.weight[0].numel() * conv.out_channels  # padding included
    return effective, float(dense)


def nonzero_per_position(x: torch.Tensor) -> torch.Tensor:
    """``float64 [H, W]``: the nonzero elements of ``x [N, C, H, W]`` at each position."""
    return (x != 0).sum(dim=(0, 1), dtype=torch.float64)


def linear_ops(lin: nn.Linear, x: torch.Tensor, nonzero: int | None = None) -> tuple[float, float]:
    """``(effective, dense)`` MACs of ``lin`` on ``x [..., in]`` (``nonzero``: its count of nonzeros)."""
    nonzero = int(torch.count_nonzero(x)) if nonzero is None else nonzero
    return float(nonzero) * lin.out_features, float(x.numel()) * lin.out_features


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
                     if any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in getattr(model, p).modules()))
    if unknown:
        raise ValueError(f"energy: cannot attribute {', '.join(unknown)} to a branch "
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
    else:
        nonzero = int(torch.count_nonzero(x))
        eff, dense = linear_ops(module, x, nonzero)
    e.effective_macs += eff
    e.dense_macs += dense
    e.inputs += x.numel()
    e.nonzero_inputs += nonzero
    e.params = module.weight.numel()


def _count_matmul(log: OpLog, name: str, branch: str, module: nn.Module, args, kwargs) -> None:
    x = args[0]
    ctx = kwargs.get("context", args[1] if len(args) > 1 else None)
    lk = x.shape[1] if ctx is None else ctx.shape[1]
    macs = 2.0 * x.shape[0] * x.shape[1] * lk * module.heads * module.head_dim
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


def _count_neuron(log: OpLog, name: str, out: torch.Tensor) -> None:
    """A CubaLIF's spikes ``[N, C, H, W, T]``."""
    e = log.entry(_layer_key(name), "snn", "synop")
    spikes, steps = spike_count(out)
    e.neuron_updates += steps
    e.spikes_out += spikes
    e.out_shape = tuple(out.shape[1:-1])


def _hooks(model: nn.Module, log: OpLog) -> Iterator[torch.utils.hooks.RemovableHandle]:
    from respike_nm.models.fusion import Attention
    from respike_nm.models.neurons import CubaLIF
    from respike_nm.models.snn import ConvBN

    branch = attribution(model)
    for name, m in model.named_modules():
        in_snn, part = name.split(".", 1)[0] == "snn", branch(name)
        if isinstance(m, ConvBN):
            yield m.register_forward_hook(lambda mod, a, o, n=name: _count_synapse(log, n, mod, a[0]))
        elif isinstance(m, CubaLIF):
            yield m.register_forward_hook(lambda mod, a, o, n=name: _count_neuron(log, n, o))
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and not in_snn:
            yield m.register_forward_hook(
                lambda mod, a, o, n=name, b=part: _count_mac(log, n, b, mod, a[0]))
        elif isinstance(m, Attention):
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
def count_ops(model: nn.Module):
    """``with count_ops(model) as log: model(x)``; the hooks are removed on exit."""
    log = OpLog()
    handles = list(_hooks(model, log))
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

    @property
    def groups(self) -> int:
        return self.frames // self.stride


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
    return ClipCounts(clips, t, spec.stride, (h, w), per_clip(log, clips), dict(log.snn_stage_shapes),
                      dict(log.ann_stage_shapes), c, spec.snn.arch, model.snn.emits, spec.fusion,
                      spec.fused_stages, tuple(spec.fusion_stages), spec.num_classes)


def count_clips(model: nn.Module, batches: Iterable[torch.Tensor]) -> ClipCounts:
    """Run ``model`` (a ReSpike) on batches of clips ``[B, T, C, H, W]`` under the counters."""
    return clip_counts(model, *count_log(model, batches))
