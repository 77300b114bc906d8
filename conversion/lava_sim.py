"""Run an exported stage network in Lava (``Loihi2SimCfg(select_tag='fixed_pt')``), clips back to back.

Timing (lava-nc 0.10 / lava-dl 0.6, docs/fixed-point.md): a source feeds the graded integers of clip ``k``,
step ``t`` at Lava step ``k * T + t + 1``; every layer adds one step of synaptic delay, so layer ``i``
integrates that input at step ``k * T + t + 2 + i`` and its spike lands at tap index
``k * T + t + 1 + i`` (0-based). netx resets layer ``i`` whenever ``step % T == (reset_offset + 1 + i)
% T``; with ``reset_interval = T`` and ``reset_offset = 1`` that is just before each clip's first step,
so every clip starts from zero state and several clips run in one Lava run. The run lasts
``clips * T + layers`` steps (``reset_offset`` 1): zero input after the last clip flushes the pipeline.
The network is always stopped, also on error.

Conv synapses run on :class:`~conversion.proc_models.PyConvModelFixedFast` (same outputs as Lava's
``PyConvModelFixed``, vectorised) unless ``stock_conv=True``; it is chosen through the run config's
``exception_proc_model_map``, Lava's own extension point. With ``protocol="async"`` (the default) the
source, conv, neuron and tap processes run the same models' ``run_spk`` under Lava's ``AsyncProtocol``
(:func:`conversion.proc_models.asynchronous`): no per-step barrier, the same spikes, about twice the
steps per second (bench/lava_sim.py); ``protocol="loihi"`` keeps the Loihi protocol's phases.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Lava's message infrastructure calls multiprocessing.set_start_method('fork') when it is first
# imported, which raises "context has already been set" once anything (tqdm's lock, a DataLoader) has
# fixed the default context. Importing it with this module lets a process that imports this module
# first, then trains, then simulates (the demo, a notebook) work.
import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.injector import Injector, PyLoihiInjectorModel
from lava.proc.io.source import RingBuffer as SourceBuffer
from lava.proc.lif.process import LIFReset
from tqdm import tqdm

from conversion import proc_models
from conversion.layout import clips_to_xyct, xyct_to_clips
from conversion.manifest import StageManifest
from conversion.proc_models import PyConvModelFixedFast
from respike_nm import stopping
from respike_nm.errors import UsageError
from respike_nm.lavadl import import_netx

netx = import_netx()  # lava-dl's netx, its import-time prints kept off the command's output

# Spikes leave through Extractor taps (a shared-memory channel, one array per step), not a sink's Var:
# Lava 0.10 reads a Var back one element per message, which took minutes for a few MB of spikes. The
# run goes in chunks so that a tap's buffer (float64 arrays) stays below this size.
TAP_BYTES = 32 << 20
# ... and in chunks of at most this many steps, so that a stop request (SIGTERM, Ctrl-C) is answered
# within one chunk (respike_nm.stopping).
STOP_POLL_STEPS = 256


@dataclass(frozen=True)
class LavaRunResult:
    """Spikes of one Lava run, in SLAYER layout.

    ``layer_spikes``: one ``uint8 [N, C, H, W, T]`` per recorded layer (all layers, or only the last
    one); ``recorded``: their layer indices. ``steps``: Lava steps run. ``setup_seconds``: compile
    and process start; ``run_seconds``: the run itself. ``stock_conv``: Lava's own Conv model ran;
    ``protocol``: ``"async"`` or ``"loihi"`` (:func:`run_config`).
    """

    layer_spikes: tuple[np.ndarray, ...]
    recorded: tuple[int, ...]
    clips: int
    time_steps: int
    steps: int
    setup_seconds: float
    run_seconds: float
    stock_conv: bool = False
    protocol: str = "async"

    @property
    def output(self) -> np.ndarray:
        """The last layer's spikes ``[N, C, H, W, T]``."""
        return self.layer_spikes[-1]

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.run_seconds if self.run_seconds > 0 else float("inf")


