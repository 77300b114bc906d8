"""Check an export folder before netx loads it: bad input is refused with a message naming the field.

netx 0.6.0 trusts its HDF5: a missing dataset is a ``KeyError`` deep inside ``Network._create``, a
non-integer weight or bias is truncated by ``astype(int)``, a float ``shape`` or a one-element
``stride`` fails later inside Lava, and a file that fits no manifest entry loads as another network.
:func:`check_export` reads ``manifest.json`` strictly (JSON types included) and checks every stage
file against its :class:`~conversion.manifest.StageManifest` entry: the layout our exporter writes
(``layer/0`` an ``input`` layer without neuron, then one CUBA ``conv`` layer per manifest layer),
each dataset netx reads with its dtype, shape and range (ranges from the ``loihi2`` profile's
bit-widths), weight shapes against the manifest's layer shapes, and the file's SHA-256 when recorded.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from conversion.layout import chw_to_xyc
from conversion.manifest import (
    MANIFEST_NAME,
    ExportManifest,
    ManifestError,
    StageManifest,
    file_sha256,
    read_manifest,
)
from respike_nm.errors import RespikeError
from respike_nm.layout import conv_out
from respike_nm.models.fixed_point import DEFAULT_SPEC, FixedPointSpec

NEURON_TYPES = ("CUBA", "LOIHI")  # netx maps both to Lava's LIF; our manifest describes CUBA layers


class ExportFileError(RespikeError, ValueError):
    """A stage file that netx would misread; the message names the file, the layer and the field."""


def check_export(directory: str | Path, spec: FixedPointSpec | None = None) -> ExportManifest:
    """Read ``directory/manifest.json`` and check every stage file; returns the manifest.

    Raises :class:`~conversion.manifest.ManifestError` (manifest) or :class:`ExportFileError` (HDF5).
    ``spec``: the bit-widths to check against (default: those the manifest records, :func:`export_spec`).
    """
    directory = Path(directory)
    manifest = load_manifest(directory / MANIFEST_NAME)
    spec = spec or export_spec(manifest, directory / MANIFEST_NAME)
    for stage in manifest.stages:
        check_stage_file(directory / stage.hdf5, stage, spec)
    return manifest


def export_spec(manifest: ExportManifest, where: str | Path = "manifest") -> FixedPointSpec:
    """The fixed-point target an export was made for: its manifest's ``fixed_point`` (a manifest
    written before it was recorded: the reference Loihi 2 profile's, :data:`DEFAULT_SPEC`)."""
    if manifest.fixed_point is None:
        return DEFAULT_SPEC
    try:
        return FixedPointSpec(**manifest.fixed_point)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: fixed_point: {exc}") from None


