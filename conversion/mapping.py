"""Hardware mapping: the geometry of an export, layer by layer, and the cores and chips it needs per target.

Counting conventions (per layer; shapes ``(C, H, W)``; a dense layer is a conv whose kernel covers its
whole input):

- ``neurons``: output neurons ``C * H * W``.
- ``synapses``: connections, counted exactly: a kernel tap that falls on zero padding is no connection.
- ``unique_weights``: stored kernel parameters ``C_out * C_in * kh * kw``.
- ``fan_in`` / ``fan_out``: the most presynaptic neurons of one neuron / the most postsynaptic neurons of
  one input neuron (the layer's input).
- ``weight_bits``: signed width of the largest integer weight once the trailing zero bits that all
  weights share (a common exponent) are removed.
- ``distinct_weights``: the most distinct non-zero weights one neuron uses.
- ``input_bits``: message width of the layer's input: the manifest's ``input_message_bits`` for a stage's
  first layer (graded input from the GPU), 1 (binary spikes) otherwise.

Storage model: a core holds ``stored synapses x bits per synapse`` (the profile's ``bits_per_synapse``,
else the layer's ``weight_bits``). Stored synapses are the connections, or the kernels of the core's
output channels when the profile sets ``conv_weight_sharing: 1``. Index, header and neuron-state memory
are not counted, so memory figures are lower bounds.

Placement model: layers do not share cores; all stage networks are resident at once. A layer is cut
into equal tiles (a group of output channels x a rectangle of output pixels, one tile per core); its
cores are the fewest over all tile sizes meeting every per-core limit the profile gives
(``neurons_per_core``; ``fan_in``, read as input axons per core, i.e. input channels x the tile's
receptive field; ``synapses_per_core``; ``synaptic_memory_bits_per_core``), loads taken exactly for the
worst tile, padding included. Chips: the most of total cores / ``cores_per_chip``, neurons /
``neurons_per_chip`` and stored synapses / ``synapses_per_chip``. A limit the profile does not give is
not checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from conversion.manifest import MANIFEST_NAME, ExportManifest, read_manifest
from conversion.netx_check import NetxGroup
from respike_nm.atomic import write_text_atomic
from respike_nm.errors import RespikeError
from respike_nm.hardware import HwProfile, builtin_profiles, load_profile
from respike_nm.layout import conv_out
from respike_nm.records import read_record

FORMAT_VERSION = 1
MAPPING_NAME = "mapping.json"
Pair = tuple[int, int]
Shape3 = tuple[int, int, int]
CORE_LIMITS = ("neurons_per_core", "fan_in", "synapses_per_core", "synaptic_memory_bits_per_core")


class MappingError(RespikeError, ValueError):
    """An export or a profile the mapper cannot read; the message names the file and the field."""


@dataclass(frozen=True)
class LayerMap:
    """Geometry and counts of one exported layer (conventions in the module docstring)."""

    stage: int
    name: str
    kind: str  # conv | dense
    input_shape: Shape3
    output_shape: Shape3
    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    neurons: int
    synapses: int
    unique_weights: int
    fan_in: int
    fan_out: int
    weight_bits: int
    distinct_weights: int
    input_bits: int
    memory_bits: int  # synapses x weight_bits (one stored weight per connection)
    shared_memory_bits: int  # unique_weights x weight_bits (kernels stored once)


@dataclass(frozen=True)
class LimitExceeded:
    """``value`` goes past the profile's ``limit`` (``None``: the feature is absent on the target).

    ``effect``: ``split`` (the layer or network is spread over several cores or chips) or
    ``unmappable`` (no placement meets it).
    """

    layer: str
    limit: str
    value: int
    limit_value: int | None
    effect: str
    note: str = ""


@dataclass(frozen=True)
class Placement:
    """One layer on one target: ``cores`` (``None``: does not fit any core), the tile per core
    ``(channels, rows, cols)`` and its loads."""

    layer: str
    cores: int | None
    tile: Shape3 | None
    core_neurons: int
    core_axons: int
    core_synapses: int
    core_memory_bits: int


@dataclass(frozen=True)
class TargetMap:
    """An export on one neuromorphic profile. ``cores`` / ``chips`` are ``None`` when a layer fits no
    core; ``fits`` is false when any limit is ``unmappable``."""

    profile: str
    profile_path: str
    storage: str  # per-connection | shared-kernel
    layers: tuple[Placement, ...]
    cores: int | None
    chips: int | None
    fits: bool
    exceeded: tuple[LimitExceeded, ...]


@dataclass(frozen=True)
class MappingReport:
    export_dir: str
    layers: tuple[LayerMap, ...]
    targets: tuple[TargetMap, ...]
    format_version: int = FORMAT_VERSION


# ---------------------------------------------------------------- geometry


def taps_per_output(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """``[n_out]``: kernel taps of each output position that land inside the input (one axis)."""
    pos = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
    return ((pos >= 0) & (pos < n_in)).sum(1)


def uses_per_input(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """``[n_in]``: (output position, tap) pairs that read each input position (one axis)."""
    pos = (np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
    return np.bincount(pos[(pos >= 0) & (pos < n_in)], minlength=n_in)


def conv_counts(in_shape: Shape3, out_channels: int, kernel: Pair, stride: Pair, padding: Pair,
                dilation: Pair = (1, 1)) -> tuple[Shape3, int, int, int]:
    """``(output (C, H, W), synapses, fan_in, fan_out)`` of a zero-padded, ungrouped conv."""
    c, size = in_shape[0], in_shape[1:]
    outs = tuple(conv_out(n, k, s, p, d) for n, k, s, p, d in zip(size, kernel, stride, padding, dilation,
                                                                  strict=True))
    if min(outs) < 1:
        raise MappingError(f"input {in_shape} with kernel {kernel} leaves no output")
    axes = list(zip(size, outs, kernel, stride, padding, dilation, strict=True))
    taps = [taps_per_output(*a) for a in axes]
    uses = [uses_per_input(*a) for a in axes]
    synapses = out_channels * c * int(taps[0].sum()) * int(taps[1].sum())
    fan_in = c * int(taps[0].max()) * int(taps[1].max())
    fan_out = out_channels * int(uses[0].max()) * int(uses[1].max())
    return (out_channels, *outs), synapses, fan_in, fan_out


def weight_bits_used(weights: np.ndarray) -> int:
    """Signed bits of the integer ``weights`` once their common trailing zero bits are removed."""
    w = np.asarray(weights)
    if not np.array_equal(w, np.round(w)):
        raise MappingError("weights are not integers (not a fixed-point export)")
    w = w.astype(np.int64).ravel()
    nz = w[w != 0]
    if nz.size == 0:
        return 1
    shift = min(int(v & -v).bit_length() - 1 for v in np.unique(np.abs(nz)))
    m = nz >> shift
    return max(max(int(m.max()), 0).bit_length(), max(-int(m.min()) - 1, 0).bit_length()) + 1


def distinct_weights(weights: np.ndarray) -> int:
    """The most distinct non-zero values in one output neuron's weights (``[C_out, ...]``)."""
    rows = np.asarray(weights).reshape(len(weights), -1)
    return max(len(np.unique(r[r != 0])) for r in rows)