def run_stage(hdf5: str | Path, graded: np.ndarray, *, time_steps: int, input_message_bits: int,
              reset_offset: int = 1, all_layers: bool = True, stock_conv: bool = False,
              protocol: str = "async") -> LavaRunResult:
    """Run ``graded`` (``int [N, C, H, W, T]``, the integers ``round(S x)``) through the network in ``hdf5``.

    ``time_steps`` must equal ``T``; all ``N`` clips run back to back in one Lava run, each from
    fresh state. ``all_layers``: record every layer (one tap each) or only the output.
    ``stock_conv``: Lava's scipy Conv model instead of ours (for comparisons and benchmarks).
    ``protocol``: ``"async"`` (no per-step barrier, same spikes) or ``"loihi"`` (:func:`run_config`).
    """
    cfg = run_config(stock_conv, protocol)  # a bad protocol fails before any process starts
    graded = _checked_input(graded, time_steps, input_message_bits)
    clips = graded.shape[0]
    net = netx.hdf5.Network(net_config=str(hdf5), input_message_bits=input_message_bits,
                  reset_interval=time_steps, reset_offset=reset_offset)
    steps = clips * time_steps + len(net.layers) - 1 + reset_offset  # last spike's tap index + 1
    stream = np.zeros((*net.inp.shape, steps), dtype=np.int32)
    stream[..., :clips * time_steps] = clips_to_xyct(graded)
    source = SourceBuffer(data=stream)
    source.s_out.connect(net.inp)
    recorded = tuple(range(len(net.layers))) if all_layers else (len(net.layers) - 1,)
    shapes = [net.layers[i].out.shape for i in recorded]
    chunk = min(steps, _chunk_steps(shapes))
    taps = [Extractor(shape=sh, buffer_size=chunk) for sh in shapes]
    for i, tap in zip(recorded, taps, strict=True):
        net.layers[i].out.connect(tap.in_port)
    raw = [np.zeros((*sh, steps), dtype=np.uint8) for sh in shapes]
    with stopping.deferred():  # a signal stops the network after the current chunk, then is raised
        try:
            t0 = time.perf_counter()
            net.create_runtime(run_cfg=cfg)
            setup, run = time.perf_counter() - t0, 0.0
            with tqdm(total=steps, desc=f"Lava {Path(hdf5).stem}", unit="step", file=sys.stderr,
                      leave=False, disable=None) as bar:  # shown on a terminal only
                for start in range(0, steps, chunk):  # run a chunk, then empty the taps' buffers
                    n = min(chunk, steps - start)
                    t0 = time.perf_counter()
                    net.run(condition=RunSteps(num_steps=n))
                    run += time.perf_counter() - t0
                    for tap, out in zip(taps, raw, strict=True):
                        for t in range(start, start + n):
                            out[..., t] = tap.receive()
                    bar.update(n)
                    if stopping.requested():  # after a run: Lava's stop() hangs on a runtime never started
                        break
        finally:
            net.stop()
    spikes = tuple(_aligned(r, i + reset_offset, clips, time_steps)
                   for i, r in zip(recorded, raw, strict=True))
    return LavaRunResult(spikes, recorded, clips, time_steps, steps, setup, run, stock_conv, protocol)


