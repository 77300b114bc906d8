"""Process models chosen via the run config's ``exception_proc_model_map``: a vectorised fixed-point
model for Lava's ``Conv``, and asynchronous twins of the Loihi-protocol models a stage network runs.

Lava 0.10's ``PyConvModelFixed`` loops ``scipy.signal.convolve2d`` over every (out, in) channel pair.
:class:`PyConvModelFixedFast` keeps its ports, variables, decorations and step order (send last step's
``a_buf``, then compute the next) and computes the same sums as one matrix product over sliding windows.
Lava's arithmetic, reproduced: layout ``(x, y, c)``, weight ``(C_out, kx, ky, C_in)`` applied as a true
convolution (kernel flipped), zero padding, stride and dilation per axis, binary input
(``num_message_bits == 0``) as ``s_in != 0``, ``weight_exp`` not applied (Lava's model ignores it too),
the sum wrapped to the model's 24-bit precision (its ``clamp_precision``). Lava sums in float64 and casts
to int32, so the two agree wherever a sum fits int32 (beyond that Lava's cast is undefined).
``groups != 1`` falls back to Lava's own computation. numpy only: torch in Lava's forked workers hangs.

:func:`asynchronous` gives a Loihi-protocol model an ``AsyncProtocol`` twin that runs the same
``run_spk`` once per step, without the runtime service's per-step barrier (a phase command to every
process and a reply from each: two of the three messages a layer's process handled per step). A stage
network is a feed-forward chain (no recurrent connection), so a process's n-th message in is its input
of step n however far its neighbours run ahead, and the synapse still sends last step's ``a_buf``
before it receives (the one step of synaptic delay): blocking channels alone keep each message at its
step, and the spikes are those of the Loihi-protocol run, bit for bit
(tests/conversion/test_fast_conv.py). ``time_step`` counts steps across
runs as the Loihi protocol's does (LIFReset's resets and the source's indexing read it). Learning and
pre/post-management phases do not exist in this mode, so only models without guards are wrapped.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.model.py.model import PyAsyncProcessModel, PyLoihiProcessModel
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.io.extractor import PyLoihiExtractorModel
from lava.proc.io.injector import PyLoihiInjectorModel
from lava.proc.io.source import PySendModelFixed
from lava.proc.lif.models import PyLifResetModelBitAcc
from numpy.lib.stride_tricks import sliding_window_view

_FLOAT64_EXACT = 1 << (np.finfo(np.float64).nmant + 1)  # every integer below this is a float64


def conv_xyc(inp: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
             dilation: tuple[int, int]) -> np.ndarray:
    """Lava's convolution of ``inp (X, Y, C_in)`` with ``weight (C_out, kx, ky, C_in)``.

    ``stride``, ``padding``, ``dilation``: ``(x, y)``. Returns int64 ``(X', Y', C_out)``, exact: in
    float64 (BLAS) where ``max|inp| * max_k sum|w_k| < 2**53`` bounds every partial sum, else in int64.
    """
    (sx, sy), (px, py), (dx, dy) = stride, padding, dilation
    inp, weight = np.asarray(inp), np.asarray(weight)
    kx, ky = weight.shape[1:3]
    dtype = np.float64 if _float64_exact(inp, weight) else np.int64  # BLAS is many times faster
    padded = np.pad(inp.astype(dtype, copy=False), ((px, px), (py, py), (0, 0)))
    span = (dx * (kx - 1) + 1, dy * (ky - 1) + 1)
    if padded.shape[0] < span[0] or padded.shape[1] < span[1]:
        raise ValueError(f"conv input {inp.shape} padded by {padding} is smaller than the kernel span {span}")
    windows = sliding_window_view(padded, span, axis=(0, 1))[::sx, ::sy, :, ::dx, ::dy]  # X', Y', C, kx, ky
    xo, yo = windows.shape[:2]
    patches = windows.transpose(0, 1, 3, 4, 2).reshape(xo * yo, -1)  # channels innermost: a fast copy
    flipped = weight[:, ::-1, ::-1, :]  # convolution, not correlation
    kernel = flipped.transpose(1, 2, 3, 0).reshape(-1, weight.shape[0]).astype(dtype)
    return (patches @ kernel).astype(np.int64).reshape(xo, yo, -1)


def _float64_exact(inp: np.ndarray, weight: np.ndarray) -> bool:
    """Whether every partial sum of the convolution is an integer below ``2**53`` in magnitude."""
    if inp.size == 0 or weight.size == 0:
        return True
    fan_in = np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1).max()
    return int(np.abs(inp.astype(np.int64)).max()) * int(fan_in) < _FLOAT64_EXACT


class PyConvModelFixedFast(PyConvModelFixed):
    """Lava's fixed-point ``Conv`` model (inherited ports, types, ``@implements(Conv)``,
    ``@requires(CPU)``, ``@tag('fixed_pt')``) with a vectorised step: same outputs, faster."""

    def run_spk(self) -> None:
        if int(self.groups[0]) != 1:
            super().run_spk()  # grouped convolution: Lava's own loop
            return
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in != 0  # binary spikes, as Lava's astype(bool)
        total = conv_xyc(s_in, self.weight, _pair(self.stride), _pair(self.padding), _pair(self.dilation))
        self.a_buf = self.clamp_precision(total).astype(self.weight.dtype)


def _pair(v: np.ndarray) -> tuple[int, int]:
    return int(v[0]), int(v[1])


def asynchronous(model: type[PyLoihiProcessModel]) -> type[PyAsyncProcessModel]:
    """An ``AsyncProtocol`` model for ``model``'s process: its ports, variables, tags and ``run_spk``,
    run once per step with ``time_step`` counted as the Loihi protocol counts it."""
    guards = [g for g in ("pre_guard", "lrn_guard", "post_guard")
              if getattr(model, g) is not getattr(PyLoihiProcessModel, g)]
    if guards:
        raise TypeError(f"{model.__name__} has management phases ({', '.join(guards)}); it needs the "
                        "Loihi protocol")

    def run_async(self) -> None:
        for _ in range(self.num_steps):
            self.time_step += 1
            self.run_spk()

    # the protocol as a class attribute: Lava's @implements refuses to change an inherited one
    name = f"{model.__name__}Async"
    return type(name, (PyAsyncProcessModel, model), {
        "implements_protocol": AsyncProtocol, "run_async": run_async, "__module__": __name__,
        "__qualname__": name, "__doc__": f"``{model.__name__}`` without the per-step barrier."})


PyConvModelFixedFastAsync = asynchronous(PyConvModelFixedFast)
PyConvModelFixedAsync = asynchronous(PyConvModelFixed)
PyLifResetModelBitAccAsync = asynchronous(PyLifResetModelBitAcc)
PySendModelFixedAsync = asynchronous(PySendModelFixed)
PyLoihiExtractorModelAsync = asynchronous(PyLoihiExtractorModel)
# Lava's own asynchronous injector counts its steps from 1 for every run, so a second run never ends
PyLoihiInjectorModelAsync = asynchronous(PyLoihiInjectorModel)
