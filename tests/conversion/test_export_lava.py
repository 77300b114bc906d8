"""Export to netx HDF5 and Lava fixed-point simulation, bit-exact against the quantized PyTorch reference.

Lava forks one process per process model and uses /dev/shm: networks are tiny, tests run serially and
every run stops its network (:func:`conversion.lava_sim.run_stage`).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import randomize
from lava.lib.dl.netx.hdf5 import Network

from conversion.export import ExportError, export_model, export_stage, stage_blocks
from conversion.hybrid import hybrid_logits
from conversion.lava_sim import run_stage
from conversion.manifest import (
    FORMAT_VERSION,
    ExportManifest,
    ManifestError,
    StageManifest,
    read_manifest,
    write_manifest,
)
from conversion.verify import model_stage, reference_stage, verify_model, verify_stage
from respike_nm.models.deploy import DeployError, cut_stages
from respike_nm.models.fixed_point import (
    DEFAULT_SPEC,
    FixedPointSpec,
    bias_to_int,
    graded_integers,
    weight_to_int,
)
from respike_nm.models.neurons import CubaParams, paper_lif
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNNSpec, SpikingConv

GAIN = 2.5  # weight scale that keeps every layer of the random stacks spiking at 10-60 %
PAPER_LIF = paper_lif()
SPEC = DEFAULT_SPEC


def random_stack(seed: int, cin: int, channels: tuple[int, ...], strides: tuple[int, ...],
                 backend: str = "slayer", neuron: CubaParams = PAPER_LIF,
                 spec: FixedPointSpec = SPEC, gain: float = GAIN) -> list[SpikingConv]:
    """Quantized SpikingConv layers (first one graded input) with random weights and BN statistics."""
    g = torch.Generator().manual_seed(seed)
    snn = SNNSpec(quant=spec, backend=backend, neuron=neuron)
    layers = []
    for i, (cout, stride) in enumerate(zip(channels, strides, strict=True)):
        layers.append(randomize(SpikingConv(cin, cout, stride, snn, graded_input=i == 0), g, gain).eval())
        cin = cout
    return layers


def graded_clips(seed: int, n: int, shape: tuple[int, int, int], steps: int) -> torch.Tensor:
    """Real-valued (signed) stage input ``[N, C, H, W, T]``."""
    return torch.randn(n, *shape, steps, generator=torch.Generator().manual_seed(1000 + seed))


STACKS = [
    pytest.param(0, (3, 6, 10), (4, 6), (1, 2), 3, "slayer", paper_lif(), id="paper-6x10-s1s2-T3"),
    pytest.param(1, (3, 7, 10), (5, 8, 6), (2, 1, 2), 5, "slayer", paper_lif(), id="paper-7x10-s2s1s2-T5"),
    pytest.param(2, (2, 9, 5), (6, 4), (2, 2), 5, "norse", CubaParams(current_decay=0.5, voltage_decay=0.25),
                 id="norse-cuba-9x5-T5"),
    pytest.param(3, (8, 4, 6), (8, 16), (1, 1), 3, "slayer", paper_lif(), id="paper-8ch-4x6-T3"),
]


@pytest.mark.lava
@pytest.mark.parametrize("seed, shape, channels, strides, steps, backend, neuron", STACKS)
def test_random_stack_is_bit_exact(tmp_path, seed, shape, channels, strides, steps, backend, neuron):
    layers = random_stack(seed, shape[0], channels, strides, backend, neuron)
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    result = verify_stage(layers, record, tmp_path, graded_clips(seed, 2, shape, steps))
    assert result.spike_mismatch == 0
    assert result.layer_mismatch == (0,) * len(layers)
    assert result.model_mismatch == 0
    assert all(0.01 < rate < 0.9 for rate in result.layer_rates), result.layer_rates  # not a trivial match
    assert result.max_drive < DEFAULT_SPEC.state_limit
    assert result.steps_per_second > 0


@pytest.mark.lava
def test_small_weights_run_bit_exact_with_their_weight_gain(tmp_path):
    """Wide layers with small folded weights (most below 1/64: they would all round to 0 on the plain
    1/32 grid) get a weight gain G > 1; the chip then holds G w and a G times larger threshold, and
    Lava still agrees with the reference and the model spike for spike."""
    shape, steps = (3, 8, 8), 3
    layers = random_stack(11, shape[0], (32, 48), (1, 1), gain=0.6)
    w, b = layers[1].synapse.folded()
    chip = layers[1].chip_layer()
    assert float((w.abs() < 1 / 64).float().mean()) > 0.4 and chip.weight_gain >= 8
    assert chip.device.threshold_mant == 64 * chip.weight_gain
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    result = verify_stage(layers, record, tmp_path, 3 * graded_clips(11, 3, shape, steps))
    assert result.spike_mismatch == 0 and result.model_mismatch == 0
    assert all(0.01 < rate < 0.9 for rate in result.layer_rates), result.layer_rates


@pytest.mark.lava
def test_clips_back_to_back_equal_separate_runs(tmp_path):
    shape, steps = (3, 5, 6), 3
    layers = random_stack(7, shape[0], (4, 5), (1, 2))
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    graded = graded_integers(graded_clips(7, 3, shape, steps), layers[0].quant).numpy()
    together = run_stage(tmp_path / "stage.net", graded, time_steps=steps,
                         input_message_bits=record.input_message_bits)
    for k in range(3):
        alone = run_stage(tmp_path / "stage.net", graded[k:k + 1], time_steps=steps,
                          input_message_bits=record.input_message_bits)
        for layer in range(len(layers)):
            np.testing.assert_array_equal(together.layer_spikes[layer][k:k + 1], alone.layer_spikes[layer])
    outputs = together.output.reshape(3, -1)
    assert not (outputs[0] == outputs[1]).all() and not (outputs[1] == outputs[2]).all()  # clips differ


def seeded_multiscale_hybrid() -> tuple[ReSpike, torch.Generator]:
    """A tiny quantized hybrid, multi-scale fusion (three stage networks), SNN weights randomized from
    seed 0; returns the model and the generator, to randomize more from the same stream."""
    torch.manual_seed(0)
    spec = ReSpikeSpec(kind="hybrid", num_classes=3, stride=4, ann_width=0.125, fusion="multiscale",
                       snn=SNNSpec(width=0.125, quant=DEFAULT_SPEC))
    model = ReSpike(spec).eval()
    g = torch.Generator().manual_seed(0)
    for layer in model.snn.modules():
        if isinstance(layer, SpikingConv):
            randomize(layer, g)
    return model, g


@pytest.mark.lava
def test_model_export_and_verify(tmp_path):
    """A tiny hybrid ReSpike, multi-scale fusion: three stage networks; fused features enter graded."""
    model, g = seeded_multiscale_hybrid()
    with torch.no_grad():
        for p in model.fusion.parameters():
            if p.dim() == 4:
                p.normal_(0, 0.5, generator=g)  # the zero-initialised output conv: make fused features graded
    manifest = export_model(model, tmp_path, frame_shape=(12, 20))
    assert [s.layers[0] for s in manifest.stages] == ["snn.stem", "snn.stages.2.0", "snn.stages.3.0"]
    assert [s.fused_after for s in manifest.stages] == [2, 3, 4]
    assert read_manifest(tmp_path / "manifest.json") == manifest
    video = torch.randn(1, 8, 3, 12, 20, generator=torch.Generator().manual_seed(3))
    results = verify_model(model, manifest, tmp_path, video)
    assert [r.spike_mismatch for r in results] == [0, 0, 0]
    assert all(not any(r.layer_mismatch) for r in results)
    assert results[0].clips == 2 and results[0].time_steps == 3
    assert all(0.01 < rate < 0.9 for r in results for rate in r.layer_rates), [r.layer_rates for r in results]


@pytest.mark.lava
def test_hybrid_reuses_verified_runs_only_on_identical_input(tmp_path):
    """The hybrid runner takes a verified stage's Lava output when its own graded input is identical
    (the Lava run is exact, so every stage's input is reproduced) and runs Lava itself otherwise;
    its logits are those of a hybrid that runs every stage afresh."""
    model, g = seeded_multiscale_hybrid()
    with torch.no_grad():
        for p in model.fusion.parameters():
            if p.dim() == 4:
                p.normal_(0, 0.5, generator=g)
    manifest = export_model(model, tmp_path, frame_shape=(12, 20))
    video = torch.randn(1, 8, 3, 12, 20, generator=torch.Generator().manual_seed(3))
    runs: dict = {}
    assert [r.spike_mismatch for r in verify_model(model, manifest, tmp_path, video, runs)] == [0, 0, 0]
    fresh = hybrid_logits(model, manifest, tmp_path, video)
    reused = hybrid_logits(model, manifest, tmp_path, video, known=runs)
    assert (fresh.reused, reused.reused) == (0, 3)
    torch.testing.assert_close(reused.logits, fresh.logits, rtol=0, atol=0)
    assert reused.lava_steps == fresh.lava_steps == sum(run.steps for _, run in runs.values())
    graded, run = runs[1]
    changed = graded.copy()
    changed.flat[0] += 1  # one input integer differs: that stage must run again
    partly = hybrid_logits(model, manifest, tmp_path, video, known={**runs, 1: (changed, run)})
    assert partly.reused == 2
    torch.testing.assert_close(partly.logits, fresh.logits, rtol=0, atol=0)


def test_exported_hdf5_reads_back_with_netx(tmp_path):
    shape, scale = (3, 6, 10), 16
    layers = random_stack(4, shape[0], (4, 6), (2, 1))
    export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=3)
    net = Network(net_config=str(tmp_path / "stage.net"))
    assert len(net.layers) == 2 and net.in_layer.synapse.input_shape == (10, 6, 3)
    for i, (layer, block) in enumerate(zip(layers, net.layers, strict=True)):
        weight, bias = (t.detach() for t in layer.synapse.folded())
        s = scale if i == 0 else 1
        g = layer.gain_of(weight, bias)  # the weight gain: weights, bias and threshold x g
        w_int = weight_to_int(g * weight).numpy()
        expected = w_int[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)  # netx: flipped kernel, (Co, x, y, Ci)
        np.testing.assert_array_equal(block.synapse.weight.init, expected)
        b_int = bias_to_int(g * bias).numpy() * s
        np.testing.assert_array_equal(block.neuron.bias_mant.init[0, 0], b_int)
        assert int(block.neuron.vth.init) == 64 * s * g
        assert (int(block.neuron.du.init) + 1, int(block.neuron.dv.init)) == (4096, 3072)


def test_slayer_blocks_agree_with_reference():
    """The exported SLAYER blocks themselves, run in PyTorch on ``round(S x)``, give the reference spikes."""
    shape, steps = (3, 6, 10), 5
    layers = random_stack(5, shape[0], (4, 6), (1, 2))
    blocks = stage_blocks(tuple(layers), shape, steps, ("a", "b"))
    x = graded_clips(5, 2, shape, steps)
    ref = reference_stage(layers, x).spikes
    out = graded_integers(x, layers[0].quant).float()
    with torch.no_grad():
        for block, expected in zip(blocks[1:], ref, strict=True):
            out = block(out)
            assert torch.equal(out, expected)


def test_resnet_snn_is_refused():
    spec = ReSpikeSpec(kind="snn", snn=SNNSpec(arch="resnet", width=0.125, quant=DEFAULT_SPEC))
    with pytest.raises(DeployError, match=r"residual add in snn\.stages\.0\.0: netx 0\.6\.0 loads"):
        cut_stages(ReSpike(spec), quantized=True)


def test_float_layers_and_wide_weights_are_refused(tmp_path):
    float_layer = SpikingConv(3, 4, 1, SNNSpec(), graded_input=True)
    with pytest.raises(ExportError, match="stem.*not quantized"):
        export_stage([float_layer], tmp_path / "x.net", input_shape=(3, 4, 4), time_steps=3, names=("stem",))
    wide = random_stack(0, 3, (4,), (1,), spec=dataclasses.replace(DEFAULT_SPEC, weight_bits=9), gain=40.0)
    with pytest.raises(ExportError, match=r"conv1: integer weights reach .* outside Loihi's \[-256, 254\]"):
        export_stage(wide, tmp_path / "x.net", input_shape=(3, 4, 4), time_steps=3, names=("conv1",))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_stage_cuts_follow_fusion():
    def names(fusion: str, kind: str = "hybrid") -> list[tuple[int, ...]]:
        spec = ReSpikeSpec(kind=kind, fusion=fusion, ann_width=0.125,
                           snn=SNNSpec(width=0.125, quant=DEFAULT_SPEC))
        return [s.snn_stages for s in cut_stages(ReSpike(spec), quantized=True)]

    assert names("multiscale") == [(0, 1, 2), (3,), (4,)]
    assert names("downsample") == [(0, 1), (2,), (3,), (4,)]
    assert names("late") == names("none") == names("multiscale", kind="snn") == [(0, 1, 2, 3, 4)]


def _manifest() -> ExportManifest:
    stage = StageManifest(
        index=0, hdf5="stage0.net", layers=("snn.stem", "snn.stages.0.0"), snn_stages=(0, 1), fused_after=1,
        input_shape=(3, 6, 10), output_shape=(8, 2, 3), layer_shapes=((4, 3, 5), (8, 2, 3)),
        input_shape_xyc=(10, 6, 3), output_shape_xyc=(3, 2, 8), time_steps=3, input_scale=16,
        input_message_bits=16, reset_offset=1)
    later = dataclasses.replace(stage, index=1, hdf5="stage1.net", fused_after=None, snn_stages=(2,))
    return ExportManifest(stages=(stage, later), snn_arch="plain", fusion="downsample", frame_shape=(6, 10),
                          checkpoint_sha256="ab" * 32, versions={"lava-nc": "0.10.0"})


def test_manifest_round_trip_field_by_field(tmp_path):
    manifest = _manifest()
    back = read_manifest(write_manifest(manifest, tmp_path / "manifest.json"))
    for f in dataclasses.fields(ExportManifest):
        if f.name != "stages":
            assert getattr(back, f.name) == getattr(manifest, f.name), f.name
    for ours, theirs in zip(manifest.stages, back.stages, strict=True):
        for f in dataclasses.fields(StageManifest):
            assert getattr(theirs, f.name) == getattr(ours, f.name), f.name
            assert type(getattr(theirs, f.name)) is type(getattr(ours, f.name)), f.name
    assert back == manifest


def test_manifest_with_wrong_version_or_fields_is_rejected(tmp_path):
    path = write_manifest(_manifest(), tmp_path / "manifest.json")
    data = json.loads(path.read_text())
    for change, field in [({"format_version": FORMAT_VERSION + 1}, "format_version"),
                          ({"shapes": []}, "shapes")]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ManifestError, match=field):
            read_manifest(path)
    data["stages"][0].pop("time_steps")
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"stages\[0\]: missing field\(s\) time_steps"):
        read_manifest(path)


def _one_neuron_layer() -> SpikingConv:
    """1 -> 1 channel graded layer whose folded, quantized weight is one centre tap of 1/32 (W = 2)."""
    spec = DEFAULT_SPEC
    layer = SpikingConv(1, 1, 1, SNNSpec(quant=spec), graded_input=True)
    with torch.no_grad():
        layer.synapse.conv.weight.zero_()
        layer.synapse.conv.weight[0, 0, 1, 1] = (1 / 32) / 0.75 * (1 + layer.synapse.bn.eps) ** 0.5
    return layer.eval()


# x = 1/16, 0, 32: model state (1/4096 of an input unit) 8, then 8 >> 2 = 2, then 2 >> 2 = 0 (the chip,
# 16x finer, keeps the half unit) + 4096: the model sits exactly at threshold, the chip just above it.
EDGE_INPUT = torch.tensor([1 / 16, 0.0, 32.0]).reshape(1, 1, 1, 1, 3)


@pytest.mark.lava
def test_one_neuron_leak_edge_case_is_bit_exact_in_lava(tmp_path):
    layer = _one_neuron_layer()
    record = export_stage([layer], tmp_path / "one.net", input_shape=(1, 1, 1), time_steps=3)
    result = verify_stage([layer], record, tmp_path, EDGE_INPUT)
    assert result.spike_mismatch == 0
    assert reference_stage([layer], EDGE_INPUT).spikes[0].flatten().tolist() == [0, 0, 1]


def test_model_graded_layer_matches_chip_arithmetic():
    layer = _one_neuron_layer()
    assert torch.equal(model_stage([layer], EDGE_INPUT)[0], reference_stage([layer], EDGE_INPUT).spikes[0])