class StageNetwork:
    """A stage network kept running between calls (``predict --lava``): built and started once, then
    each call injects clips ``int [N, C, H, W, T]`` and returns the last layer's spikes
    ``uint8 [N, C, H, W, T]``, bit for bit those of :func:`run_stage` on the same clips.

    A call feeds its clips back to back, then zero clips until the last clip's spikes have left the
    pipeline (the run_stage flush, rounded up to whole clips), so every call starts on a clip
    boundary of netx's reset schedule: the stream of all calls is one long run_stage stream, every
    clip from fresh state (the chunked-run test covers runs split at any step). Input goes in
    through an ``Injector`` (Lava's channel into a running network), spikes come out of an
    ``Extractor`` tap; both, like every process, on the asynchronous models. :meth:`close` (or the
    ``with`` block) stops the network; a signal during a call stops it after the current chunk.
    """

    def __init__(self, hdf5: str | Path, *, time_steps: int, input_message_bits: int, reset_offset: int = 1,
                 stock_conv: bool = False):
        cfg = run_config(stock_conv, "async")
        self.hdf5, self.time_steps, self.bits = Path(hdf5), time_steps, input_message_bits
        net = netx.hdf5.Network(net_config=str(hdf5), input_message_bits=input_message_bits,
                      reset_interval=time_steps, reset_offset=reset_offset)
        self.delay = len(net.layers) - 1 + reset_offset  # the last layer's tap lag, as in run_stage
        self.tail = -(-self.delay // time_steps)  # zero clips after a call's clips
        shape = net.layers[-1].out.shape
        self.chunk = _chunk_steps([shape])
        self.injector = Injector(shape=net.inp.shape, buffer_size=self.chunk)
        self.injector.out_port.connect(net.inp)
        self.tap = Extractor(shape=shape, buffer_size=self.chunk)
        net.layers[-1].out.connect(self.tap.in_port)
        self.net, self.steps, self.run_seconds, self._open = net, 0, 0.0, False
        t0 = time.perf_counter()
        with stopping.deferred():
            try:
                net.create_runtime(run_cfg=cfg)
                self._open = True
                # one zero clip: Lava's stop() hangs on a runtime that never ran, and a clip keeps
                # every later call on a clip boundary
                for _ in range(time_steps):
                    self.injector.send(np.zeros(self.injector.out_port.shape))
                net.run(condition=RunSteps(num_steps=time_steps))
                for _ in range(time_steps):
                    self.tap.receive()
            except BaseException:
                self._open = False
                net.stop()
                raise
            if stopping.requested():
                self.close()  # then the signal is raised as the block ends
        self.setup_seconds = time.perf_counter() - t0

    def __call__(self, graded: np.ndarray) -> np.ndarray:
        if not self._open:
            raise RuntimeError(f"{self.hdf5}: the stage network was stopped")
        graded = _checked_input(graded, self.time_steps, self.bits)
        clips = graded.shape[0]
        steps = (clips + self.tail) * self.time_steps
        stream = np.zeros((*self.injector.out_port.shape, steps), dtype=np.int32)
        stream[..., :clips * self.time_steps] = clips_to_xyct(graded)
        raw = np.zeros((*self.tap.in_port.shape, steps), dtype=np.uint8)
        with stopping.deferred():
            try:
                for start in range(0, steps, self.chunk):
                    n = min(self.chunk, steps - start)
                    for t in range(start, start + n):
                        self.injector.send(stream[..., t])
                    t0 = time.perf_counter()
                    self.net.run(condition=RunSteps(num_steps=n))
                    self.run_seconds += time.perf_counter() - t0
                    for t in range(start, start + n):
                        raw[..., t] = self.tap.receive()
                    if stopping.requested():
                        break
            except BaseException:
                self.close()
                raise
            if stopping.requested():
                self.close()  # then the signal is raised as the block ends
        self.steps += steps
        return _aligned(raw, self.delay, clips, self.time_steps)

    def close(self) -> None:
        """Stop the network (every Lava process ends, its shared memory is released); idempotent."""
        if self._open:
            self._open = False
            self.net.stop()

    def __enter__(self) -> StageNetwork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


PROTOCOLS = ("async", "loihi")


def run_config(stock_conv: bool = False, protocol: str = "async") -> Loihi2SimCfg:
    """Lava's fixed-point simulation config, with our vectorised Conv model unless ``stock_conv``.

    ``protocol="loihi"``: every process on the Loihi protocol (the Extractor's and Injector's models
    carry no tag, so their Loihi-protocol models are named explicitly). ``"async"``: the ring-buffer
    source, the injector, the conv synapses, the LIFReset neurons and the taps on their
    ``AsyncProtocol`` twins
    (:func:`conversion.proc_models.asynchronous`), any other process on the Loihi protocol.
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    conv = PyConvModelFixed if stock_conv else PyConvModelFixedFast
    if protocol == "loihi":
        models = {Extractor: PyLoihiExtractorModel, Injector: PyLoihiInjectorModel, Conv: conv}
    else:
        models = {Extractor: proc_models.PyLoihiExtractorModelAsync,
                  Injector: proc_models.PyLoihiInjectorModelAsync,
                  SourceBuffer: proc_models.PySendModelFixedAsync,
                  LIFReset: proc_models.PyLifResetModelBitAccAsync,
                  Conv: proc_models.PyConvModelFixedAsync if stock_conv
                  else proc_models.PyConvModelFixedFastAsync}
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=ModelsByClass(models))
    cfg.exception_proc_model_map.config = cfg, (stock_conv, protocol)
    return cfg


_SELECTED: dict[tuple, type] = {}  # (config key, process class) -> the model Lava selected


class ModelsByClass(dict):
    """The run config's ``exception_proc_model_map``, ``{process class: model}`` as Lava documents
    it, which also answers for a process *instance*: with the model Lava's own selection picks for
    its class (``ProcGroupDiGraphs._find_proc_models``, then the config's ``select``), found once
    per class and configuration in this Python process.

    Lava's compiler looks each process instance up in this map before it searches for the models of
    its class, and that search imports every module beside the class's own, again for every process
    of every compile (about 0.2 s of a stage network's set-up here). The choice is the one the
    compiler would make, so the networks and their spikes are the same.
    """

    config: tuple | None = None  # (run config, key of what it selects); set by run_config

    def _model_of(self, proc) -> type | None:
        from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
        from lava.magma.core.process.process import AbstractProcess

        if not isinstance(proc, AbstractProcess) or self.config is None:
            return None
        cfg, key = self.config
        cls = type(proc)
        if (key, cls) not in _SELECTED:
            if dict.__contains__(self, cls):
                _SELECTED[key, cls] = dict.__getitem__(self, cls)
            else:
                _SELECTED[key, cls] = cfg.select(proc, ProcGroupDiGraphs._find_proc_models(proc))
        return _SELECTED[key, cls]

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or self._model_of(key) is not None

    def __getitem__(self, key):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        model = self._model_of(key)
        if model is None:
            raise KeyError(key)
        return model


def run_manifest_stage(directory: str | Path, stage: StageManifest, graded: np.ndarray,
                       all_layers: bool = True, stock_conv: bool = False,
                       protocol: str = "async") -> LavaRunResult:
    """:func:`run_stage` with the settings recorded in ``stage`` (HDF5 relative to ``directory``)."""
    return run_stage(Path(directory) / stage.hdf5, graded, time_steps=stage.time_steps,
                     input_message_bits=stage.input_message_bits, reset_offset=stage.reset_offset,
                     all_layers=all_layers, stock_conv=stock_conv, protocol=protocol)


def _chunk_steps(shapes) -> int:
    """Steps per ``net.run`` chunk: a stop request is answered within one, and the taps' buffers of
    ``shapes`` (float64 arrays, one per step) stay below ``TAP_BYTES``."""
    return max(1, min(STOP_POLL_STEPS, TAP_BYTES // (8 * max(int(np.prod(sh)) for sh in shapes))))


def _checked_input(graded: np.ndarray, time_steps: int, bits: int) -> np.ndarray:
    """Integer input ``[N, C, H, W, T]`` within signed ``bits`` (the chip's message width)."""
    graded = np.asarray(graded)
    if graded.ndim != 5 or graded.shape[-1] != time_steps:
        raise ValueError(f"expected graded input [N, C, H, W, T={time_steps}], got {graded.shape}")
    if not np.issubdtype(graded.dtype, np.integer):
        raise ValueError(f"graded input must be integers round(S x), got dtype {graded.dtype}")
    limit = 1 << (bits - 1)
    if graded.size and (graded.min() < -limit or graded.max() >= limit):
        raise ValueError(f"graded input spans [{graded.min()}, {graded.max()}], outside the signed "
                         f"{bits}-bit messages [{-limit}, {limit - 1}]")
    return graded.astype(np.int32)


def _aligned(raw: np.ndarray, delay: int, clips: int, time_steps: int) -> np.ndarray:
    """Sink buffer ``(x, y, c, steps)`` -> ``uint8 [N, C, H, W, T]``, dropping the ``delay`` lead-in."""
    stream = raw[..., delay:delay + clips * time_steps]
    return xyct_to_clips(stream, clips, time_steps).astype(np.uint8)
