"""Plan e and the generic operation arithmetic against torchvision's documented figures, an
independent counter (ptflops) and brute force."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from respike_nm.energy.baselines import BASELINES, baseline_counts
from respike_nm.energy.ops import conv_ops, shape_counts
from respike_nm.errors import UsageError


@pytest.mark.parametrize("key", sorted(BASELINES))
def test_dense_macs_equal_torchvisions_documented_ops(key):
    b = BASELINES[key]
    t, h, w = b.reference
    macs = sum(o.dense_macs for o in baseline_counts(key, t, h, w))
    # torchvision's weights.meta["_ops"] (GMACs at 16 frames of the reference size), read from the
    # installed package: within 1 % (the documented figure rounds to 3 decimals)
    assert macs / 1e9 == pytest.approx(b.documented_gmacs, rel=0.01)
    assert 60 < b.kinetics_top1 < 70  # documented Kinetics-400 top-1, e.g. 67.463 for R(2+1)D-18


@pytest.mark.parametrize("key", sorted(BASELINES))
def test_an_independent_counter_agrees(key):
    from ptflops import get_model_complexity_info

    # ptflops' aten backend counts aten.convolution and aten.addmm on a real forward pass; it adds
    # one op per output for the classifier's bias (10 classes here), everything else must agree
    shape = (3, 16, 224, 224) if key == "s3d" else (3, 8, 64, 64)  # S3D's pooling needs 224
    ref, _ = get_model_complexity_info(BASELINES[key].network(10).eval(), shape, as_strings=False,
                                       backend="aten", print_per_layer_stat=False, verbose=False)
    ours = sum(o.dense_macs for o in baseline_counts(key, *shape[1:], classes=10))
    assert ours + 10 == ref


def test_a_clip_too_small_for_a_baseline_is_skipped_with_its_reason():
    from respike_nm.energy.plans import PlanNotApplicable

    with pytest.raises(PlanNotApplicable, match="S3D cannot take clips of 16x64x64"):
        baseline_counts("s3d", 16, 64, 64)


def _brute_effective(x: torch.Tensor, conv: nn.Conv3d) -> float:
    """Effective MACs by enumeration: for every output position, the nonzero inputs of its window."""
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = conv.kernel_size, conv.stride, conv.padding
    n, c, t, h, w = x.shape
    total = 0
    outs = [(t + 2 * pt - kt) // st + 1, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1]
    for b, ot, oh, ow in itertools.product(range(n), *(range(o) for o in outs)):
        for dt, dh, dw in itertools.product(range(kt), range(kh), range(kw)):
            it, ih, iw = ot * st - pt + dt, oh * sh - ph + dh, ow * sw - pw + dw
            if 0 <= it < t and 0 <= ih < h and 0 <= iw < w:
                total += int((x[b, :, it, ih, iw] != 0).sum())
    return float(total * conv.out_channels)


def test_conv3d_effective_and_dense_macs_by_enumeration():
    conv = nn.Conv3d(2, 3, (3, 3, 3), stride=(1, 2, 2), padding=(1, 1, 1))
    x = torch.zeros(1, 2, 4, 5, 5)
    for i in [(0, 0, 0, 0, 0), (0, 1, 2, 3, 4), (0, 0, 3, 2, 2), (0, 1, 1, 0, 4)]:
        x[i] = 1.5
    eff, dense, _ = conv_ops(conv, x)
    assert eff == _brute_effective(x, conv)
    # dense: every weight at every output position (4 x 3 x 3 outputs), padding included
    assert dense == 4 * 3 * 3 * 3 * (2 * 27)
    assert shape_counts(conv, tuple(x.shape))[0].dense_macs == dense


def test_a_weighted_layer_no_rule_counts_is_refused():
    from respike_nm.energy.counters import count_ops

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 4, 2))
    with pytest.raises(UsageError, match="cannot count operations of 1"):
        shape_counts(net, (1, 3, 8, 8))

    class Hybrid(nn.Module):  # a ReSpike-shaped model whose ANN holds a layer no counter knows
        def __init__(self):
            super().__init__()
            self.ann = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 4, 2))
            self.head = nn.Linear(4, 2)

    with pytest.raises(UsageError, match=r"no counter for ann\.1"):
        with count_ops(Hybrid()):
            pass


def test_the_price_commands_help_names_every_baseline():
    from respike_nm.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    against = next(a for a in sub.choices["price"]._actions if a.dest == "against")
    assert against.default in BASELINES and all(k in against.help for k in BASELINES)
