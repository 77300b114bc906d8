"""NIR export of the SNN branch: a portable second format, read back and run with norse.

One ``nir.NIRGraph`` per stage network (the SNN cut at every fusion point, as the netx export does):
``Input -> [Conv2d | Flatten? -> Affine] -> CubaLIF -> ... -> Output``, written with ``nir.write``.

Neuron mapping (time in units of one time step: ``dt = 1``, stored in the graph metadata). NIR's CubaLIF,
as norse integrates it (Euler, ``v_leak = 0``)::

    i[t] = i[t-1] + dt/tau_syn (w_in x[t] - i[t-1])      v[t] = v[t-1] + dt/tau_mem (r i[t] - v[t-1])

equals our CUBA-LIF ``u[t] = (1 - du) u[t-1] + g y[t]``, ``v[t] = (1 - dv) v[t-1] + u[t]`` (``y`` the
synapse output without the input gain ``g``) with ``tau_syn = dt / du``, ``tau_mem = dt / dv``,
``w_in = 1 / du``, ``r = g / dv`` and ``i = u / g``. ReSpike's LIF (``du = 1``, ``dv = g = 0.75``) is
``tau_syn = 1``, ``w_in = 1``, ``tau_mem = 4/3``, ``r = 1``: ``v += 0.75 (x - v)``, the paper's form.
Threshold ``v > v_threshold`` and hard reset to ``v_reset = 0`` are the same in both.

Preserved: weights and biases (BN folded), strides, paddings, shapes, decays, thresholds, the reset.
Not preserved: NIR is continuous-valued. With ``quantized`` models the weights, biases, decays and
thresholds are written as the chip's values (dyadic rationals), but Loihi's fixed-point *arithmetic* --
the leak truncated toward zero on the 1/4096 state grid, the input truncated to that grid, Lava's
24-bit wrap and saturation -- has no NIR counterpart, and graded stage inputs must be put on their
``1 / input_scale`` grid by the caller (``input_step`` in the metadata). The read-back network therefore
gives the same spikes as our float model (exactly where float arithmetic is exact), and agrees with the
fixed-point model only while no truncation acts. (A float export of a ``slayer``-backend model is the
float model of the ``norse`` backend: SLAYER's neuron is always fixed point.)

Refused (:class:`NirExportError`, naming the layer): the ``resnet`` SNN's residual adds, infinite time
constants (a decay of 0), non-square kernels, and in a quantized model a bias with ``current_decay < 1``
(Loihi adds it to the voltage, NIR to the current).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

import respike_nm
from respike_nm.atomic import write_bytes_atomic
from respike_nm.errors import RespikeError
from respike_nm.models.deploy import ChipLayer, DeployError, check_layer, cut_stages
from respike_nm.models.fixed_point import WEIGHT_SCALE
from respike_nm.models.neurons import CubaParams
from respike_nm.models.snn import SpikingConv

FORMAT = "respike-nm-nir"
FORMAT_VERSION = 1
DT = 1.0  # one time step; Loihi's step has no fixed physical duration
SUFFIX = ".nir"


class NirExportError(RespikeError, ValueError):
    """Something NIR cannot represent faithfully; the message names the layer and the reason."""


class NirFormatError(RespikeError, ValueError):
    """A file that is not a readable respike-nm NIR export; the message names the file and field."""


@dataclass(frozen=True)
class NirLayer:
    """One synapse + CUBA-LIF layer in float, input units.

    ``weight``: ``[Co, Ci, kh, kw]`` (conv) or ``[Co, Ci]`` (dense), without the input gain;
    ``bias``: ``[Co]``, added to the synapse output; ``neuron.input_gain`` multiplies both.
    ``stride``/``padding``: ``(h, w)`` for a conv, ``None`` for a dense layer. ``quantized``: the
    chip's values; ``input_step``: grid the caller must put graded input on (0: none).
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    neuron: CubaParams
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    quantized: bool = False
    input_step: float = 0.0

    @property
    def is_conv(self) -> bool:
        return self.weight.ndim == 4


@dataclass(frozen=True)
class NirStage:
    """What one written file holds."""

    index: int
    path: Path
    layers: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    fused_after: int | None
    quantized: bool


def conv_layer(name: str, layer: SpikingConv) -> NirLayer:
    """The NIR view of ``layer`` as the model computes it (quantized iff its fake quantization is on)."""
    conv, syn = layer.synapse.conv, layer.synapse
    if conv.kernel_size[0] != conv.kernel_size[1]:
        raise NirExportError(f"{name}: kernel {conv.kernel_size} is not square (nir 1.0.8 infers conv output "
                             "shapes from the kernel's first dimension only)")
    try:
        check_layer(name, layer)
    except DeployError as exc:
        raise NirExportError(str(exc)) from None
    geometry = {"stride": tuple(conv.stride), "padding": tuple(conv.padding)}
    with torch.no_grad():
        if layer.quant is None or not (layer.fake_quant and syn.fake_quant):
            weight, bias = syn.folded(with_gain=False)  # NIR's neuron applies the input gain
            return NirLayer(name, _np(weight), _np(bias), layer.base_params, **geometry)
        try:
            chip = layer.chip_layer()
        except ValueError as exc:
            raise NirExportError(f"{name}: {exc}") from None
    return chip_nir_layer(name, chip)


