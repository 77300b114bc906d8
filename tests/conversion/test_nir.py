"""NIR export: file round trip field by field, same spikes from the norse network read back, refusals, CLI.

Exactness argument for the behaviour tests: our float model computes ``u = (1-du) u + g bn(conv(x))``,
``v = (1-dv) v + u``; norse's read-back computes ``i += du (w_in y - i)``, ``v += dv (r i - v)`` on the
BN-folded ``y``. These are equal in exact arithmetic, so spikes are identical whenever every intermediate
value is exactly representable. Dyadic weights (steps of 1/32), BN with ``eps = 0``, power-of-four variances
and dyadic gamma, beta, mean (steps of 1/32), inputs on 1/16 steps, gain 3/4 and decays 1, 1/2, 3/4, 1/4
keep every value on a grid of ``2**-(17 + 2T)`` below ``2**11``: at most 40 bits for T = 6, exact in
float64 (53 bits), so both sides run in float64 and equality is exact, not a tolerance. (norse computes
``1/tau`` in float32: ``1 / fl32(4/3)`` rounds to exactly 0.75; ``r = g/dv`` and ``w_in = 1/du`` are 1,
1.5, 2 or 3.) In float32 (24 bits) the same nets need not be exact: that case is tested with a stated
tolerance below.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from conftest import SMALL_TRAIN

from conversion.nir_export import (
    NirExportError,
    NirFormatError,
    NirLayer,
    build_graph,
    conv_layer,
    load_norse,
    read_graph,
    run_norse,
    stage_layers,
    to_norse,
    write_graph,
)
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.models.fixed_point import DEFAULT_SPEC
from respike_nm.models.neurons import CubaLIF, CubaParams, paper_lif
from respike_nm.models.snn import SNNSpec, SpikingConv
from respike_nm.train.builder import build_model
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

SMALL = SMALL_TRAIN + ["train.epochs=1"]


def _dyadic_layers(spec: SNNSpec, channels: list[int], strides: list[int], gen: torch.Generator):
    """SpikingConvs whose folded BN is exact in binary (see the module docstring)."""
    layers = []
    for i, (cin, cout, stride) in enumerate(zip(channels[:-1], channels[1:], strides, strict=True)):
        layer = SpikingConv(cin, cout, stride, spec, graded_input=i == 0)
        bn = layer.synapse.bn
        bn.eps = 0.0
        with torch.no_grad():
            w = layer.synapse.conv.weight
            w.copy_(torch.randint(-24, 25, w.shape, generator=gen) / 32)
            bn.running_var.copy_(4.0 ** torch.randint(-1, 2, (cout,), generator=gen))
            bn.running_mean.copy_(torch.randint(-8, 9, (cout,), generator=gen) / 32)
            bn.weight.copy_(torch.randint(16, 49, (cout,), generator=gen) / 32)
            bn.bias.copy_(torch.randint(-4, 13, (cout,), generator=gen) / 32)
        layers.append(layer.eval())
    return layers


def _write_read(tmp_path, layers, input_shape, name="net.nir"):
    graph = build_graph(layers, input_shape, {"stage": 0})
    path = tmp_path / name
    write_graph(graph, path)
    return graph, path


def _assert_same_node(a: nir.NIRNode, b: nir.NIRNode) -> None:
    assert type(a) is type(b)
    da, db = a.to_dict(), b.to_dict()
    assert set(da) == set(db)
    for key in da:
        va, vb = np.asarray(da[key]), np.asarray(db[key])
        if key == "metadata":
            assert da[key] == db[key]
        else:
            assert va.shape == vb.shape and np.array_equal(va, vb), key
            assert va.dtype.kind == vb.dtype.kind, key


def test_round_trip_field_by_field_and_against_closed_form(tmp_path):
    gen = torch.Generator().manual_seed(0)
    spec = SNNSpec(backend="norse", neuron=paper_lif())
    convs = _dyadic_layers(spec, [3, 8, 16], [2, 1], gen)
    records = [conv_layer(f"snn.l{i}", m) for i, m in enumerate(convs)]
    records.append(NirLayer("snn.fc", np.ones((5, 16 * 5 * 7)) / 8, np.zeros(5), paper_lif()))
    graph, path = _write_read(tmp_path, records, (3, 10, 13))
    back = read_graph(path)
    assert back.edges == graph.edges and set(back.nodes) == set(graph.nodes)  # HDF5 sorts names
    for name in graph.nodes:
        _assert_same_node(graph.nodes[name], back.nodes[name])
    meta = back.metadata
    assert meta["format"] == "respike-nm-nir" and int(meta["format_version"]) == 1
    assert float(meta["dt"]) == 1.0 and json.loads(meta["layers"]) == ["snn.l0", "snn.l1", "snn.fc"]
    # Independent reference: BN folded by hand, CubaLIF from ReSpike's V = 0.25 V + 0.75 X.
    m = convs[0].synapse
    scale = m.bn.weight / torch.sqrt(m.bn.running_var)
    conv0 = back.nodes["snn_l0_conv"]
    assert np.array_equal(conv0.weight, (m.conv.weight * scale[:, None, None, None]).detach().numpy())
    assert np.array_equal(conv0.bias, (m.bn.bias - m.bn.running_mean * scale).detach().numpy())
    assert tuple(conv0.stride) == (2, 2) and tuple(conv0.padding) == (1, 1)
    assert tuple(conv0.input_shape) == (10, 13)
    lif = back.nodes["snn_l1_lif"]
    assert lif.v_threshold.shape == (16, 5, 7)
    assert np.all(lif.tau_syn == 1) and np.all(lif.w_in == 1) and np.all(lif.r == 1)
    assert np.allclose(lif.tau_mem, 4 / 3, rtol=0, atol=1e-15) and np.all(lif.v_threshold == 1)
    assert np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    assert tuple(back.nodes["snn_fc_flatten"].output_type["output"]) == (16 * 5 * 7,)


def _reference(convs, dense, x, dtype=torch.float32, every=False):
    """Our PyTorch SNN in ``dtype``: SpikingConvs, then dense layers through our CubaLIF (norse, float).
    The last layer's spikes, or (``every``) a list of every layer's."""
    x, spikes = x.to(dtype), []
    with torch.no_grad():
        for layer in convs:
            x = layer.to(dtype)(x)
            spikes.append(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1]) if dense else x
        for weight, bias, params in dense:
            weight, bias = weight.to(dtype), bias.to(dtype)
            current = params.input_gain * (torch.einsum("oi,nit->not", weight, x) + bias[:, None])
            x = CubaLIF(params, backend="norse", quantize=False)(current)
            spikes.append(x)
    return spikes if every else x


@pytest.mark.parametrize("decays", [(1.0, 0.75), (0.5, 0.5), (1.0, 0.25), (0.5, 0.75)])
def test_read_back_norse_network_gives_identical_spikes(tmp_path, decays):
    gen = torch.Generator().manual_seed(int(4 * sum(decays)))
    params = CubaParams(threshold=1.0, current_decay=decays[0], voltage_decay=decays[1], input_gain=0.75)
    spec = SNNSpec(backend="norse", neuron=params)
    convs = _dyadic_layers(spec, [3, 8, 8, 16], [2, 1, 2], gen)
    dense = [(torch.randint(-8, 9, (12, 16 * 3 * 4), generator=gen) / 32, torch.full((12,), 0.25), params),
             (torch.randint(-4, 25, (6, 12), generator=gen) / 32, torch.full((6,), 0.5), params)]
    records = [conv_layer(f"c{i}", m) for i, m in enumerate(convs)]
    records += [NirLayer(f"d{i}", w.double().numpy(), b.double().numpy(), p)
                for i, (w, b, p) in enumerate(dense)]
    _, path = _write_read(tmp_path, records, (3, 10, 14))
    x = torch.randint(-24, 33, (3, 3, 10, 14, 6), generator=gen) / 16
    module, _ = load_norse(path)
    last = run_norse(module, x, torch.float64)
    got = _norse_layer_spikes(module, x.double())
    want = _reference(convs, dense, x, torch.float64, every=True)
    assert last.shape == (3, 6, 6) and torch.equal(last, want[-1])
    assert list(got) == [f"{r.name}_lif" for r in records]
    for g, w in zip(got.values(), want, strict=True):
        assert torch.equal(g, w) and 0.03 < float(w.mean()) < 0.95  # identical, and every layer active


def _assert_flips_only_at_threshold(layer: SpikingConv, x: torch.Tensor, got: torch.Tensor,
                                    want: torch.Tensor, tol: float = 1e-4) -> None:
    """A first-layer neuron's first differing spike must lie where the float64 voltage is within ``tol`` of
    the threshold (the float32 sides differ by rounding, ~1e-6 here); the layer re-simulated in float64."""
    import copy

    ref = copy.deepcopy(layer).double()
    p = layer.base_params
    with torch.no_grad():
        n, c, h, w, t = x.shape
        cur = ref.synapse(x.double().permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w))[0]
        cur = cur.reshape(n, t, *cur.shape[1:]).movedim(1, -1)
    u = v = torch.zeros_like(cur[..., 0])
    near = torch.zeros_like(cur, dtype=torch.bool)
    for step in range(t):
        u = (1 - p.current_decay) * u + cur[..., step]
        v = (1 - p.voltage_decay) * v + u
        near[..., step] = (v - p.threshold).abs() < tol
        v = torch.where(v > p.threshold, torch.zeros_like(v), v)
    diff = got != want
    first = diff & (diff.cumsum(-1) == 1)  # later flips of that neuron follow from the first one's reset
    assert not bool((first & ~near).any())


def test_float_model_with_trained_like_weights_agrees_within_rounding(tmp_path):
    """Arbitrary float weights: the two sides round differently (a few float32 ulp), so a spike can flip
    only where v lies that close to the threshold (checked in the first layer, where flips start; a flip
    then propagates). Tolerance: 1 in 10^3 of all spikes."""
    torch.manual_seed(1)
    spec = SNNSpec(backend="norse", neuron=paper_lif())
    convs = [SpikingConv(3, 16, 2, spec), SpikingConv(16, 16, 1, spec), SpikingConv(16, 32, 2, spec)]
    for m in convs:
        with torch.no_grad():
            m.synapse.conv.weight.mul_(12)
            m.synapse.bn.running_var.uniform_(0.5, 2)
            m.synapse.bn.bias.normal_(0.2, 0.2)
        m.eval()
    _, path = _write_read(tmp_path, [conv_layer(f"c{i}", m) for i, m in enumerate(convs)], (3, 20, 28))
    x = torch.randn(4, 3, 20, 28, 12)
    got, want = run_norse(load_norse(path)[0], x), _reference(convs, [], x)
    assert 0.1 < float(want.mean()) < 0.9
    assert int((got != want).sum()) <= want.numel() // 1000
    _, path1 = _write_read(tmp_path, [conv_layer("c0", convs[0])], (3, 20, 28), "first.nir")
    got1, want1 = run_norse(load_norse(path1)[0], x), _reference(convs[:1], [], x)
    _assert_flips_only_at_threshold(convs[0], x, got1, want1)


def test_quantized_export_matches_the_fixed_point_model_where_no_truncation_acts(tmp_path):
    """Quantized (chip) values; du = 1, dv = 1/2 and T = 6: graded input on 1/16, weights on 1/(32 G), biases
    on 1/(64 G) keep every state, in the layer's units of 1/(S G), on the 1/4096 grid (halving 6 times
    from 2**-6), so Loihi's truncating leak
    never truncates and the NIR network (in float64, where these values are exact) must give the
    fixed-point model's spikes exactly."""
    gen = torch.Generator().manual_seed(3)
    params = CubaParams(threshold=1.0, current_decay=1.0, voltage_decay=0.5, input_gain=1.0)
    for backend in ("norse", "slayer"):
        spec = SNNSpec(backend=backend, neuron=params, quant=DEFAULT_SPEC)
        convs = _dyadic_layers(spec, [3, 8, 16], [2, 2], gen)
        records = [conv_layer(f"c{i}", m) for i, m in enumerate(convs)]
        assert all(r.quantized for r in records) and records[0].input_step == 1 / 16
        g = convs[0].chip_layer().weight_gain  # weights on the 1/(32 g) grid
        assert np.all(records[0].weight * 32 * g == np.round(records[0].weight * 32 * g))
        _, path = _write_read(tmp_path, records, (3, 12, 10))
        x = torch.randint(-40, 41, (2, 3, 12, 10, 6), generator=gen) / 16
        got, want = run_norse(load_norse(path)[0], x, torch.float64), _reference(convs, [], x)
        assert torch.equal(got.float(), want) and float(want.mean()) > 0.05


