"""Our vectorised Conv process model against Lava's own ``PyConvModelFixed`` and the PyTorch reference.

The numpy tests compare :func:`conversion.proc_models.conv_xyc` with Lava's ``lava.proc.conv.utils.conv``
(scipy, per channel pair) and with a per-tap loop; the Lava tests run the same network once with Lava's
model and once with ours, on the Loihi protocol and asynchronously. Networks are tiny and always stopped.
"""

from __future__ import annotations

import numpy as np
import pytest
from lava.lib.dl.netx.hdf5 import Network
from lava.magma.core.model.py.model import PyAsyncProcessModel
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv import utils
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.io.sink import PyReadFixed
from lava.proc.io.sink import RingBuffer as SinkBuffer
from lava.proc.io.source import RingBuffer as SourceBuffer
from test_export_lava import graded_clips, random_stack

from conversion import lava_sim
from conversion.export import export_stage
from conversion.lava_sim import run_config, run_stage
from conversion.proc_models import PyConvModelFixedFast, asynchronous, conv_xyc
from conversion.verify import reference_stage
from respike_nm.models.fixed_point import graded_integers

# input (x, y, c), C_out, kernel (kx, ky), stride, padding, dilation (all (x, y))
GEOMETRIES = [
    pytest.param((14, 10, 3), 8, (3, 3), (1, 1), (1, 1), (1, 1), id="3x3-same"),
    pytest.param((9, 7, 4), 5, (3, 2), (2, 1), (0, 2), (2, 1), id="rect-kernel-s21-p02-d21"),
    pytest.param((6, 11, 1), 2, (1, 3), (1, 3), (2, 0), (1, 2), id="1ch-s13-d12"),
    pytest.param((8, 8, 16), 32, (3, 3), (2, 2), (1, 1), (1, 1), id="16to32-stride2"),
    pytest.param((5, 4, 2), 3, (5, 4), (1, 1), (0, 0), (1, 1), id="kernel-covers-frame"),
]


def _random(seed: int, shape, cout, kernel, graded: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**15, 2**15, shape) if graded else rng.integers(-2, 3, shape)  # binary: any non-0
    w = rng.integers(-256, 255, (cout, *kernel, shape[2]))
    return x.astype(np.int32), w.astype(np.int32)


