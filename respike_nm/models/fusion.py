"""Multi-scale cross-attention fusion (ReSpike, docs/method.md).

At a fusion point the SNN features ``[N, C, H, W, T]`` (SLAYER layout; N = clips x key-frame
groups) attend to the ANN stage features ``[N, C_a, H_a, W_a]`` of the same key frame, at every
SNN time step with the same context::

    x -> norm -> 1x1 conv -> [self-attention -> cross-attention (Q: SNN, K/V: ANN)
      -> GEGLU feed-forward x4] (pre-LayerNorm, residuals) -> zero-initialised 1x1 conv -> + x

The output projection starts at zero, so an untrained fusion leaves the SNN unchanged (except in
the ``downsample`` variant, whose pooled and upsampled map replaces the features, as published).

**The input norm follows what the stage emits.** The published code puts GroupNorm(32, eps 1e-6)
on a real-valued current (its blocks end in ``BN(conv(...)) + shortcut``); the ``resnet`` SNN keeps
that. The deployable ``plain`` SNN ends every stage in a LIF, so fusion sees binary spikes, and on
spikes many groups are all zero (27.8 % at stage 4 of the tiny model at initialisation): the
backward pass through such a group is multiplied by about ``1 / sqrt(eps)``, 62 / 95 / 188 times
the head's direct gradient at stages 2 / 3 / 4 of the tiny model at initialisation (seed 1, output
projection at its default initialisation; 118-1466 x during training), which stopped motion
learning on some seeds. For spikes the model therefore uses **BatchNorm with eps 1e-2**
(``fusion_norm="auto"``; statistics over N, T, H, W; at eval an affine map that folds into
``proj_in``). Measured on the tiny preset (synthetic-motion, multi-scale fusion at stages 2-4,
fusion at the full learning rate, 12 epochs, 2 CPU cores), test top-1 for seeds 1 / 0:

| input norm | gradient ratio at init, stages 2/3/4 | seed 1 | seed 0 |
|---|---|---|---|
| GroupNorm, eps 1e-6 (published) | 62 / 95 / 188 | (0.51 with late fusion) | |
| GroupNorm, eps 1e-2 | 1.5 / 1.6 / 2.3 | 0.717 | 0.642 |
| identity | 0.36 / 0.45 / 0.96 | 0.842 | 0.817 |
| BatchNorm, eps 1e-5 | 1.4 / 1.3 / 1.5 | 0.983 | 0.983 |
| **BatchNorm, eps 1e-2** | | **1.000** | see below |

BatchNorm normalises each channel's firing rate (channels fire at 1-30 %), which identity does
not, and statistics over the whole batch are never all zero the way a sample's group is. Its usual
eps (1e-5) still amplifies the gradient into a channel that is silent, or spikes once, in the whole
batch (``1 / sqrt(var + eps)``, up to 316 x; 25-100 x on the test's sparse maps with 8 silent
channels); eps 1e-2 bounds that at 10 x and measured 3-4 x. ``tests/models/test_fusion.py`` keeps
the fusion's gradient into spikes within 10 x of the head's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from respike_nm.errors import UsageError
from respike_nm.layout import nchwt_to_steps, steps_to_nchwt

HEAD_DIM = 32  # dims per attention head, as the published code


def group_count(channels: int, preferred: int = 32) -> int:
    """Largest divisor of ``channels`` not above ``preferred`` (GroupNorm(32) for narrow nets)."""
    return math.gcd(channels, preferred)


class Attention(nn.Module):
    """Multi-head attention; ``context`` None means self-attention. Tokens ``[N, L, D]``."""

    def __init__(self, dim: int, context_dim: int | None = None, head_dim: int = HEAD_DIM):
        super().__init__()
        self.heads = max(1, dim // head_dim)
        inner = self.heads * head_dim
        self.head_dim = head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)
        n = x.shape[0]
        q, k, v = (t.reshape(n, -1, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.to_out(out.transpose(1, 2).reshape(n, -1, self.heads * self.head_dim))

    def matmul_macs(self, x: torch.Tensor, context: torch.Tensor | None = None) -> int:
        """MACs of the two matrix products (``Q K^T`` and ``A V``) on these inputs, which module
        hooks cannot see (``energy.ops``): ``2 N Lq Lk heads head_dim``."""
        lk = x.shape[1] if context is None else context.shape[1]
        return 2 * x.shape[0] * x.shape[1] * lk * self.heads * self.head_dim


class GEGLU(nn.Module):
    """Feed-forward ``dim -> mult*dim (GELU-gated) -> dim``."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention, cross-attention and GEGLU, each with a residual."""

    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, context_dim)
        self.norm3, self.ff = nn.LayerNorm(dim), GEGLU(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


NORMS = ("identity", "batchnorm", "groupnorm")


DEFAULT_EPS = {"batchnorm": 1e-2, "groupnorm": 1e-6}  # spikes; currents (the published value)


def make_norm(kind: str, channels: int, eps: float | None = None) -> nn.Module:
    """The fusion's input norm: ``identity``, ``batchnorm`` (running statistics at eval) or
    ``groupnorm`` (GroupNorm(32) as published); ``eps`` None: :data:`DEFAULT_EPS`."""
    if kind == "identity":
        return nn.Identity()
    eps = DEFAULT_EPS.get(kind) if eps is None else eps
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "groupnorm":
        return nn.GroupNorm(group_count(channels), channels, eps=eps)
    raise UsageError(f"unknown fusion norm {kind!r}; valid: {', '.join(NORMS)}")


class CrossAttentionFusion(nn.Module):
    """One fusion point: SNN ``[N, C, H, W, T]`` + ANN ``[N, C_a, H_a, W_a]`` -> ``[N, C, H, W, T]``.

    ``pool`` > 1 is the published ``downsample`` variant for the early, large stages: the SNN map
    and the ANN context are average-pooled by ``pool``, fused, and the fused map is upsampled
    bilinearly and *replaces* the SNN features (so even an untrained fusion smooths them).
    ``norm`` is the input norm (:func:`make_norm`); the model picks it by what the stage emits.
    """

    def __init__(self, channels: int, context_channels: int, dim: int | None = None, pool: int = 1,
                 norm: str = "groupnorm", eps: float | None = None):
        super().__init__()
        dim = dim or max(HEAD_DIM, channels)
        self.pool = pool
        self.norm = make_norm(norm, channels, eps)
        self.proj_in = nn.Conv2d(channels, dim, 1)
        self.block = TransformerBlock(dim, context_channels)
        self.proj_out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, snn: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
        n, c, h, w, t = snn.shape
        x = nchwt_to_steps(snn)  # every time step, same context
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool, ceil_mode=True)
            ann = F.avg_pool2d(ann, self.pool, ceil_mode=True)
        hp, wp = x.shape[-2:]
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # [N*T, hp*wp, dim]
        context = ann.flatten(2).transpose(1, 2).repeat_interleave(t, dim=0)  # [N*T, L_a, C_a]
        tokens = self.block(tokens, context)
        out = x + self.proj_out(tokens.transpose(1, 2).reshape(n * t, -1, hp, wp))
        if self.pool > 1:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return steps_to_nchwt(out, t)

    def macs(self, snn_shape: tuple[int, ...], ann_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of one forward pass, counted explicitly (hooks miss matmuls): every
        convolution, linear layer and attention matmul; norms, softmax, GELU, pooling and the
        upsampling are elementwise and not counted."""
        return sum(self.macs_parts(snn_shape, ann_shape).values())

    def macs_parts(self, snn_shape: tuple[int, ...], ann_shape: tuple[int, ...]) -> dict[str, int]:
        """:meth:`macs` split into ``"layers"`` (projections, attention's Q/K/V/out, feed-forward) and
        ``"matmul"`` (the attention products ``Q K^T`` and ``A V``, which some accountings leave out)."""
        n, c, h, w, t = snn_shape
        _, ca, ha, wa = ann_shape
        hp, wp = -(-h // self.pool), -(-w // self.pool)
        lq, lk, nt = hp * wp, -(-ha // self.pool) * -(-wa // self.pool), n * t
        dim = self.proj_in.out_channels
        inner = self.block.attn1.heads * HEAD_DIM
        ff = self.block.ff.out.in_features
        layers = (
            lq * c * dim  # proj_in
            + 3 * lq * dim * inner + lq * inner * dim  # self-attention Q, K, V, out
            + lq * dim * inner + 2 * lk * ca * inner + lq * inner * dim  # cross-attention Q, K, V, out
            + lq * dim * 2 * ff + lq * ff * dim  # GEGLU
            + lq * dim * c  # proj_out
        )
        products = 2 * lq * lq * inner + 2 * lq * lk * inner  # self, cross: Q K^T and A V
        return {"layers": nt * layers, "matmul": nt * products}
