"""Export manifest: what was exported, in which shapes and units, with a JSON writer and reader.

One :class:`StageManifest` per netx HDF5 (one network between two GPU fusion points), collected in an
:class:`ExportManifest` written as ``manifest.json`` next to the HDF5 files. Shapes are given in both
layouts: SLAYER ``(C, H, W)`` (PyTorch side) and Lava ``(x, y, c)``. The reader is strict: a wrong
``format_version``, a missing or an unknown key is a :class:`ManifestError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from respike_nm.atomic import write_text_atomic
from respike_nm.errors import RespikeError
from respike_nm.records import from_data, read_json, to_data

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

Shape3 = tuple[int, int, int]


class ManifestError(RespikeError, ValueError):
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
    ``fixed_point``: the bit-widths the integers were made for, the fields of the model's
    :class:`~respike_nm.models.fixed_point.FixedPointSpec` (from the run's ``quant.target`` profile,
    named in ``target``); the checks of the files use them (:func:`conversion.netx_check.export_spec`).
    An export written before they were recorded has neither: the reference Loihi 2 profile's.
    ``checkpoint_sha256``, ``versions`` (package -> version) and ``run_dir`` (the trained run it was
    exported from, absolute; empty when unknown) are provenance, filled by the caller.
    """

    stages: tuple[StageManifest, ...]
    snn_arch: str
    fusion: str
    frame_shape: tuple[int, int]
    fixed_point: dict[str, int] | None = None
    target: str = ""
    checkpoint_sha256: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    run_dir: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ManifestError(f"format_version: this reader knows {FORMAT_VERSION}, "
                                f"the manifest says {self.format_version!r}")
        if [s.index for s in self.stages] != list(range(len(self.stages))):
            raise ManifestError(f"stages: indices must be 0..{len(self.stages) - 1} in order")


def manifest_to_dict(manifest: ExportManifest) -> dict:
    """Plain JSON-ready dict (tuples become lists)."""
    return to_data(manifest)


def manifest_from_dict(data: dict) -> ExportManifest:
    """Inverse of :func:`manifest_to_dict`; raises :class:`ManifestError` naming a bad field."""
    if not isinstance(data, dict):
        raise ManifestError(f"a manifest is a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(f"format_version: this reader knows {FORMAT_VERSION}, the manifest says "
                            f"{version!r}")
    return from_data(ExportManifest, data, "manifest", ManifestError)


def write_manifest(manifest: ExportManifest, path: str | Path) -> Path:
    """Write ``manifest`` as JSON atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(manifest_to_dict(manifest), indent=2) + "\n")
    return path


def read_manifest(path: str | Path) -> ExportManifest:
    """Read a manifest written by :func:`write_manifest`."""
    data = read_json(path, ManifestError)
    try:
        return manifest_from_dict(data)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
