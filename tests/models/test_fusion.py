"""Cross-attention fusion: conditioning on spikes, the published downsample variant, MAC counts."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from respike_nm.models.fusion import CrossAttentionFusion, group_count
from respike_nm.models.respike import ReSpike, ReSpikeSpec, fusion_norm_for
from respike_nm.models.snn import SNN_ARCHS, SNNSpec


def sparse_spikes(n=4, c=64, h=4, w=4, t=3, rate=0.05, dead_groups=0.3, dead_channels=8,
                  seed=0) -> torch.Tensor:
    """Binary spikes ``[N, C, H, W, T]`` at ``rate``, with whole GroupNorm groups silent in a sample
    (as the stage-4 spikes of the tiny model: 27.8 % of groups all zero at initialisation) and some
    channels silent in every sample (where a BatchNorm's variance is 0)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, c, h, w, t, generator=g) < rate).float()
    groups = group_count(c)
    silent = torch.rand(n, groups, generator=g) < dead_groups
    mask = silent.repeat_interleave(c // groups, dim=1)[:, :, None, None, None]
    x[:, :dead_channels] = 0
    return x.masked_fill(mask, 0.0)


def gradient_ratio(fusion: CrossAttentionFusion, seed=0) -> float:
    """|| gradient into the SNN through the fusion || / || the head's direct gradient ||: the
    fused output is ``x + delta(x)``, so d loss / dx = g + J_delta^T g with g = d loss / d out."""
    torch.manual_seed(seed)
    x = sparse_spikes(seed=seed).requires_grad_(True)
    ann = torch.randn(x.shape[0], 32, 4, 4)
    head = torch.nn.Linear(x.shape[1], 10)
    out = fusion(x, ann)
    out.retain_grad()
    loss = torch.nn.functional.cross_entropy(head(out.mean(dim=(2, 3, 4))), torch.arange(x.shape[0]))
    loss.backward()
    direct = out.grad
    return float((x.grad - direct).norm() / direct.norm())


def learned_fusion(norm: str, eps: float | None = None, seed: int = 0) -> CrossAttentionFusion:
    """A fusion whose zero-initialised output projection has started to learn (default init)."""
    torch.manual_seed(seed)
    f = CrossAttentionFusion(64, 32, norm=norm, eps=eps).train()
    f.proj_out.reset_parameters()
    return f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fusion_on_spikes_sends_back_a_gradient_of_the_heads_size(seed):
    """Regression: GroupNorm(eps 1e-6) on spike maps with silent groups multiplied the backward
    pass by ~1/sqrt(eps) (measured 118-1466x the head's gradient in training); the norm the plain
    SNN now gets keeps it within 10x."""
    norm = fusion_norm_for(SNN_ARCHS["plain"].emits)
    assert gradient_ratio(learned_fusion(norm, seed=seed), seed) < 10
    # the test can tell: the published GroupNorm, or a BatchNorm with its usual eps (a silent channel
    # has variance 0), on the same spikes are far outside the bound
    assert gradient_ratio(learned_fusion("groupnorm", 1e-6, seed=seed), seed) > 30
    assert gradient_ratio(learned_fusion("batchnorm", 1e-5, seed=seed), seed) > 30


def test_norm_follows_what_the_snn_stage_emits():
    def norms(arch, **kw):
        snn = SNNSpec(arch=arch, width=0.125)
        m = ReSpike(ReSpikeSpec(kind="hybrid", num_classes=3, ann_width=0.125, snn=snn, **kw))
        return {type(f.norm).__name__ for f in m.fusion.values()}

    assert norms("plain") == {"BatchNorm2d"}  # binary spikes
    assert norms("resnet") == {"GroupNorm"}  # real-valued currents, as the published code
    assert norms("plain", fusion_norm="identity") == {"Identity"}
    with pytest.raises(ValueError, match="fusion norm"):
        ReSpikeSpec(fusion_norm="layernorm")


def published_downsample(f: CrossAttentionFusion, snn: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
    """The published AttentionResNet_Downsample order, per time step, with the module's own
    weights: AvgPool2d(p) of the SNN map and the ANN context, SpatialTransformer (norm, proj_in,
    block, proj_out, + pooled input), Upsample(scale_factor=p, bilinear) replacing the map."""
    pool = torch.nn.AvgPool2d((f.pool, f.pool))
    up = torch.nn.Upsample(scale_factor=f.pool, mode="bilinear")
    ctx = pool(ann).flatten(2).transpose(1, 2)
    steps = []
    for t in range(snn.shape[-1]):
        x = pool(snn[..., t])
        b, c, h, w = x.shape
        tok = f.proj_in(f.norm(x)).flatten(2).transpose(1, 2)
        tok = f.block(tok, ctx)
        steps.append(up(f.proj_out(tok.transpose(1, 2).reshape(b, -1, h, w)) + x))
    return torch.stack(steps, dim=-1)


@pytest.mark.parametrize("pool", [2, 4])
def test_downsample_variant_is_the_published_pool_fuse_upsample_replace(pool):
    torch.manual_seed(0)
    f = CrossAttentionFusion(16, 24, pool=pool, norm="groupnorm").eval()
    snn, ann = torch.rand(2, 16, 16, 8, 3), torch.randn(2, 24, 16, 8)
    # untrained (zero output projection): the features are replaced by their smoothed version
    torch.testing.assert_close(f(snn, ann), published_downsample(f, snn, ann))
    assert not torch.allclose(f(snn, ann), snn)
    torch.nn.init.normal_(f.proj_out.weight)
    torch.testing.assert_close(f(snn, ann), published_downsample(f, snn, ann))


@pytest.mark.parametrize("pool, snn_hw, ann_hw", [(1, (4, 4), (4, 4)), (1, (3, 5), (2, 2)),
                                                  (2, (8, 6), (8, 6)), (4, (16, 16), (16, 16)),
                                                  (2, (7, 5), (7, 5))])
def test_fusion_macs_equal_torch_flop_counter(pool, snn_hw, ann_hw):
    """The closed-form count against torch's own FLOP counter (SDPA in its math form, so that its
    two matmuls are visible as bmm): every conv, linear and attention matmul, exactly."""
    f = CrossAttentionFusion(16, 24, pool=pool, norm="identity")
    snn, ann = torch.rand(2, 16, *snn_hw, 3), torch.randn(2, 24, *ann_hw)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        f(snn, ann)
    assert counter.get_total_flops() == 2 * f.macs(tuple(snn.shape), tuple(ann.shape))
