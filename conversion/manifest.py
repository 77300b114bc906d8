"""Export manifest: what was exported, in which shapes and units, with a JSON writer and reader.

One :class:`StageManifest` per netx HDF5 (one network between two GPU fusion points), collected in an
:class:`ExportManifest` written as ``manifest.json`` next to the HDF5 files. Shapes are given in both
layouts: SLAYER ``(C, H, W)`` (PyTorch side) and Lava ``(x, y, c)``. The reader is strict: a wrong
``format_version``, a missing or an unknown key is a :class:`ManifestError` naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from respike_nm.atomic import write_text_atomic

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

Shape3 = tuple[int, int, int]


class ManifestError(ValueError):
    """A manifest file that does not fit this version of the schema."""


@dataclass(frozen=True)
class StageManifest:
    """One exported stage network.

    ``layers``: the model's module names, in order (``snn.stem``, ``snn.stages.0.0``, ...).
    ``snn_stages``: the SNN stages it holds (0 is the stem, 1-4 the stages). ``fused_after``: the
    1-based SNN stage whose output leaves this network for GPU fusion, ``None`` when it goes to the
    head. ``input_shape`` / ``output_shape`` / ``layer_shapes``: SLAYER ``(C, H, W)``; the ``_xyc``
    twins are Lava's ``(x, y, c)``. ``time_steps``: T' per clip (the netx ``reset_interval``).
    Graded input: the chip receives the integers ``round(input_scale * x)`` in messages of
    ``input_message_bits`` (signed); the first layer's threshold and bias are scaled by
    ``input_scale``. ``reset_offset``: the netx ``Network(reset_offset=...)`` that aligns the resets
    with clip boundaries; clip ``k``, step ``t`` of layer ``i`` is read at Lava sink index
    ``k * time_steps + t + i + reset_offset``. ``sha256``: hex digest of the HDF5 file as written
    (``None`` in exports made before it was recorded).
    """

    index: int
    hdf5: str
    layers: tuple[str, ...]
    snn_stages: tuple[int, ...]
    fused_after: int | None
    input_shape: Shape3
    output_shape: Shape3
    layer_shapes: tuple[Shape3, ...]
    input_shape_xyc: Shape3
    output_shape_xyc: Shape3
    time_steps: int
    input_scale: int
    input_message_bits: int
    reset_offset: int = 1
    sha256: str | None = None

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.layer_shapes) or not self.layers:
            raise ManifestError(f"stage {self.index}: {len(self.layers)} layers but "
                                f"{len(self.layer_shapes)} layer_shapes")
        if self.layer_shapes[-1] != self.output_shape:
            raise ManifestError(f"stage {self.index}: output_shape {self.output_shape} is not the last "
                                f"layer's shape {self.layer_shapes[-1]}")
        for name in ("time_steps", "input_scale", "input_message_bits"):
            if getattr(self, name) < 1:
                raise ManifestError(f"stage {self.index}: {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExportManifest:
    """A whole export: its stages in execution order, plus provenance.

    ``frame_shape``: the ``(H, W)`` of the residual frames the export was sized for.
    ``checkpoint_sha256`` and ``versions`` (package -> version) are provenance, filled by the caller.
    """

    stages: tuple[StageManifest, ...]
    snn_arch: str
    fusion: str
    frame_shape: tuple[int, int]
    checkpoint_sha256: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ManifestError(f"format_version: this reader knows {FORMAT_VERSION}, "
                                f"the manifest says {self.format_version!r}")
        if [s.index for s in self.stages] != list(range(len(self.stages))):
            raise ManifestError(f"stages: indices must be 0..{len(self.stages) - 1} in order")


def manifest_to_dict(manifest: ExportManifest) -> dict:
    """Plain JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(manifest)


def manifest_from_dict(data: dict) -> ExportManifest:
    """Inverse of :func:`manifest_to_dict`; raises :class:`ManifestError` naming a bad field."""
    if not isinstance(data, dict):
        raise ManifestError(f"a manifest is a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(f"format_version: this reader knows {FORMAT_VERSION}, the manifest says "
                            f"{version!r}")
    _check_types(data)
    fields = _checked_fields(ExportManifest, data, "manifest")
    stages = fields.pop("stages")
    if not isinstance(stages, list):
        raise ManifestError("stages: expected a list")
    records = tuple(StageManifest(**_tuples(_checked_fields(StageManifest, s, f"stages[{i}]")))
                    for i, s in enumerate(stages))
    fields["frame_shape"] = tuple(fields["frame_shape"])
    return ExportManifest(stages=records, **fields)


def write_manifest(manifest: ExportManifest, path: str | Path) -> Path:
    """Write ``manifest`` as JSON atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(manifest_to_dict(manifest), indent=2) + "\n")
    return path


def read_manifest(path: str | Path) -> ExportManifest:
    """Read a manifest written by :func:`write_manifest`."""
    try:
        return manifest_from_dict(json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not JSON ({err})") from None
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked_fields(cls: type, data: dict, where: str) -> dict:
    """``data`` restricted to ``cls``'s fields; unknown keys and missing required keys are errors."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}")
    required = [n for n, f in known.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    return dict(data)


def _tuples(value):
    """Lists (at any depth) back to tuples, as the frozen records hold them."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _check_types(data: dict) -> None:
    _check_fields(ExportManifest, data, "")
    if isinstance(data.get("stages"), list):
        for i, stage in enumerate(data["stages"]):
            if isinstance(stage, dict):
                _check_fields(StageManifest, stage, f"stages[{i}].")


def _check_fields(cls: type, data: dict, where: str) -> None:
    for name, hint in typing.get_type_hints(cls).items():
        if name in data and name != "stages" and not _conforms(data[name], hint):
            raise ManifestError(f"{where}{name}: expected {_describe(hint)}, got {data[name]!r}")


def _conforms(value, hint) -> bool:
    """Whether a JSON value fits a field annotation (JSON lists stand for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(k, args[0]) and _conforms(v, args[1])
                                               for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    plain = isinstance(hint, type) and typing.get_origin(hint) is None  # tuple[int, int] is a type in 3.10
    return hint.__name__ if plain else str(hint)