def layer_map(stage: int, name: str, kind: str, in_shape: Shape3, weight: np.ndarray, kernel: Pair,
              stride: Pair, padding: Pair, dilation: Pair, input_bits: int) -> LayerMap:
    """Counts of one layer; ``weight`` ``[C_out, C_in, kh, kw]`` in integer units."""
    if weight.shape[1] != in_shape[0] or tuple(weight.shape[2:]) != tuple(kernel):
        raise MappingError(f"{name}: weight {weight.shape} does not fit input {in_shape}, kernel {kernel}")
    out, synapses, fan_in, fan_out = conv_counts(in_shape, weight.shape[0], kernel, stride, padding, dilation)
    bits = weight_bits_used(weight)
    return LayerMap(stage, name, kind, tuple(in_shape), out, tuple(kernel), tuple(stride), tuple(padding),
                    tuple(dilation), math.prod(out), synapses, int(weight.size), fan_in, fan_out, bits,
                    distinct_weights(weight), input_bits, synapses * bits, int(weight.size) * bits)


def read_export(export_dir: str | Path) -> tuple[LayerMap, ...]:
    """Every layer of an export folder (``manifest.json`` + the netx HDF5 files it names)."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir / MANIFEST_NAME)
    return tuple(m for stage in manifest.stages for m in _stage_layers(export_dir, manifest, stage.index))


def _stage_layers(export_dir: Path, manifest: ExportManifest, index: int) -> list[LayerMap]:
    stage = manifest.stages[index]
    path = export_dir / stage.hdf5
    if not path.is_file():
        raise MappingError(f"{path}: missing (named by {export_dir / MANIFEST_NAME} stages[{index}].hdf5)")
    try:
        with h5py.File(path, "r") as f:
            groups = [NetxGroup(f["layer"][k], f"{path}: layer/{k}") for k in sorted(f["layer"], key=int)]
            layers, shape = [], tuple(stage.input_shape)
            for group in groups:
                kind = group.string("type")
                if kind == "input":
                    continue
                if len(layers) == len(stage.layers):
                    raise MappingError(f"more layers than the manifest's {len(stage.layers)}")
                name, bits = stage.layers[len(layers)], stage.input_message_bits if not layers else 1
                layers.append(_read_layer(group, kind, stage.index, name, shape, bits))
                if layers[-1].output_shape != tuple(stage.layer_shapes[len(layers) - 1]):
                    raise MappingError(f"{name}: computed output {layers[-1].output_shape}, manifest says "
                                       f"{tuple(stage.layer_shapes[len(layers) - 1])}")
                shape = layers[-1].output_shape
    except (KeyError, OSError, ValueError) as err:
        raise MappingError(f"{path}: {err}") from None
    if len(layers) != len(stage.layers):
        raise MappingError(f"{path}: {len(layers)} layers, the manifest names {len(stage.layers)}")
    return layers


def _read_layer(g: NetxGroup, kind: str, stage: int, name: str, shape: Shape3, bits: int) -> LayerMap:
    any_shape = (g.dataset("weight").shape,)
    weight = g.array("weight", "iuf", any_shape)
    if kind == "dense":
        if weight.ndim != 2 or weight.shape[1] != math.prod(shape):
            raise MappingError(f"{name}: dense weight {weight.shape} does not take input {shape}")
        return layer_map(stage, name, kind, shape, weight.reshape(weight.shape[0], *shape), shape[1:],
                         (1, 1), (0, 0), (1, 1), bits)
    if kind != "conv":
        raise MappingError(f"{name}: layer type {kind!r} is not mapped (conv and dense are)")
    if int(g.integer("groups", 0, 1 << 30)) != 1:
        raise MappingError(f"{name}: grouped convolution is not mapped")
    pair = {k: tuple(int(v) for v in np.broadcast_to(g.integer(k, 0, 1 << 30, ((), (1,), (2,))), (2,)))
            for k in ("kernelSize", "stride", "padding", "dilation")}
    return layer_map(stage, name, kind, shape, weight, pair["kernelSize"], pair["stride"], pair["padding"],
                     pair["dilation"], bits)


# ---------------------------------------------------------------- placement


@dataclass(frozen=True)
class _Axis:
    """Tile lengths along one output axis (every length; tiles aligned at multiples of it), with the
    tile count, the worst tile's input span and its kernel taps inside the input."""

    lengths: np.ndarray
    tiles: np.ndarray
    span: np.ndarray
    taps: np.ndarray