@pytest.mark.parametrize("graded", [True, False], ids=["graded", "binary"])
@pytest.mark.parametrize("shape, cout, kernel, stride, padding, dilation", GEOMETRIES)
def test_conv_equals_lava_utils_conv(shape, cout, kernel, stride, padding, dilation, graded):
    x, w = _random(len(shape) * cout + graded, shape, cout, kernel, graded)
    inp = x if graded else x.astype(bool)  # what Lava's model feeds utils.conv
    lava = utils.conv(inp, w, kernel, stride, padding, dilation, 1)
    ours = conv_xyc(inp, w, stride, padding, dilation)
    assert ours.shape == lava.shape == utils.output_shape(shape, cout, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(ours, lava)
    assert np.count_nonzero(lava) > lava.size // 2  # a real, non-trivial result


def _per_tap(x: np.ndarray, w: np.ndarray, stride, padding, dilation) -> np.ndarray:
    """An independent exact convolution: one int64 matrix product per kernel tap."""
    (sx, sy), (px, py), (dx, dy) = stride, padding, dilation
    cout, kx, ky, _ = w.shape
    p = np.pad(x.astype(np.int64), ((px, px), (py, py), (0, 0)))
    xo = (p.shape[0] - dx * (kx - 1) - 1) // sx + 1
    yo = (p.shape[1] - dy * (ky - 1) - 1) // sy + 1
    out = np.zeros((xo, yo, cout), dtype=np.int64)
    for i in range(kx):
        for j in range(ky):
            tap = p[i * dx:i * dx + sx * (xo - 1) + 1:sx, j * dy:j * dy + sy * (yo - 1) + 1:sy]
            out += tap @ w[:, kx - 1 - i, ky - 1 - j, :].astype(np.int64).T
    return out


def test_conv_is_exact_beyond_float64():
    """Sums past 2**53, where float64 (Lava's own scipy sum) rounds: the int64 path stays exact."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2**50, 2**50, (7, 6, 4), dtype=np.int64)
    w = rng.integers(-128, 128, (3, 3, 3, 4))
    assert np.abs(x).max() * np.abs(w).reshape(3, -1).sum(1).max() >= 2**53
    expected = _per_tap(x, w, (2, 1), (1, 0), (1, 2))
    np.testing.assert_array_equal(conv_xyc(x, w, (2, 1), (1, 0), (1, 2)), expected)
    assert np.abs(expected).max() > 2**53


def test_run_config_selects_our_model():
    conv = Conv(weight=np.ones((2, 3, 3, 1), dtype=np.int32), input_shape=(4, 4, 1))
    assert run_config(protocol="loihi").select(conv, [PyConvModelFixed]) is PyConvModelFixedFast
    assert run_config(stock_conv=True, protocol="loihi").select(conv, [PyConvModelFixed]) is PyConvModelFixed
    for attr in ("implements_process", "implements_protocol", "required_resources", "tags"):
        assert getattr(PyConvModelFixedFast, attr) == getattr(PyConvModelFixed, attr), attr
    for stock, base in ((False, PyConvModelFixedFast), (True, PyConvModelFixed)):
        model = run_config(stock_conv=stock).select(conv, [PyConvModelFixed])  # async is the default
        assert issubclass(model, base) and issubclass(model, PyAsyncProcessModel)
        assert model.implements_protocol is AsyncProtocol and base.implements_protocol is LoihiProtocol
        assert model.run_spk is base.run_spk and model.weight is base.weight  # same step, same types
        assert (model.implements_process, model.tags) == (base.implements_process, base.tags)
    with pytest.raises(ValueError, match="protocol must be one of"):
        run_config(protocol="sync")


def test_asynchronous_refuses_models_with_management_phases():
    """Lava's Read process reads a Var in the post-management phase, which the asynchronous loop never
    runs."""
    with pytest.raises(TypeError, match="post_guard"):
        asynchronous(PyReadFixed)


def _run_conv(stream: np.ndarray, weight: np.ndarray, stock: bool, **conv_args) -> np.ndarray:
    """Source -> Conv -> sink for ``stream (x, y, c, steps)``; the sink's ``(x', y', c', steps)``.
    ``stock``: Lava's own models on the Loihi protocol; else ours, source and conv asynchronous."""
    steps = stream.shape[-1]
    conv = Conv(weight=weight, input_shape=stream.shape[:3], **conv_args)
    source = SourceBuffer(data=stream)
    sink = SinkBuffer(shape=conv.a_out.shape, buffer=steps)
    source.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    try:
        cfg = run_config(stock_conv=stock, protocol="loihi" if stock else "async")
        conv.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return sink.data.get()
    finally:
        conv.stop()


CONV_PROCESSES = [
    pytest.param((9, 7, 3), 4, (3, 2), 8, 2**7, dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
                 id="graded8-s21-p12-d12"),
    pytest.param((8, 6, 2), 3, (3, 3), 0, 3, dict(stride=1, padding=1), id="binary-from-graded-values"),
    pytest.param((6, 5, 8), 4, (3, 3), 24, 2**16, dict(stride=1, padding=0), id="graded24-wraps"),
    pytest.param((6, 6, 4), 4, (3, 3), 0, 2, dict(stride=1, padding=1, groups=2), id="groups2-fallback"),
]