def load_manifest(path: str | Path) -> ExportManifest:
    """:func:`~conversion.manifest.read_manifest` plus the stage chain (shapes, Lava twins, file names)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest (not an export folder?)")
    manifest = read_manifest(path)
    try:
        _check_chain(manifest)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None
    return manifest


def _check_chain(manifest: ExportManifest) -> None:
    """Lava twins of the shapes, and each stage's input equal to the previous stage's output."""
    names = [s.hdf5 for s in manifest.stages]
    for s in manifest.stages:
        where = f"stages[{s.index}]"
        if Path(s.hdf5).name != s.hdf5 or names.count(s.hdf5) > 1:
            raise ManifestError(f"{where}.hdf5: {s.hdf5!r} must be a distinct file name inside the export")
        for name, chw in (("input_shape", s.input_shape), ("output_shape", s.output_shape)):
            if getattr(s, f"{name}_xyc") != chw_to_xyc(chw):
                raise ManifestError(f"{where}.{name}_xyc: {getattr(s, f'{name}_xyc')} is not {name} "
                                    f"{chw} in Lava order {chw_to_xyc(chw)}")
        before = manifest.stages[s.index - 1].output_shape if s.index else None
        if before is not None and s.input_shape != before:
            raise ManifestError(f"{where}.input_shape: {s.input_shape} but stage {s.index - 1} "
                                f"outputs {before}")
    if manifest.stages and tuple(manifest.stages[0].input_shape[1:]) != manifest.frame_shape:
        raise ManifestError(f"stages[0].input_shape: {manifest.stages[0].input_shape} does not take frames "
                            f"of frame_shape {manifest.frame_shape}")


def check_stage_file(path: str | Path, stage: StageManifest, spec: FixedPointSpec) -> None:
    """Check one netx HDF5 against its manifest entry; raises :class:`ExportFileError`."""
    path = Path(path)
    if not path.is_file():
        raise ExportFileError(f"{path}: missing (stages[{stage.index}].hdf5 of the manifest)")
    try:
        with h5py.File(path, "r") as f:
            _check_layers(f, str(path), stage, spec)
    except OSError as err:  # h5py: not HDF5, truncated, unreadable dataset
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportFileError(f"{path}: not a readable HDF5 file ({first})") from None
    if stage.sha256 is not None and (digest := file_sha256(path)) != stage.sha256:
        raise ExportFileError(f"{path}: sha256 {digest[:12]}... differs from the manifest's "
                              f"stages[{stage.index}].sha256 {stage.sha256[:12]}...: "
                              "the file changed after export")


def _check_layers(f: h5py.File, path: str, stage: StageManifest, spec: FixedPointSpec) -> None:
    if not isinstance(f.get("layer"), h5py.Group):
        raise ExportFileError(f"{path}: layer: missing (not a netx network file)")
    keys, want = set(f["layer"].keys()), [str(i) for i in range(len(stage.layers) + 1)]
    if keys != set(want):
        extra = ", ".join(sorted(keys - set(want))) or "none"
        raise ExportFileError(
            f"{path}: layer: holds groups {', '.join(sorted(keys, key=_order))}, but the manifest's "
            f"stage {stage.index} has an input layer and {len(stage.layers)} conv layers "
            f"({', '.join(stage.layers)}): expected layer/0..{len(stage.layers)}; unexpected: {extra}")
    _check_input(NetxGroup(f["layer/0"], f"{path}: layer/0 (input)"), stage)
    shape_in = stage.input_shape
    for i, (name, shape) in enumerate(zip(stage.layers, stage.layer_shapes, strict=True), start=1):
        _check_conv(NetxGroup(f[f"layer/{i}"], f"{path}: layer/{i} ({name})"), shape_in, shape, spec)
        shape_in = shape


def _order(key: str):
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


class NetxGroup:
    """One ``layer/<i>`` group of a netx HDF5 file with typed readers whose errors name file, layer
    and field (the one reader of netx files: the checks here and the mapping report use it)."""

    def __init__(self, group, where: str, prefix: str = "") -> None:
        if not isinstance(group, h5py.Group):
            raise ExportFileError(f"{where}: {prefix or 'layer'}: not a group")
        self.group, self.where, self.prefix = group, where, prefix

    def error(self, field: str, problem: str) -> ExportFileError:
        return ExportFileError(f"{self.where}: {self.prefix}{field}: {problem}")

    def dataset(self, field: str) -> h5py.Dataset:
        ds = self.group.get(field)
        if not isinstance(ds, h5py.Dataset):
            raise self.error(field, "missing dataset" if ds is None else "a group, not a dataset")
        return ds

    def string(self, field: str) -> str:
        ds = self.dataset(field)
        if h5py.check_string_dtype(ds.dtype) is None or ds.size != 1:
            raise self.error(field, f"expected one string, got dtype {ds.dtype} shape {ds.shape}")
        value = ds[()].reshape(-1)[0] if ds.shape else ds[()]
        return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)

    def array(self, field: str, kinds: str, shapes: tuple[tuple[int, ...], ...]) -> np.ndarray:
        """A dataset of a dtype kind in ``kinds`` ("i" int, "u" unsigned, "f" float) and one of ``shapes``."""
        ds = self.dataset(field)
        if ds.dtype.kind not in kinds:
            raise self.error(field, f"dtype {ds.dtype}, expected {_KINDS[kinds]}")
        if ds.shape not in shapes:
            raise self.error(field, f"shape {ds.shape}, expected {' or '.join(map(str, shapes))}")
        return np.asarray(ds[()])

    def integer(self, field: str, lo: int, hi: int, shapes=((), (1,))) -> np.ndarray:
        value = self.array(field, "iu", shapes)
        if value.size and (value.min() < lo or value.max() > hi):
            raise self.error(field, f"{value.min()}..{value.max()} outside [{lo}, {hi}]")
        return value

    def integral(self, field: str, lo: int, hi: int, shapes: tuple[tuple[int, ...], ...]) -> np.ndarray:
        """Integer values netx casts with ``astype(int)``: an int or float dtype holding whole numbers."""
        value = self.array(field, "iuf", shapes)
        if not np.isfinite(value).all() or (value != np.round(value)).any():
            raise self.error(field, "not all whole numbers (netx would truncate them)")
        if value.size and (value.min() < lo or value.max() > hi):
            raise self.error(field, f"values {value.min():g}..{value.max():g} outside [{lo}, {hi}]")
        return value


_KINDS = {"iu": "an integer dtype", "iuf": "an integer or float dtype"}
_BIG = 1 << 30  # shapes, strides and paddings have no hardware limit of their own here


def _check_input(layer: NetxGroup, stage: StageManifest) -> None:
    if (kind := layer.string("type")) != "input":
        raise layer.error("type", f"{kind!r}, expected 'input' (the manifest's graded stage input)")
    shape = tuple(int(v) for v in layer.integer("shape", 1, _BIG, ((3,),)))
    if shape != tuple(stage.input_shape):
        raise layer.error("shape", f"{shape} but the manifest's input_shape is {tuple(stage.input_shape)}")
    if "neuron" in layer.group:
        raise layer.error("neuron", f"present, but stage {stage.index} takes graded input into its first "
                                    "conv (an input neuron would binarize it and shift the resets)")


def _check_conv(layer: NetxGroup, shape_in: tuple, shape: tuple, spec: FixedPointSpec) -> None:
    """A CUBA conv layer taking ``shape_in`` to ``shape`` (both SLAYER ``(C, H, W)``)."""
    if (kind := layer.string("type")) != "conv":
        raise layer.error("type", f"{kind!r}, expected 'conv' (the manifest's layers are convolutions)")
    got = tuple(int(v) for v in layer.integer("shape", 1, _BIG, ((3,),)))
    if got != tuple(shape):
        raise layer.error("shape", f"{got} but the manifest's layer_shapes entry is {tuple(shape)}")
    pair = ((), (2,))  # netx: a scalar, or (H, W) which it reverses to (x, y)
    stride, dilation = (_pair(layer.integer(k, 1, _BIG, pair)) for k in ("stride", "dilation"))
    padding = _pair(layer.integer("padding", 0, _BIG, pair))
    groups = int(layer.integer("groups", 0, _BIG, ((),)))
    if groups != 1:
        raise layer.error("groups", f"{groups}; the exporter writes ungrouped convolutions only")
    _check_weight(layer, shape_in, shape, stride, padding, dilation, spec)
    if "bias" in layer.group:
        layer.integral("bias", *spec.bias_mant_range, ((shape[0],), chw_to_xyc(shape)))
    _check_neuron(layer, spec)


def _pair(value: np.ndarray) -> tuple[int, int]:
    return (int(value), int(value)) if value.ndim == 0 else (int(value[0]), int(value[1]))


def _check_weight(layer: NetxGroup, shape_in, shape, stride, padding, dilation,
                  spec: FixedPointSpec) -> None:
    """``weight [C_out, C_in, kH, kW]`` (netx also takes a trailing 1) giving ``shape`` from ``shape_in``."""
    ds = layer.dataset("weight")
    if ds.ndim not in (4, 5) or (ds.ndim == 5 and ds.shape[4] != 1):
        raise layer.error("weight", f"shape {ds.shape}, expected [C_out, C_in, kH, kW]")
    cout, cin, kh, kw = ds.shape[:4]
    if (cout, cin) != (shape[0], shape_in[0]):
        raise layer.error("weight", f"shape {ds.shape}: {cout} out x {cin} in channels, the manifest's layer "
                                    f"takes {shape_in[0]} to {shape[0]} channels")
    out_hw = tuple(conv_out(n, k, s, p, d)
                   for n, k, s, p, d in zip(shape_in[1:], (kh, kw), stride, padding, dilation, strict=True))
    if out_hw != tuple(shape[1:]):
        raise layer.error("weight", f"kernel {kh}x{kw}, stride {stride}, padding {padding} map "
                                    f"{tuple(shape_in[1:])} to {out_hw}, the manifest says "
                                    f"{tuple(shape[1:])}")
    layer.integral("weight", *spec.weight_int_range, (ds.shape,))


def _check_neuron(layer: NetxGroup, spec: FixedPointSpec) -> None:
    group = layer.group.get("neuron")
    if not isinstance(group, h5py.Group):
        raise layer.error("neuron", "missing group" if group is None else "a dataset, not a group")
    neuron = NetxGroup(group, layer.where, "neuron/")
    if (kind := neuron.string("type")) not in NEURON_TYPES:
        raise neuron.error("type", f"{kind!r}, expected one of {', '.join(NEURON_TYPES)} (CUBA-LIF)")
    for key in ("iDecay", "vDecay"):
        neuron.integer(key, 0, spec.decay_scale)
    neuron.integer("vThMant", 0, spec.threshold_mant_max)
    if "messageBits" in group and int(neuron.integer("messageBits", 0, _BIG)) != 0:
        raise neuron.error("messageBits", "graded output spikes; the manifest's stages emit binary spikes")