def _axis(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> _Axis:
    lengths = np.arange(1, n_out + 1)
    taps = taps_per_output(n_in, n_out, k, s, p, d)
    pos = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
    span, worst = [], []
    for t in lengths:
        tiles = [pos[a:a + t] for a in range(0, n_out, t)]
        span.append(max(np.unique(x[(x >= 0) & (x < n_in)]).size for x in tiles))
        worst.append(max(int(taps[a:a + t].sum()) for a in range(0, n_out, t)))
    return _Axis(lengths, -(-n_out // lengths), np.array(span), np.array(worst))


def _groups(c: int) -> tuple[np.ndarray, np.ndarray]:
    """Channel-group sizes: the smallest size for each group count (every load grows with the size)."""
    g = np.unique([-(-c // n) for n in range(1, c + 1)])
    return g, -(-c // g)


def _storage(profile: HwProfile) -> bool:
    flag = profile.limit("conv_weight_sharing", 0)
    if flag not in (0, 1):
        raise MappingError(f"{profile.path or profile.name}: limits.conv_weight_sharing must be 0 or 1, "
                           f"got {flag}")
    return bool(flag)


def _loads(layer: LayerMap, profile: HwProfile) -> dict[str, np.ndarray]:
    """Per-core loads, core counts and tiles over every tiling, each ``[groups, rows, cols]``."""
    c_in, geometry = layer.input_shape[0], zip(layer.input_shape[1:], layer.output_shape[1:], layer.kernel,
                                               layer.stride, layer.padding, layer.dilation, strict=True)
    ah, aw = (_axis(*axis) for axis in geometry)
    g, ng = (a[:, None, None] for a in _groups(layer.output_shape[0]))
    th, tw = ah.lengths[None, :, None], aw.lengths[None, None, :]
    connections = g * c_in * ah.taps[None, :, None] * aw.taps[None, None, :]
    stored = g * c_in * math.prod(layer.kernel) if _storage(profile) else connections
    bits = profile.limit("bits_per_synapse") or layer.weight_bits
    axons = c_in * ah.span[None, :, None] * aw.span[None, None, :]
    loads = {"neurons_per_core": g * th * tw, "fan_in": axons,
             "synapses_per_core": stored, "synaptic_memory_bits_per_core": stored * bits,
             "cores": ng * ah.tiles[None, :, None] * aw.tiles[None, None, :], "g": g, "th": th, "tw": tw}
    return dict(zip(loads, np.broadcast_arrays(*loads.values()), strict=True))


def place_layer(layer: LayerMap, profile: HwProfile) -> tuple[Placement, list[LimitExceeded]]:
    """The fewest cores for ``layer`` on ``profile`` and every per-core limit it goes past."""
    loads = _loads(layer, profile)
    ok = np.ones(loads["cores"].shape, bool)
    for key in CORE_LIMITS:
        if profile.limit(key) is not None:
            ok &= loads[key] <= profile.limit(key)
    exceeded = []
    if not ok.any():
        i = (0, 0, 0)  # one neuron per core
        exceeded = [LimitExceeded(layer.name, k, int(loads[k][i]), profile.limit(k), "unmappable",
                                  "a single neuron does not fit one core")
                    for k in CORE_LIMITS if profile.limit(k) is not None and loads[k][i] > profile.limit(k)]
        return Placement(layer.name, None, None, *(int(loads[k][i]) for k in CORE_LIMITS)), exceeded
    cores = np.where(ok, loads["cores"], np.iinfo(np.int64).max)
    i = np.unravel_index(int(np.argmin(cores)), cores.shape)
    whole = (-1, -1, -1)  # the largest tile: the whole layer on one core
    exceeded = [LimitExceeded(layer.name, k, int(loads[k][whole]), profile.limit(k), "split",
                              f"spread over {int(cores[i])} cores")
                for k in CORE_LIMITS if profile.limit(k) is not None and loads[k][whole] > profile.limit(k)]
    tile = tuple(int(loads[k][i]) for k in ("g", "th", "tw"))
    return Placement(layer.name, int(cores[i]), tile, *(int(loads[k][i]) for k in CORE_LIMITS)), exceeded


def layer_limits(layer: LayerMap, profile: HwProfile) -> list[LimitExceeded]:
    """Limits that no placement can meet: weight width, fan-out, weights per neuron, input messages."""
    out = []
    for key, value in (("weight_bits", layer.weight_bits), ("fan_out", layer.fan_out),
                       ("distinct_weights_per_neuron", layer.distinct_weights)):
        limit = profile.limit(key)
        if limit is not None and value > limit:
            out.append(LimitExceeded(layer.name, key, value, limit, "unmappable"))
    graded = profile.limit("graded_spike_bits")
    if layer.input_bits > 1 and (graded is None or layer.input_bits > graded):
        out.append(LimitExceeded(layer.name, "graded_spike_bits", layer.input_bits, graded, "unmappable",
                                 "graded input from the GPU" + ("" if graded else "; binary spikes only")))
    return out


def map_target(layers: tuple[LayerMap, ...], profile: HwProfile) -> TargetMap:
    """Place every layer of an export on ``profile`` (a neuromorphic profile)."""
    if profile.target != "neuromorphic":
        raise MappingError(f"{profile.path or profile.name}: target is {profile.target!r}, not neuromorphic")
    shared = _storage(profile)
    placements, exceeded = [], []
    for layer in layers:
        placement, over = place_layer(layer, profile)
        placements.append(placement)
        exceeded += over + layer_limits(layer, profile)
    cores = chips = None
    if all(p.cores is not None for p in placements):
        cores = sum(p.cores for p in placements)
        stored = sum(p.cores * p.core_synapses if shared else layer.synapses
                     for p, layer in zip(placements, layers, strict=True))
        needs = {"cores_per_chip": cores, "neurons_per_chip": sum(la.neurons for la in layers),
                 "synapses_per_chip": stored}
        chips = max([1] + [-(-v // profile.limit(k)) for k, v in needs.items() if profile.limit(k)])
        exceeded += [LimitExceeded("network", k, v, profile.limit(k), "split", f"spread over {chips} chips")
                     for k, v in needs.items() if profile.limit(k) and v > profile.limit(k)]
    fits = cores is not None and not any(e.effect == "unmappable" for e in exceeded)
    return TargetMap(profile.name, profile.path, "shared-kernel" if shared else "per-connection",
                     tuple(placements), cores, chips, fits, tuple(exceeded))


def neuromorphic_profiles() -> list[HwProfile]:
    """Every shipped profile whose target is neuromorphic."""
    profiles = [load_profile(name) for name in builtin_profiles()]
    return [p for p in profiles if p.target == "neuromorphic"]


def map_export(export_dir: str | Path, profiles: list[HwProfile] | None = None) -> MappingReport:
    """The mapping report of an export folder on ``profiles`` (default: every neuromorphic profile)."""
    layers = read_export(export_dir)
    profiles = neuromorphic_profiles() if profiles is None else profiles
    return MappingReport(str(export_dir), layers, tuple(map_target(layers, p) for p in profiles))


def mapping_to_dict(report: MappingReport) -> dict:
    """JSON-ready dict of a report (tuples become lists)."""
    return dataclasses.asdict(report)


def write_mapping(report: MappingReport, path: str | Path) -> Path:
    """Write ``report`` as JSON atomically (temporary file, then rename); returns the path."""
    return write_text_atomic(path, json.dumps(mapping_to_dict(report), indent=2) + "\n")


def read_mapping(path: str | Path) -> MappingReport:
    """Read a ``mapping.json`` written by :func:`write_mapping`, field by field; a
    :class:`MappingError` naming the file and the field otherwise."""
    return read_record(path, MappingReport, MappingError, format_version=FORMAT_VERSION)