def chip_nir_layer(name: str, chip: ChipLayer) -> NirLayer:
    """The NIR view of a quantized layer, from its record alone: the chip's integers back in input
    units (weights ``W / (64 G)``, bias ``bias_mant / (64 S G)``) and its neuron (:func:`_chip_params`)."""
    weight = chip.weight.to(torch.float64) / (WEIGHT_SCALE * chip.weight_gain)
    bias = chip.bias_mant.to(torch.float64) / (WEIGHT_SCALE * chip.units)
    neuron = _chip_params(chip)
    if neuron.current_decay != 1 and bool((bias != 0).any()):
        raise NirExportError(f"{name}: a quantized layer adds its bias to the voltage (as Loihi); with "
                             f"current_decay {neuron.current_decay} < 1 NIR's bias, on the current, would "
                             "integrate it")
    step = 1.0 / chip.input_scale if chip.graded_input else 0.0
    return NirLayer(name, _np(weight), _np(bias), neuron, stride=chip.stride, padding=chip.padding,
                    quantized=True, input_step=step)


def _chip_params(chip: ChipLayer) -> CubaParams:
    """The neuron the chip runs, in input units: its integer decays and threshold (``vThMant / 64``
    of units ``1 / (S G)``), the gain in the weights; the surrogate as the layer trained with it."""
    d, units, sur = chip.device, chip.units, chip.params.surrogate
    return CubaParams(threshold=d.threshold_mant / (WEIGHT_SCALE * units), input_gain=1.0,
                      surrogate=replace(sur, width=sur.width / units, norse_alpha=sur.norse_alpha * units),
                      current_decay=d.current_decay / chip.spec.decay_scale,
                      voltage_decay=d.voltage_decay / chip.spec.decay_scale)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def cuba_node(name: str, params: CubaParams, shape: tuple[int, ...]) -> nir.CubaLIF:
    """``nir.CubaLIF`` equal to ``params`` (module docstring) for neurons of ``shape``; ``dt`` = 1."""
    du, dv = params.current_decay, params.voltage_decay
    if du == 0 or dv == 0:
        raise NirExportError(f"{name}: a decay of 0 (current_decay {du}, voltage_decay {dv}) is an infinite "
                             "time constant dt/0, which NIR's CubaLIF (and norse's Euler step) cannot hold")

    def full(value: float) -> np.ndarray:
        return np.full(shape, value, dtype=np.float64)

    return nir.CubaLIF(tau_syn=full(DT / du), tau_mem=full(DT / dv), r=full(params.input_gain / dv),
                       v_leak=full(0.0), v_threshold=full(params.threshold), v_reset=full(0.0),
                       w_in=full(1.0 / du), metadata={"layer": name})


def build_graph(layers: list[NirLayer] | tuple[NirLayer, ...], input_shape: tuple[int, ...],
                metadata: dict) -> nir.NIRGraph:
    """A chain graph for ``layers`` on unbatched input ``input_shape`` (``(C, H, W)`` or ``(C,)``).

    A ``Flatten`` (C, H, W order, as PyTorch) is put before a dense layer that follows a 3-D shape.
    ``metadata`` is added to the graph's (format, version, ``dt``, layer names).
    """
    if not layers:
        raise NirExportError("no layers to export")
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(input_shape))}
    shape = tuple(input_shape)
    for layer in layers:
        key = layer.name.replace(".", "_")
        if not layer.is_conv and len(shape) == 3:
            nodes[f"{key}_flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0)
            shape = (int(np.prod(shape)),)
        synapse, shape = _synapse_node(layer, shape)
        nodes[f"{key}_{'conv' if layer.is_conv else 'affine'}"] = synapse
        nodes[f"{key}_lif"] = cuba_node(layer.name, layer.neuron, shape)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    names = list(nodes)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "nir_version": nir.version,
            "respike_nm_version": respike_nm.__version__, "dt": DT, "time_unit": "time step",
            "layers": json.dumps([layer.name for layer in layers]), **metadata}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)), metadata=meta)


def _synapse_node(layer: NirLayer, shape: tuple[int, ...]) -> tuple[nir.NIRNode, tuple[int, ...]]:
    """The synapse node of ``layer`` on input ``shape`` and its output shape."""
    cin = layer.weight.shape[1]
    if shape[0] != cin or (layer.is_conv and len(shape) != 3):
        kind = " (C, H, W)" if layer.is_conv else ""
        raise NirExportError(f"{layer.name}: expects {cin} input channels{kind}, gets shape {shape}")
    if not layer.is_conv:
        return nir.Affine(weight=layer.weight, bias=layer.bias), (layer.weight.shape[0],)
    node = nir.Conv2d(input_shape=tuple(shape[1:]), weight=layer.weight, stride=layer.stride,
                      padding=layer.padding, dilation=1, groups=1, bias=layer.bias)
    out = tuple(int(s) for s in node.output_type["output"])
    if min(out) < 1:
        raise NirExportError(f"{layer.name}: input {shape} shrinks to nothing")
    return node, out