@pytest.mark.lava
@pytest.mark.parametrize("shape, cout, kernel, bits, amp, conv_args", CONV_PROCESSES)
def test_conv_process_equals_lava_model(shape, cout, kernel, bits, amp, conv_args):
    rng = np.random.default_rng(bits + amp)
    steps = 4
    stream = rng.integers(-amp, amp, (*shape, steps)).astype(np.int32)
    groups = conv_args.get("groups", 1)
    weight = rng.integers(-128, 128, (cout, *kernel, shape[2] // groups)).astype(np.int32)
    args = dict(num_message_bits=bits, **conv_args)
    stock = _run_conv(stream, weight, True, **args)
    ours = _run_conv(stream, weight, False, **args)
    np.testing.assert_array_equal(ours, stock)
    assert not stock[..., 0].any()  # one step of synaptic delay
    assert np.count_nonzero(stock[..., 1:]) > stock[..., 1:].size // 2
    if bits == 24:  # the sums pass 2**23 and come out wrapped to 24 bits, in both models
        raw = utils.conv(stream[..., 0], weight, kernel, (1, 1), (0, 0), (1, 1), 1).astype(np.int64)
        assert np.abs(raw).max() >= 2**23
        np.testing.assert_array_equal(stock[..., 1], utils.signed_clamp(raw, bits=24))


STAGES = [
    pytest.param(11, (3, 10, 14), (8, 12), (1, 2), 3, id="3x10x14-8-12-s1s2-T3"),
    pytest.param(12, (2, 7, 5), (6, 5, 4), (2, 1, 1), 4, id="2x7x5-6-5-4-s2s1s1-T4"),
    pytest.param(13, (6, 6, 9), (16,), (2,), 3, id="6x6x9-16-s2-T3"),
]


@pytest.mark.lava
@pytest.mark.parametrize("seed, shape, channels, strides, steps", STAGES)
def test_exported_stage_same_spikes_with_both_models(tmp_path, seed, shape, channels, strides, steps):
    layers = random_stack(seed, shape[0], channels, strides)
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    x = graded_clips(seed, 2, shape, steps)
    graded = graded_integers(x, layers[0].quant, record.input_scale).numpy()
    # Lava's own models on the Loihi protocol; our conv on it; ours with every process asynchronous
    runs = [run_stage(tmp_path / "stage.net", graded, time_steps=steps, stock_conv=stock, protocol=protocol,
                      input_message_bits=record.input_message_bits)
            for stock, protocol in ((True, "loihi"), (False, "loihi"), (False, "async"))]
    reference = reference_stage(layers, x, record.input_scale).spikes
    net = Network(net_config=str(tmp_path / "stage.net"), input_message_bits=record.input_message_bits)
    bits = [int(layer.synapse.num_message_bits.init) for layer in net.layers]
    assert bits[0] > 0 and bits[1:] == [0] * (len(bits) - 1)  # graded into the first conv, binary after
    assert [(r.stock_conv, r.protocol) for r in runs] == [(True, "loihi"), (False, "loihi"), (False, "async")]
    for i, expected in enumerate(reference):
        for run in runs[1:]:
            np.testing.assert_array_equal(run.layer_spikes[i], runs[0].layer_spikes[i])
        np.testing.assert_array_equal(runs[0].layer_spikes[i], expected.numpy().astype(np.uint8))
        assert 0.01 < expected.float().mean() < 0.9  # every layer spikes, but not everywhere


@pytest.mark.lava
def test_run_in_chunks_equals_reference(tmp_path, monkeypatch):
    """Spikes read out every 2 steps (small tap buffers) are the reference's, clips back to back; the
    asynchronous processes keep counting steps across runs (T = 3 is not a multiple of 2)."""
    shape, steps = (3, 6, 8), 3
    layers = random_stack(14, shape[0], (4, 6), (1, 2))
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    x = graded_clips(14, 3, shape, steps)
    graded = graded_integers(x, layers[0].quant, record.input_scale).numpy()
    monkeypatch.setattr(lava_sim, "TAP_BYTES", 8 * 8 * 6 * 4 * 2)  # the largest layer, 2 steps
    run = run_stage(tmp_path / "stage.net", graded, time_steps=steps,
                    input_message_bits=record.input_message_bits)
    reference = reference_stage(layers, x, record.input_scale).spikes
    assert run.steps == 3 * steps + 2  # 11 steps: 5 full chunks and a last one of 1
    for ours, expected in zip(run.layer_spikes, reference, strict=True):
        np.testing.assert_array_equal(ours, expected.numpy().astype(np.uint8))
        assert 0.01 < expected.float().mean() < 0.9


def test_models_by_class_selects_what_lavas_search_selects(tmp_path, monkeypatch):
    """The run config's map answers for process instances with the model Lava's own search and
    selection pick for every process of a stage network (leaves after the hierarchical blocks are
    expanded), and after one network it answers without searching again."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs, find_processes
    from lava.magma.core.run_configs import Loihi2SimCfg

    shape, steps = (3, 6, 8), 3
    record = export_stage(random_stack(3, shape[0], (4, 6), (1, 2)), tmp_path / "stage.net",
                          input_shape=shape, time_steps=steps)
    searches = []
    search = ProcGroupDiGraphs._find_proc_models
    monkeypatch.setattr(ProcGroupDiGraphs, "_find_proc_models",
                        staticmethod(lambda proc: searches.append(type(proc)) or search(proc)))

    def models(cfg) -> list[tuple[str, str]]:
        net = Network(net_config=str(tmp_path / "stage.net"), input_message_bits=record.input_message_bits,
                      reset_interval=steps)
        source = SourceBuffer(data=np.zeros((*net.inp.shape, 2), dtype=np.int32))
        source.s_out.connect(net.inp)
        leaves = ProcGroupDiGraphs._map_proc_to_model(find_processes(source), cfg, [])  # as the compiler
        return sorted((type(p).__name__, m.__qualname__) for p, m in leaves.items())  # the order may differ

    for protocol in ("async", "loihi"):
        cfg = run_config(protocol=protocol)
        plain = Loihi2SimCfg(select_tag="fixed_pt",
                             exception_proc_model_map=dict(cfg.exception_proc_model_map))  # class keys only
        searches.clear()
        expected = models(plain)
        assert len(searches) == len(expected) + 1  # Lava searched for every leaf and the network
        assert models(cfg) == expected
        searches.clear()
        assert models(run_config(protocol=protocol)) == expected and searches == []  # answered by class
        names = [name for name, _ in expected]
        assert names.count("Conv") == 2 and names.count("LIFReset") == 2 and "RingBuffer" in names


@pytest.mark.lava
def test_a_running_stage_network_gives_run_stages_spikes_call_after_call(tmp_path):
    """StageNetwork keeps one network running: calls of 2, 1 and 3 clips (with the zero clips it
    appends to each) give the last layer's spikes of run_stage on the same clips and of the PyTorch
    reference, every clip from reset state, whatever came before it."""
    from conversion.lava_sim import StageNetwork

    shape, steps = (3, 6, 8), 3
    layers = random_stack(21, shape[0], (4, 6, 5), (1, 2, 1))
    record = export_stage(layers, tmp_path / "stage.net", input_shape=shape, time_steps=steps)
    x = graded_clips(21, 6, shape, steps)
    graded = graded_integers(x, layers[0].quant, record.input_scale).numpy()
    reference = reference_stage(layers, x, record.input_scale).spikes[-1].numpy().astype(np.uint8)
    assert 0.01 < reference.mean() < 0.9
    with StageNetwork(tmp_path / "stage.net", time_steps=steps,
                      input_message_bits=record.input_message_bits) as net:
        assert net.delay == 3 and net.tail == 1  # 3 layers: the last spike 3 steps late, one zero clip
        outs = [net(graded[a:b]) for a, b in ((0, 2), (2, 3), (3, 6))]
        assert net.steps == (2 + 1 + 1 + 1 + 3 + 1) * steps
    np.testing.assert_array_equal(np.concatenate(outs), reference)
    once = run_stage(tmp_path / "stage.net", graded[3:6], time_steps=steps,
                     input_message_bits=record.input_message_bits, all_layers=False)
    np.testing.assert_array_equal(outs[2], once.output)
    with pytest.raises(RuntimeError, match="stopped"):
        net(graded[:1])
    # closed before any call (predict stopped during the first window's start): stops, no hang
    idle = StageNetwork(tmp_path / "stage.net", time_steps=steps,
                        input_message_bits=record.input_message_bits)
    idle.close()
