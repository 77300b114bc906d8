"""Operation arithmetic of any network, knowing nothing of ReSpike: multiply-accumulates (MACs) of
convolutions (1-, 2- and 3-D), linear layers and attention matrix products.

- *Dense* MACs count every weight at every output position, zero padding included (as every MAC
  counter and torchvision's documented ``_ops`` count); *effective* MACs count only the nonzero
  inputs inside the frame (NeuroBench's Effective_MACs).
- Grouped and depthwise convolutions count ``C_in / groups`` inputs per output.
- Attention matrix products are functional (``scaled_dot_product_attention``), so hooks on modules
  miss them: a module that performs such products says so with a ``matmul_macs(*args, **kwargs)``
  method, which the counters call with the module's own inputs.
- Not counted: normalisation, activations, softmax, pooling, additions (a few percent of a CNN).

:func:`shape_counts` counts the dense MACs of any model from shapes alone (a forward pass on the
``meta`` device: no weights, no arithmetic), and refuses a model with a weighted layer it cannot
count (:func:`unaccounted`) instead of leaving it out.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from respike_nm.errors import UsageError
from respike_nm.layout import conv_out

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
COUNTED = (*CONVS, nn.Linear)
# weighted layers that do no multiply-accumulates worth counting (elementwise affine)
NOT_COUNTED = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def dense_conv_macs(conv: nn.Module, in_shape: tuple[int, ...]) -> float:
    """Dense MACs of ``conv`` (1-, 2- or 3-D) on an input of ``in_shape [N, C, *spatial]``: every
    weight at every output position, zero padding included."""
    spatial = in_shape[2:]
    out = [conv_out(s, k, st, p, d) for s, k, st, p, d in
           zip(spatial, conv.kernel_size, conv.stride, _padding(conv, spatial), conv.dilation, strict=True)]
    return float(in_shape[0] * math.prod(out) * conv.out_channels * conv.weight[0].numel())


def _padding(conv: nn.Module, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Numeric padding per side (``padding="same"`` resolved as torch resolves it: the output keeps
    the input's size at stride 1)."""
    if conv.padding == "same":
        return tuple((d * (k - 1)) // 2 for k, d in zip(conv.kernel_size, conv.dilation, strict=True))
    if conv.padding == "valid":
        return (0,) * len(spatial)
    return tuple(conv.padding)


def linear_dense_macs(lin: nn.Linear, in_shape: tuple[int, ...]) -> float:
    """Dense MACs of ``lin`` on an input of ``in_shape [..., in_features]``."""
    return float(math.prod(in_shape)) * lin.out_features


def attention_macs(n: int, lq: int, lk: int, heads: int, head_dim: int) -> float:
    """MACs of multi-head attention's two matrix products, ``Q K^T`` and ``A V``, for ``n`` sequences
    of ``lq`` queries over ``lk`` keys: ``2 n lq lk heads head_dim``."""
    return 2.0 * n * lq * lk * heads * head_dim


def fanout_events(active: torch.Tensor, weight_shape: tuple[int, ...], stride, padding, dilation,
                  groups: int) -> torch.Tensor:
    """Synaptic events per output position ``[N, groups, *out]``: the number of active inputs in each
    output's receptive field, from ``active [N, C_in, *spatial]`` (0/1) and a conv's geometry (1-, 2-
    or 3-D). Multiply by the output channels per group for operations (each event reaches each)."""
    n, c, *spatial = active.shape
    per_group = active.reshape(n, groups, c // groups, *spatial).sum(2)
    ones = torch.ones(groups, 1, *weight_shape[2:], dtype=per_group.dtype, device=active.device)
    return _CONV_FN[len(spatial)](per_group, ones, None, stride, padding, dilation, groups)


def conv_ops(conv: nn.Module, x: torch.Tensor,
             active: torch.Tensor | None = None) -> tuple[float, float, torch.Tensor]:
    """``(effective, dense, events [N, groups, *out])`` MACs of ``conv`` on ``x [N, C, *spatial]``;
    ``active``: ``x != 0`` as float32, if known."""
    geo = (tuple(conv.weight.shape), conv.stride, _padding(conv, x.shape[2:]), conv.dilation, conv.groups)
    per_out = conv.out_channels // conv.groups
    # float32 is exact here: each count is at most k*k*C_in/groups (< 2^24); the total is summed in float64
    events = fanout_events((x != 0).to(torch.float32) if active is None else active, *geo)
    dense = events.numel() // conv.groups * conv.weight[0].numel() * conv.out_channels  # padding included
    return float(events.sum(dtype=torch.float64)) * per_out, float(dense), events


_REACH: dict[tuple, torch.Tensor] = {}


def reach(weight_shape: tuple[int, ...], stride, padding, dilation, h: int, w: int) -> torch.Tensor:
    """``[H, W]``: how many output positions each input position reaches (its fan-out per output
    channel), for a 2-D conv's geometry on an ``H x W`` input: the transposed convolution of an
    all-ones output map with an all-ones kernel; positions that no window covers reach none. Cached."""
    key = (tuple(weight_shape[2:]), tuple(stride), tuple(padding), tuple(dilation), h, w)
    if key not in _REACH:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = weight_shape[2:], stride, padding, dilation
        oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
        full = F.conv_transpose2d(torch.ones(1, 1, oh, ow, dtype=torch.float64),
                                  torch.ones(1, 1, kh, kw, dtype=torch.float64), None, (sh, sw), 0, 0, 1,
                                  (dh, dw))[0, 0]
        out = torch.zeros(h + 2 * ph, w + 2 * pw, dtype=torch.float64)
        out[: full.shape[0], : full.shape[1]] = full[: h + 2 * ph, : w + 2 * pw]
        _REACH[key] = out[ph : ph + h, pw : pw + w].contiguous()
    return _REACH[key]


def conv_macs(conv: nn.Module, x: torch.Tensor, nonzero: torch.Tensor | None = None) -> tuple[float, float]:
    """``(effective, dense)`` MACs of ``conv`` on ``x [N, C, *spatial]``. A 2-D convolution without
    the per-output events: each nonzero input times the output positions it reaches (:func:`reach`)
    times the output channels of its group (``nonzero``: the ``[H, W]`` count of nonzero inputs per
    position over clips and channels, if known); 1-D and 3-D through :func:`conv_ops`."""
    if x.dim() != 4:
        eff, dense, _ = conv_ops(conv, x)
        return eff, dense
    n, c, h, w = x.shape
    per_pos = nonzero_per_position(x) if nonzero is None else nonzero  # each group reaches its own outputs
    pad = _padding(conv, (h, w))
    fan = reach(tuple(conv.weight.shape), conv.stride, pad, conv.dilation, h, w).to(x.device)
    effective = float((per_pos * fan).sum()) * (conv.out_channels // conv.groups)
    return effective, dense_conv_macs(conv, tuple(x.shape))


def nonzero_per_position(x: torch.Tensor) -> torch.Tensor:
    """``float64 [H, W]``: the nonzero elements of ``x [N, C, H, W]`` at each position."""
    return (x != 0).sum(dim=(0, 1), dtype=torch.float64)


def linear_ops(lin: nn.Linear, x: torch.Tensor, nonzero: int | None = None) -> tuple[float, float]:
    """``(effective, dense)`` MACs of ``lin`` on ``x [..., in]`` (``nonzero``: its count of nonzeros)."""
    nonzero = int(torch.count_nonzero(x)) if nonzero is None else nonzero
    return float(nonzero) * lin.out_features, linear_dense_macs(lin, tuple(x.shape))


def unaccounted(model: nn.Module, handled: Iterable[str]) -> list[str]:
    """Names of the modules of ``model`` that hold their own weights but that no counter counts: not
    a convolution or linear layer, not a normalisation (:data:`NOT_COUNTED`), and not inside a module
    named in ``handled`` (counted as a whole by a caller's own rule)."""
    handled = tuple(handled)
    out = []
    for name, m in model.named_modules():
        if not any(True for _ in m.parameters(recurse=False)) or isinstance(m, (*COUNTED, *NOT_COUNTED)):
            continue
        if any(name == h or name.startswith(h + ".") for h in handled):
            continue
        out.append(name or type(m).__name__)
    return out


@dataclass(frozen=True)
class OpCount:
    """Dense MACs of one layer (or one module's attention products) on the counted input."""

    name: str
    op: str  # mac (convolution, linear) or matmul (attention products)
    dense_macs: float
    params: int
    out_shape: tuple[int, ...]  # of the whole counted input (batch included)


def on_meta(model: nn.Module) -> nn.Module:
    """``model`` on the ``meta`` device (a copy when it holds real weights): shapes without storage."""
    if all(p.device.type == "meta" for p in model.parameters()):
        return model
    return copy.deepcopy(model).to("meta")


def shape_counts(model: nn.Module, *inputs: tuple[int, ...]) -> list[OpCount]:
    """Dense MACs of every convolution, linear layer and attention product of ``model`` on inputs of
    the given shapes, in the order they run: a forward pass on the ``meta`` device (``model`` itself is
    not changed). A module with weights that no rule counts is an error, not a silent zero."""
    missing = unaccounted(model, ())
    if missing:
        raise UsageError(f"cannot count operations of {', '.join(missing[:5])}: only convolutions "
                         "(1-3 D), linear layers and normalisations are known")
    meta = on_meta(model).eval()
    counts: list[OpCount] = []
    handles = []

    def layer(name):
        def hook(mod, args, out):
            shape = tuple(args[0].shape)
            macs = dense_conv_macs(mod, shape) if isinstance(mod, CONVS) else linear_dense_macs(mod, shape)
            counts.append(OpCount(name, "mac", macs, mod.weight.numel(), tuple(out.shape)))
        return hook

    def products(name):
        def hook(mod, args, kwargs, out):
            counts.append(OpCount(f"{name}.matmul", "matmul", float(mod.matmul_macs(*args, **kwargs)), 0,
                                  tuple(out.shape)))
        return hook

    for name, m in meta.named_modules():
        if isinstance(m, COUNTED):
            handles.append(m.register_forward_hook(layer(name)))
        elif callable(getattr(m, "matmul_macs", None)):
            handles.append(m.register_forward_hook(products(name), with_kwargs=True))
    try:
        with torch.no_grad():
            meta(*(torch.zeros(s, device="meta") for s in inputs))
    finally:
        for h in handles:
            h.remove()
    return counts