def stage_layers(model: nn.Module) -> list[tuple[int, list[NirLayer], int | None]]:
    """``(index, layers, fused_after)`` per stage network of a ReSpike model
    (:func:`respike_nm.models.deploy.cut_stages`, as the netx export)."""
    try:
        stages = cut_stages(model)
    except DeployError as exc:
        raise NirExportError(str(exc)) from None
    return [(st.index, [conv_layer(n, m) for n, m in zip(st.names, st.layers, strict=True)], st.fused_after)
            for st in stages]


def export_nir(model: nn.Module, out: str | Path, frame_shape: tuple[int, int]) -> list[NirStage]:
    """Write the SNN branch of ``model`` as NIR: ``out`` a file (``*.nir``, one stage network only) or a
    folder (``stage<i>.nir``). ``frame_shape``: ``(H, W)`` of the residual frames. Every graph is
    built before anything is written; each file appears atomically."""
    out = Path(out)
    stages = stage_layers(model)
    single = out.suffix == SUFFIX
    if single and len(stages) > 1:
        raise NirExportError(f"{out}: the model has {len(stages)} stage networks (fusion "
                             f"{model.spec.fusion!r}); give a folder instead of a {SUFFIX} file")
    shape = (stages[0][1][0].weight.shape[1], *frame_shape)
    built = []
    for index, layers, fused_after in stages:
        quantized = all(layer.quantized for layer in layers)
        graph = build_graph(layers, shape, {
            "stage": index, "fused_after": -1 if fused_after is None else fused_after,
            "quantized": int(quantized), "input_step": layers[0].input_step, "snn_arch": model.spec.snn.arch})
        path = out if single else out / f"stage{index}{SUFFIX}"
        out_shape = tuple(int(s) for s in graph.nodes["output"].output_type["output"])
        built.append((graph, NirStage(index, path, tuple(la.name for la in layers), shape, out_shape,
                                      fused_after, quantized)))
        shape = out_shape
    (out.parent if single else out).mkdir(parents=True, exist_ok=True)
    for graph, record in built:
        write_graph(graph, record.path)
    return [record for _, record in built]


def write_graph(graph: nir.NIRGraph, path: str | Path) -> None:
    """``nir.write`` in memory, then to a temporary file beside ``path`` and renamed (a full disk is a
    clean error: :func:`~respike_nm.atomic.write_bytes_atomic`)."""
    buf = io.BytesIO()
    nir.write(buf, graph)
    write_bytes_atomic(path, buf.getvalue())


def read_graph(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` with this format's checks (``format``, ``format_version`` in the graph metadata)."""
    path = Path(path)
    if not path.is_file():
        raise NirFormatError(f"{path}: no such file")
    try:
        graph = nir.read(path)
    except Exception as exc:  # h5py/nir raise OSError, KeyError, AssertionError, ...
        raise NirFormatError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    meta = graph.metadata or {}
    if meta.get("format") != FORMAT:
        raise NirFormatError(f"{path}: metadata 'format' is {meta.get('format')!r}, not {FORMAT!r}")
    version = int(meta.get("format_version", -1))
    if not 1 <= version <= FORMAT_VERSION:
        raise NirFormatError(f"{path}: metadata 'format_version' {version} is not one this reader knows "
                             f"(1..{FORMAT_VERSION})")
    return graph


def to_norse(graph: nir.NIRGraph) -> nn.Module:
    """``norse.torch.from_nir(graph, dt=...)``: a stateful module of one time step on unbatched input."""
    from norse.torch import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # nirtorch.load's notice
        return from_nir(graph, dt=float(graph.metadata.get("dt", DT)))


def load_norse(path: str | Path) -> tuple[nn.Module, nir.NIRGraph]:
    """Read ``path`` and build the norse network: ``(module, graph)``."""
    graph = read_graph(path)
    return to_norse(graph), graph


@torch.no_grad()
def run_norse(module: nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Run a read-back network on ``x [N, *input_shape, T]`` (SLAYER layout) -> spikes ``[N, *out, T]``.

    One sample at a time: NIR shapes carry no batch axis and norse 1.1.0 maps ``Flatten(start_dim=0)``
    to ``torch.nn.Flatten(0)``, which would fold a batch axis in. ``dtype``: the arithmetic (the module's
    parameters are cast to it; norse keeps its neuron constants in float32, which type promotion widens).
    """
    module.to(dtype)
    samples = []
    for xn in x.to(dtype):
        state, steps = None, []
        for t in range(xn.shape[-1]):
            z, state = module(xn[..., t], state)
            steps.append(z)
        samples.append(torch.stack(steps, dim=-1))
    return torch.stack(samples)