def test_truncating_leak_is_not_preserved():
    """Hand-computed: constant input 3073/4096, threshold 1, dv = 3/4. Float v = v/4 + x first exceeds 1 at
    step 6 (v_6 = 4/3 x (1 - 4^-6) = 1.00008); Loihi's V = trunc(V/4) + 3073 gives 3073, 3841, 4033, 4081,
    4093, 4096 (not > 4096), 4097: step 7."""
    params = CubaParams(threshold=1.0, current_decay=1.0, voltage_decay=0.75, input_gain=1.0)
    x = torch.full((1, 1, 8), 3073 / 4096)
    fixed = CubaLIF(params, backend="norse", quantize=True)(x)[0, 0]
    graph = build_graph([NirLayer("n", np.ones((1, 1)), np.zeros(1), params)], (1,), {})
    read_back = run_norse(to_norse(graph), x)[0, 0]
    assert int(read_back.argmax()) == 5 and int(fixed.argmax()) == 6


def test_refusals_name_the_layer(tmp_path):
    resnet = apply_overrides(load_config("tiny"), SMALL + ["model.snn_arch=resnet"])
    with pytest.raises(NirExportError, match=r"residual add in snn\.stages\.0\.0"):
        stage_layers(build_model(resnet, "hybrid", 4))
    no_leak = SNNSpec(backend="norse", neuron=CubaParams(current_decay=0.0))
    with pytest.raises(NirExportError, match=r"^c0: a decay of 0"):
        build_graph([conv_layer("c0", SpikingConv(3, 8, 2, no_leak).eval())], (3, 8, 8), {})
    leaky_current = SNNSpec(backend="norse", neuron=CubaParams(current_decay=0.5), quant=DEFAULT_SPEC)
    layer = SpikingConv(3, 8, 2, leaky_current).eval()
    with torch.no_grad():
        layer.synapse.bn.bias.fill_(0.5)
    with pytest.raises(NirExportError, match=r"^q0: a quantized layer adds its bias to the voltage"):
        conv_layer("q0", layer)


