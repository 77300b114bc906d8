"""Bad exports are refused before netx reads them, with the file and field named; nothing is overwritten.

The library cases corrupt copies of one real export (a seeded tiny multi-scale ReSpike: three stage
networks) and expect :func:`conversion.netx_check.check_export` to name the field; the command-line
case trains and exports a tiny run, simulates it once in Lava, then feeds ``respike-nm simulate`` the
same corruptions and expects exit 2, one line on stderr and ``verify.json`` byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SMALL_TRAIN, liven_run
from lava.lib.dl.netx.hdf5 import Network
from test_export_lava import seeded_multiscale_hybrid

from conversion.export import export_model
from conversion.manifest import ManifestError, read_manifest
from conversion.netx_check import ExportFileError, check_export
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.checkpoint import load_checkpoint, save_checkpoint
from respike_nm.train.loop import train
from respike_nm.train.run import CHECKPOINT


@pytest.fixture(scope="module")
def good_export(tmp_path_factory) -> Path:
    """A real export of a seeded tiny hybrid, multi-scale fusion: stage0.net (5 convs), stage1/2 (2 each)."""
    model, _ = seeded_multiscale_hybrid()
    out = tmp_path_factory.mktemp("good") / "export"
    export_model(model, out, frame_shape=(12, 20))
    return out


@pytest.fixture
def export(good_export, tmp_path) -> Path:
    return Path(shutil.copytree(good_export, tmp_path / "export"))


# --- HDF5 corruptions: (h5py edit of one stage file, substrings the message must hold) -------------------

def _replace(f: h5py.File, key: str, data) -> None:
    del f[key]
    f.create_dataset(key, data=data)


def _drop(key):
    return lambda f: f.__delitem__(key)


def _edit(key, fn):
    return lambda f: _replace(f, key, fn(f[key][()]))


def _add_group(f: h5py.File) -> None:
    f.copy("layer/2", "layer/3")  # stage1.net has layer/0..2: one conv more than the manifest lists


def _add_input_neuron(f: h5py.File) -> None:
    f.copy("layer/1/neuron", "layer/0/neuron")


HDF5_CASES = [
    ("stage0.net", _drop("layer/1/weight"), ["layer/1 (snn.stem)", "weight: missing dataset"]),
    ("stage2.net", _drop("layer/2/neuron/vThMant"), ["layer/2 (snn.stages.3.1)", "neuron/vThMant: missing"]),
    ("stage0.net", _drop("layer/3/stride"), ["layer/3 (snn.stages.0.1)", "stride: missing dataset"]),
    ("stage0.net", _drop("layer/0/shape"), ["layer/0 (input)", "shape: missing dataset"]),
    ("stage1.net", _edit("layer/1/weight", lambda w: w[:-1]), ["layer/1 (snn.stages.2.0)", "weight: shape",
                                                                "31 out x 16 in channels"]),
    ("stage0.net", _edit("layer/1/weight", lambda w: w[:, :, :2, :2]), ["layer/1 (snn.stem)", "kernel 2x2"]),
    ("stage0.net", _edit("layer/2/weight", lambda w: w.astype("S8")), ["layer/2", "weight: dtype |S8"]),
    ("stage0.net", _edit("layer/2/weight", lambda w: w.astype(bool)), ["layer/2", "weight: dtype bool"]),
    ("stage0.net", _edit("layer/2/weight", lambda w: w + 0.5), ["layer/2", "weight", "whole numbers"]),
    ("stage0.net", _edit("layer/2/weight", lambda w: w + 300), ["layer/2", "weight", "outside [-256, 254]"]),
    ("stage0.net", _edit("layer/1/bias", lambda b: b[:-1]), ["layer/1 (snn.stem)", "bias: shape (7,)"]),
    ("stage0.net", _edit("layer/4/shape", lambda s: s.astype(float)), ["layer/4", "shape: dtype float64"]),
    ("stage0.net", _edit("layer/4/shape", lambda s: s + 1), ["layer/4", "shape: (17, 3, 4)", "(16, 2, 3)"]),
    ("stage0.net", _edit("layer/4/stride", lambda s: s[:1]), ["layer/4", "stride: shape (1,)"]),
    ("stage0.net", _edit("layer/1/groups", lambda g: 2), ["layer/1", "groups: 2"]),
    ("stage1.net", _edit("layer/2/neuron/vThMant", lambda v: float(v)), ["neuron/vThMant: dtype float64"]),
    ("stage1.net", _edit("layer/2/neuron/vDecay", lambda v: 5000), ["neuron/vDecay", "outside [0, 4096]"]),
    ("stage1.net", _edit("layer/2/neuron/type", lambda v: b"SDNN"), ["neuron/type: 'SDNN'"]),
    ("stage1.net", _edit("layer/1/type", lambda v: np.array([b"dense"])), ["layer/1", "type: 'dense'"]),
    ("stage1.net", _add_group, ["stage1.net: layer: holds groups 0, 1, 2, 3", "unexpected: 3"]),
    ("stage1.net", _add_input_neuron, ["layer/0 (input)", "neuron: present"]),
]


@pytest.mark.parametrize("name, corrupt, expected", HDF5_CASES,
                         ids=[f"{c[0]}:{' '.join(c[2])[:40]}" for c in HDF5_CASES])
def test_corrupted_hdf5_is_rejected_naming_file_layer_and_field(export, name, corrupt, expected):
    check_export(export)  # the copy is good before the edit
    with h5py.File(export / name, "r+") as f:
        corrupt(f)
    with pytest.raises(ExportFileError) as info:
        check_export(export)
    message = str(info.value)
    assert message.startswith(str(export / name)), message
    for part in expected:
        assert part in message, message


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, expected", [
    (_truncate, "not a readable HDF5 file (Unable to"),
    (lambda p: p.write_text("layer/0/type input\n"), "not a readable HDF5 file"),
    (lambda p: p.write_bytes(b""), "not a readable HDF5 file"),
    (Path.unlink, "missing (stages[1].hdf5 of the manifest)"),
])
def test_unreadable_or_missing_stage_file_is_rejected(export, damage, expected):
    damage(export / "stage1.net")
    with pytest.raises(ExportFileError, match=r"stage1\.net: ") as info:
        check_export(export)
    assert expected in str(info.value)


def test_well_formed_but_changed_weight_is_caught_by_the_recorded_sha256(export):
    manifest = read_manifest(export / "manifest.json")
    before = hashlib.sha256((export / "stage2.net").read_bytes()).hexdigest()
    assert manifest.stages[2].sha256 == before  # recorded at export: an independent hash of the file
    with h5py.File(export / "stage2.net", "r+") as f:
        weight = f["layer/1/weight"]
        weight[0, 0, 0, 0] = 0.0 if weight[0, 0, 0, 0] else 2.0  # still a valid Loihi weight
    with pytest.raises(ExportFileError, match=r"stage2\.net: sha256 .* stages\[2\]\.sha256"):
        check_export(export)


def test_the_checks_use_the_fixed_point_target_the_manifest_records(export):
    """The export records the bit-widths its integers were made for (the model's own), and the file
    checks read them: the same files recorded as made for 6-bit weights fail on their weights."""
    data = json.loads((export / "manifest.json").read_text())
    assert data["fixed_point"] == {"weight_bits": 8, "decay_bits": 12, "threshold_bits": 17, "bias_bits": 13,
                                   "state_bits": 24, "input_scale": 16, "fused_input_scale": 4,
                                   "input_message_bits": 16}  # the loihi2 profile's (hw_profiles/loihi2.yaml)
    check_export(export)
    data["fixed_point"]["weight_bits"] = 6
    (export / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ExportFileError, match=r"weight.*\[-64, 62\]"):
        check_export(export)
    data["fixed_point"]["input_scale"] = 3
    (export / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="fixed_point: .*input_scale must be a power of two"):
        check_export(export)
    del data["fixed_point"]  # an export from before the target was recorded: the reference profile's
    (export / "manifest.json").write_text(json.dumps(data))
    assert check_export(export).fixed_point is None


def test_netx_alone_misreads_what_the_check_refuses(export):
    """Why the check exists: netx loads a half-integer weight without a word, truncating it, and a missing
    dataset is a bare KeyError."""
    with h5py.File(export / "stage1.net", "r+") as f:
        written = f["layer/1/weight"][()] + 0.5
        _replace(f, "layer/1/weight", written)
    net = Network(net_config=str(export / "stage1.net"))
    loaded = net.layers[0].synapse.weight.init.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]  # back to file order
    np.testing.assert_array_equal(loaded, np.trunc(written))
    assert (loaded != written).all()
    with pytest.raises(ExportFileError, match="whole numbers"):
        check_export(export)
    with h5py.File(export / "stage2.net", "r+") as f:
        del f["layer/2/neuron/vThMant"]
    with pytest.raises(KeyError):
        Network(net_config=str(export / "stage2.net"))


# --- manifest corruptions: (edit of the JSON dict, substrings the message must hold) ---------------------

def _set(path: tuple, value):
    def edit(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


def _pop(path: tuple):
    def edit(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data.pop(last)
    return edit


def _extra_layer(data):
    stage = data["stages"][1]
    stage["layers"].append("snn.stages.2.2")
    stage["layer_shapes"].append(stage["output_shape"])


def _chain_break(data):
    """Stage 2 takes a transposed input (its Lava twin kept consistent): stage 1 does not produce it."""
    data["stages"][2]["input_shape"], data["stages"][2]["input_shape_xyc"] = [32, 2, 1], [1, 2, 32]


def _swap_files(data):
    a, b = data["stages"][1], data["stages"][2]
    a["hdf5"], b["hdf5"] = b["hdf5"], a["hdf5"]


MANIFEST_CASES = [
    (_set(("format_version",), 2), ManifestError, ["format_version: this reader knows 1", "says 2"]),
    (_set(("format_version",), "1"), ManifestError, ["format_version"]),
    (_pop(("stages", 1, "time_steps")), ManifestError, ["stages[1]: missing field(s) time_steps"]),
    (_pop(("frame_shape",)), ManifestError, ["missing field(s) frame_shape"]),
    (_set(("stages", 0, "extra"), 1), ManifestError, ["stages[0]: unknown field(s) extra"]),
    (_set(("stages", 0, "time_steps"), "3"), ManifestError, ["stages[0].time_steps: expected int, got '3'"]),
    (_set(("stages", 2, "input_scale"), 16.0), ManifestError, ["stages[2].input_scale: expected int"]),
    (_set(("stages", 1, "fused_after"), True), ManifestError, ["stages[1].fused_after: expected int | None"]),
    (_set(("frame_shape",), [12]), ManifestError, ["frame_shape: expected tuple[int, int]"]),
    (_set(("stages", 0, "layer_shapes", 1), [8, 3]), ManifestError, ["stages[0].layer_shapes"]),
    (_set(("versions",), {"torch": 2}), ManifestError, ["versions: expected dict[str, str]"]),
    (_set(("stages",), {}), ManifestError, ["stages: expected a list"]),
    (_set(("stages", 0, "input_shape_xyc"), [12, 20, 3]), ManifestError,
     ["stages[0].input_shape_xyc: (12, 20, 3)", "(20, 12, 3)"]),
    (_chain_break, ManifestError, ["stages[2].input_shape: (32, 2, 1) but stage 1 outputs (32, 1, 2)"]),
    (_set(("stages", 1, "hdf5"), "../stage1.net"), ManifestError, ["stages[1].hdf5"]),
    # The manifest disagrees with the files it names: the HDF5 check names the layer and field.
    (_set(("stages", 0, "layer_shapes", 1), [9, 3, 5]), ExportFileError,
     ["stage0.net: layer/2 (snn.stages.0.0): shape: (8, 3, 5)", "(9, 3, 5)"]),
    (_extra_layer, ExportFileError, ["stage1.net: layer: holds groups 0, 1, 2", "3 conv layers"]),
    (_swap_files, ExportFileError, ["stage2.net: layer/0 (input): shape: (32, 1, 2)", "(16, 2, 3)"]),
]


@pytest.mark.parametrize("edit, error, expected", MANIFEST_CASES,
                         ids=[" ".join(c[2])[:50] for c in MANIFEST_CASES])
def test_bad_manifest_is_rejected_naming_the_field(export, edit, error, expected):
    path = export / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(error) as info:
        check_export(export)
    message = str(info.value)
    assert str(export) in message, message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("text, expected", [("{not json", "not JSON"), ("[]", "a manifest is a JSON object"),
                                            (None, "no such manifest")])
def test_unreadable_manifest_is_rejected(export, text, expected):
    path = export / "manifest.json"
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    with pytest.raises(ManifestError, match="manifest.json: ") as info:
        check_export(export)
    assert expected in str(info.value)


def test_manifest_without_hashes_still_reads(export):
    """Exports made before per-file hashes were recorded: ``sha256`` absent -> ``None``, still checked."""
    path = export / "manifest.json"
    data = json.loads(path.read_text())
    for stage in data["stages"]:
        del stage["sha256"]
    path.write_text(json.dumps(data))
    manifest = check_export(export)
    assert [s.sha256 for s in manifest.stages] == [None] * 3
    with h5py.File(export / "stage1.net", "r+") as f:  # without a hash, the structural checks still run
        del f["layer/1/weight"]
    with pytest.raises(ExportFileError, match="weight: missing dataset"):
        check_export(export)


# --- the command line ----------------------------------------------------------------------------------

def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_run(run: Path, dest: Path, edit) -> Path:
    """``run`` with its checkpoint rewritten by ``edit(checkpoint)``."""
    dest.mkdir()
    ck = load_checkpoint(run / CHECKPOINT)
    edit(ck)
    save_checkpoint(dest / CHECKPOINT, ck)
    return dest


def _one_error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("respike-nm: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.lava
def test_cli_refuses_bad_input_and_overwrites_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1", "model.fusion=late"]),
          "hybrid", run)
    liven_run(run)  # every SNN layer fires: the Lava run below compares them all
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0

    # Export into an existing folder: refused, the folder untouched.
    before = _tree(out)
    err = _one_error_line(capsys, main(["export", str(run), "--out", str(out)]))
    assert "already exists" in err and _tree(out) == before

    # A failing export (a stem bias no 13-bit bias_mant holds) leaves no folder, not even a temporary one.
    def huge_stem_bias(ck):
        ck.model["snn.stem.synapse.bn.bias"] = torch.full_like(ck.model["snn.stem.synapse.bn.bias"], 1e4)
    bad_run = _copy_run(run, tmp_path / "bad_run", huge_stem_bias)
    listing = sorted(p.name for p in tmp_path.iterdir())
    err = _one_error_line(capsys, main(["export", str(bad_run), "--out", str(tmp_path / "export2")]))
    assert "snn.stem" in err and "bias" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == listing

    # Another checkpoint (same weights, other bytes): simulate warns, records the mismatch (the one Lava run).
    other = _copy_run(run, tmp_path / "other_run", lambda ck: ck.history.append({"copied": True}))
    capsys.readouterr()
    assert main(["simulate", str(out), "--run", str(other), "--clips", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and str(other / CHECKPOINT) in captured.err
    result = json.loads(captured.out)
    assert result["checkpoint_matches"] is False and result["spike_mismatch"] == 0
    assert result["passed"] and result["layers_fired"] == result["layers"] == 9
    verify = (out / "verify.json").read_bytes()
    assert json.loads(verify) == result

    # Bad inputs: exit 2, one line naming the field, verify.json byte-identical. The Lava run's netx keeps
    # stage0.net open in this process, so every edit writes a new file and renames it over the old one.
    manifest_text = (out / "manifest.json").read_text()
    stage = (out / "stage0.net").read_bytes()
    cases = [
        (lambda: _json_edit(out / "manifest.json", _set(("format_version",), 7)), "format_version"),
        (lambda: _json_edit(out / "manifest.json", _set(("stages", 0, "time_steps"), "3")),
         "stages[0].time_steps: expected int"),
        (lambda: _h5_edit(out / "stage0.net", _drop("layer/1/weight")),
         "layer/1 (snn.stem): weight: missing"),
        (lambda: _h5_edit(out / "stage0.net", _edit("layer/2/weight", lambda w: w[:, :-1])),
         "layer/2 (snn.stages.0.0): weight: shape"),
        (lambda: _renamed_over(out / "stage0.net", stage[: len(stage) // 2]),
         "stage0.net: not a readable HDF5 file"),
        (lambda: _renamed_over(out / "stage0.net", b"not hdf5\n"), "stage0.net: not a readable HDF5 file"),
    ]
    for corrupt, expected in cases:
        corrupt()
        err = _one_error_line(capsys, main(["simulate", str(out), "--clips", "1"]))
        assert expected in err, err
        assert (out / "verify.json").read_bytes() == verify
        (out / "manifest.json").write_text(manifest_text)
        _renamed_over(out / "stage0.net", stage)
    assert sorted(p.name for p in out.iterdir()) == sorted(before) + ["verify.json"]  # no temporary files


def _renamed_over(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f"{path.name}.edit")
    tmp.write_bytes(data)
    return tmp.replace(path)


def _h5_edit(path: Path, corrupt) -> None:
    tmp = path.with_name(f"{path.name}.edit")
    tmp.write_bytes(path.read_bytes())
    with h5py.File(tmp, "r+") as f:
        corrupt(f)
    tmp.replace(path)


def _json_edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
