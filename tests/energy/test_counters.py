"""Operation counters against published figures, an independent counter and closed forms."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from respike_nm.energy.counters import count_ops, totals
from respike_nm.models.fusion import CrossAttentionFusion
from respike_nm.models.snn import ConvBN, SNNSpec, SpikingConv


class _Net(nn.Module):
    """Puts a module under the name the counters use for its branch (``snn`` or ``fusion``)."""

    def __init__(self, **modules):
        super().__init__()
        for k, v in modules.items():
            setattr(self, k, v)


def test_resnet18_macs_match_published_and_ptflops():
    from ptflops import get_model_complexity_info

    model = torchvision.models.resnet18().eval()
    with count_ops(model) as log:
        model(torch.randn(1, 3, 224, 224))
    macs = totals(list(log.layers.values())).Dense_MACs
    # Published: 1.82 GMACs (torchvision lists 1.81 "GFLOPS", which are MACs). Convs + fc give
    # 1.814e9; the published figure also rounds in BN/ReLU/pooling ops, so allow 0.5%.
    assert macs == pytest.approx(1.82e9, rel=5e-3)
    # ptflops' aten backend counts aten.convolution and aten.addmm, where the fc bias adds one
    # op per output (1000): everything else must agree exactly.
    ref, _ = get_model_complexity_info(model, (3, 224, 224), as_strings=False, backend="aten",
                                       print_per_layer_stat=False, verbose=False)
    assert macs + model.fc.out_features == ref


def _reached(y: int, x: int, h: int, w: int, stride: int, k: int = 3) -> int:
    """Output positions of a k x k conv (padding k//2) whose receptive field holds input (y, x)."""
    pad = k // 2
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return sum(1 for oy, ox in itertools.product(range(oh), range(ow))
               if oy * stride - pad <= y <= oy * stride - pad + k - 1
               and ox * stride - pad <= x <= ox * stride - pad + k - 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_synops_of_a_hand_built_spike_pattern(stride):
    cin, cout, h, w = 2, 5, 6, 6
    conv = ConvBN(cin, cout, stride, SNNSpec()).eval()
    x = torch.zeros(3, cin, h, w)  # three steps (time folded into the batch, as ConvBN sees it)
    spikes = [(0, 0, 0, 0), (0, 1, 2, 3), (1, 0, 5, 5), (2, 1, 3, 3), (2, 0, 3, 3)]
    for s in spikes:
        x[s] = 1.0
    with count_ops(_Net(snn=conv)) as log:
        conv(x)
    c = log.layers["snn"]
    # closed form: each spike reaches cout neurons at every output position it feeds
    assert c.op == "synop"
    assert c.effective_acs == cout * sum(_reached(y, xx, h, w, stride) for _, _, y, xx in spikes)
    if stride == 1:  # by hand: corner 4, interior 9, corner 4, interior 9 + 9 positions, x 5 channels
        assert c.effective_acs == 5 * (4 + 9 + 4 + 9 + 9)
    oh = (h - 1) // stride + 1
    assert c.dense_acs == 3 * oh * oh * cout * cin * 9  # padding included, as MAC counters count
    # active neuron-steps: output positions that received >= 1 event, per step, x cout
    positions = {(n, oy, ox) for n, _, y, xx in spikes for oy, ox in itertools.product(range(oh), range(oh))
                 if oy * stride - 1 <= y <= oy * stride + 1 and ox * stride - 1 <= xx <= ox * stride + 1}
    assert c.active_updates == cout * len(positions)
    assert c.effective_macs == 0 and c.nonzero_inputs == len(spikes)


def test_graded_input_counts_macs_and_neurons_count_updates():
    layer = SpikingConv(3, 4, 2, SNNSpec()).eval()
    x = torch.zeros(2, 3, 8, 8, 3)  # [N, C, H, W, T]
    x[0, 0, 4, 4, 1] = 0.37
    x[1, 2, 0, 7, 2] = -1.5
    with count_ops(_Net(snn=layer)) as log:
        out = layer(x)
    c = log.layers["snn"]
    assert c.op == "graded" and c.effective_acs == 0
    assert c.effective_macs == 4 * (_reached(4, 4, 8, 8, 2) + _reached(0, 7, 8, 8, 2))
    assert c.neuron_updates == 2 * 4 * 4 * 4 * 3  # N x Co x H' x W' x T
    assert c.spikes_out == out.sum().item()


def test_attention_macs_equal_the_closed_form():
    n, c, h, w, t, ca, ha, wa = 2, 32, 4, 4, 3, 16, 2, 2
    fusion = CrossAttentionFusion(c, ca).eval()
    snn, ann = torch.randn(n, c, h, w, t), torch.randn(n, ca, ha, wa).abs() + 0.1
    with count_ops(_Net(fusion=fusion)) as log:
        fusion(snn, ann)
    lq, lk, d, inner, ff, nt = h * w, ha * wa, 32, 32, 4 * 32, n * t  # dim = channels, one 32-dim head
    per_step = (lq * c * d + 3 * lq * d * inner + 2 * lq * lq * inner + lq * inner * d
                + lq * d * inner + 2 * lk * ca * inner + 2 * lq * lk * inner + lq * inner * d
                + lq * d * 2 * ff + lq * ff * d + lq * d * c)
    counted = totals(list(log.layers.values())).Dense_MACs
    assert counted == nt * per_step
    assert counted == fusion.macs(snn.shape, ann.shape)  # the module's own closed form agrees
    assert log.layers["fusion.block.attn1.matmul"].dense_macs == nt * 2 * lq * lq * inner
    assert log.layers["fusion.block.attn2.matmul"].dense_macs == nt * 2 * lq * lk * inner


def test_hooks_are_removed_and_forward_is_unchanged():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    with count_ops(model):
        inside = model(x)
    assert torch.equal(ref, inside)
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(("k", "stride", "padding", "dilation", "groups", "hw"), [
    (3, 1, 1, 1, 1, (7, 9)), (3, 2, 1, 1, 1, (8, 8)), (7, 2, 3, 1, 1, (11, 10)), (5, 2, 0, 1, 4, (9, 13)),
    (3, 2, 2, 2, 2, (10, 7)), (1, 2, 0, 1, 1, (5, 6)), (3, 1, 0, 1, 8, (6, 6)),
])
def test_effective_macs_by_reach_equal_the_per_output_event_count(k, stride, padding, dilation, groups, hw):
    """The ANN's cheaper count (nonzero inputs x the outputs each reaches) equals the SNN's count of
    events per output window, for strides, paddings, dilations, groups and odd sizes."""
    from respike_nm.energy.ops import conv_macs, conv_ops

    torch.manual_seed(k * 7 + stride)
    conv = nn.Conv2d(8, 16, k, stride, padding, dilation, groups, bias=False)
    x = torch.randn(3, 8, *hw) * (torch.rand(3, 8, *hw) < 0.4)
    eff_events, dense_events, _ = conv_ops(conv, x)
    eff, dense = conv_macs(conv, x)
    assert eff == eff_events and dense == dense_events
    assert dense == conv(x).numel() * conv.weight[0].numel()