def test_reader_refuses_foreign_and_newer_files(tmp_path):
    other = tmp_path / "other.nir"
    nir.write(other, nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2))))
    with pytest.raises(NirFormatError, match=r"other\.nir: metadata 'format'"):
        read_graph(other)
    newer = tmp_path / "newer.nir"
    one = [NirLayer("n", np.ones((1, 1)), np.zeros(1), paper_lif())]
    graph = build_graph(one, (1,), {"format_version": 99})
    write_graph(graph, newer)
    with pytest.raises(NirFormatError, match=r"newer\.nir: metadata 'format_version' 99"):
        read_graph(newer)
    junk = tmp_path / "junk.nir"
    junk.write_text("not hdf5")
    with pytest.raises(NirFormatError, match=r"junk\.nir: not a readable NIR file"):
        read_graph(junk)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    # late: the norse backend, whose float mode is float CUBA (SLAYER's neuron is always fixed point)
    for fusion, backend in (("late", "norse"), ("multiscale", "slayer")):
        runs[fusion] = root / fusion
        over = SMALL + [f"model.fusion={fusion}", f"model.snn_backend={backend}"]
        train(apply_overrides(load_config("tiny"), over), "hybrid", runs[fusion])
    return runs


def _norse_layer_spikes(module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every CubaLIF node's spikes ``[N, ..., T]`` from the read-back network's state cache."""
    out: dict[str, list] = {}
    for xn in x:
        state, steps = None, []
        for t in range(x.shape[-1]):
            _, state = module(xn[..., t], state)
            steps.append({k: v for k, v in state.cache.items() if k.endswith("_lif")})
        for k in steps[0]:
            out.setdefault(k, []).append(torch.stack([s[k] for s in steps], dim=-1))
    return {k: torch.stack(v) for k, v in out.items()}


def test_cli_single_stage_file_runs_like_the_model(tiny_runs, tmp_path, capsys):
    out = tmp_path / "snn.nir"
    assert main(["nir", str(tiny_runs["late"]), "--out", str(out)]) == 0
    assert f"wrote 1 NIR graph(s) to {out}" in capsys.readouterr().out
    model, cfg, _ = load_run(tiny_runs["late"], quantize=False)
    model.eval()
    want, hooks = {}, []
    for name, m in model.snn.named_modules(prefix="snn"):
        if isinstance(m, SpikingConv):
            key = name.replace(".", "_") + "_lif"
            hooks.append(m.register_forward_hook(lambda _m, _i, o, key=key: want.__setitem__(key, o)))
    x = 2 * torch.randn(4, 3, cfg.data.size, cfg.data.size, model.spec.stride - 1,
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = model.snn.run_stem(x)
        for stage in model.snn.stages:
            h = stage(h)
    module, graph = load_norse(out)
    got = _norse_layer_spikes(module, x)
    assert set(got) == set(want) and len(want) == 9
    for key in want:  # float rounding differs between the sides: tolerance as in the test above
        assert got[key].shape == want[key].shape
        assert int((got[key] != want[key]).sum()) <= want[key].numel() // 1000, key
    _assert_flips_only_at_threshold(model.snn.stem, x, got["snn_stem_lif"], want["snn_stem_lif"])
    assert float(want["snn_stem_lif"].mean()) > 0.01 and torch.equal(run_norse(module, x), h)
    assert int(graph.metadata["quantized"]) == 0 and int(graph.metadata["fused_after"]) == 4  # late fusion
    assert main(["nir", str(tiny_runs["late"]), "--out", str(out)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_cli_multistage_folder_quantized(tiny_runs, tmp_path, capsys):
    single = tmp_path / "one.nir"
    assert main(["nir", str(tiny_runs["multiscale"]), "--out", str(single)]) == 2
    assert "3 stage networks" in capsys.readouterr().err and not single.exists()
    out = tmp_path / "nir"
    assert main(["nir", str(tiny_runs["multiscale"]), "--out", str(out), "--quantized", "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)
    assert [s["path"] for s in stages] == [str(out / f"stage{i}.nir") for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nir"]
    model, _, _ = load_run(tiny_runs["multiscale"], quantize=True)
    gains = {name.replace(".", "_") + "_conv": m.chip_layer().weight_gain
             for name, m in model.snn.named_modules(prefix="snn") if isinstance(m, SpikingConv)}
    assert max(gains.values()) > 1  # trained weights are small: the weight gain is in use
    for i, s in enumerate(stages):
        graph = read_graph(s["path"])
        step = 1 / 16 if i == 0 else 1 / 4  # residual frames, then fused features
        assert int(graph.metadata["quantized"]) == 1 and float(graph.metadata["input_step"]) == step
        assert tuple(graph.nodes["input"].output_type["output"]) == tuple(s["input_shape"])
        if i:
            assert s["input_shape"] == stages[i - 1]["output_shape"]
        for name, node in graph.nodes.items():
            if isinstance(node, nir.Conv2d):  # the chip's 8-bit grid, 1/(32 G) with the weight gain G
                g = gains[name]
                assert np.array_equal(node.weight * 32 * g, np.round(node.weight * 32 * g))
            if isinstance(node, nir.CubaLIF):
                assert np.all(node.v_threshold == 1.0) and np.allclose(node.tau_mem, 4 / 3)
    # multi-scale fusion after SNN stages 2, 3 and 4: the stem and stages 1-2, then stage 3, then stage 4
    two = [[f"snn.stages.{i}.0", f"snn.stages.{i}.1"] for i in range(4)]
    assert [s["layers"] for s in stages] == [["snn.stem", *two[0], *two[1]], two[2], two[3]]
    assert [s["fused_after"] for s in stages] == [2, 3, 4]
