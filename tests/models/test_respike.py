"""The ReSpike model and its baselines: decomposition routing, fusion, head, quantized path."""

from __future__ import annotations

import pytest
import torch

from respike_nm.models import list_models
from respike_nm.models.fusion import CrossAttentionFusion
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNN_ARCHS, SNNSpec

SMALL = dict(num_classes=5, stride=4, ann_width=0.125)


def _model(kind, fusion="multiscale", arch="plain", quant=None, **kw):
    from respike_nm.models.fixed_point import DEFAULT_SPEC

    snn = SNNSpec(arch=arch, width=0.125, quant=DEFAULT_SPEC if quant else None)
    torch.manual_seed(0)
    return ReSpike(ReSpikeSpec(kind=kind, snn=snn, fusion=fusion, **{**SMALL, **kw})).eval()


def _video(b=2, t=8, size=32, seed=0):
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", list_models())
@pytest.mark.parametrize("arch", list(SNN_ARCHS))
def test_single_and_multi_clip_give_each_clips_own_logits(kind, arch):
    """``[B, K, T, ...]`` is K clips per video: its logits are those of each clip run alone (in a
    batch of its own), and different clips give different logits where the model responds."""
    m = _model(kind, arch=arch)
    clips = [_video(seed=k) for k in range(3)]
    single = [m(c) for c in clips]
    assert single[0].shape == (2, 5)
    multi = m(torch.stack(clips, dim=1))
    assert multi.shape == (2, 3, 5)
    for k in range(3):
        torch.testing.assert_close(multi[:, k], single[k], rtol=1e-4, atol=1e-5)
    if (kind, arch) != ("snn", "plain"):  # the untrained plain SNN alone is silent at this width
        assert not torch.allclose(single[0], single[1])


def test_ann_baseline_sees_only_key_frames():
    m = _model("ann")
    v = _video()
    w = v.clone()
    w[:, 1:4] += torch.randn_like(w[:, 1:4])  # change only non-key frames of group 0
    torch.testing.assert_close(m(v), m(w), rtol=0, atol=0)
    w[:, 0] += 1.0  # a key frame
    assert not torch.allclose(m(v), m(w))


def test_snn_baseline_sees_only_residuals():
    m = _model("snn")
    v = _video()
    shifted = v + torch.randn(2, 1, 3, 32, 32)  # same static offset on every frame
    torch.testing.assert_close(m(v), m(shifted), rtol=0, atol=1e-5)  # residuals unchanged


def test_fusion_starts_as_identity_and_learns():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(16, 24)
    snn, ann = torch.rand(2, 16, 4, 4, 3), torch.randn(2, 24, 4, 4)
    torch.testing.assert_close(fusion(snn, ann), snn, rtol=0, atol=0)  # zero-initialised output
    fusion(snn, ann).sum().backward()
    assert fusion.proj_out.weight.grad.abs().sum() > 0


def test_fusion_uses_the_ann_context_of_its_own_sample():
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(16, 24)
    torch.nn.init.normal_(fusion.proj_out.weight)
    snn, ann = torch.rand(2, 16, 4, 4, 3), torch.randn(2, 24, 4, 4)
    out = fusion(snn, ann)
    ann2 = ann.clone()
    ann2[1] += 1.0  # change sample 1's context only
    out2 = fusion(snn, ann2)
    torch.testing.assert_close(out[0], out2[0])
    assert not torch.allclose(out[1], out2[1])


@pytest.mark.parametrize("fusion, stages", [("multiscale", {"2", "3", "4"}), ("late", {"4"}),
                                            ("none", set()), ("downsample", {"1", "2", "3", "4"})])
def test_fusion_variants_place_fusion_points(fusion, stages):
    m = _model("hybrid", fusion=fusion)
    assert set(m.fusion) == stages
    assert m(_video()).shape == (2, 5)


def test_quantized_eval_uses_folded_quantized_weights():
    from respike_nm.models.fixed_point import DEFAULT_SPEC, quantize_bias

    m = _model("snn", quant=True)
    conv = m.snn.stem.synapse
    conv.bn.running_mean.uniform_(-0.5, 0.5)
    conv.bn.running_var.uniform_(0.5, 2.0)
    w, b = conv.folded()
    x = torch.randn(4, 3, 8, 8)
    current, bias, _ = conv(x)
    step = DEFAULT_SPEC.weight_step
    w_q = torch.round(w / step) * step
    ref = torch.nn.functional.conv2d(x, w_q.clamp(*DEFAULT_SPEC.weight_range), None, 2, 1)
    torch.testing.assert_close(current, ref)
    # the bias is the folded BN bias quantized: nonzero (random running statistics), on the 1/64 grid
    assert b.abs().min() > 1 / 64
    torch.testing.assert_close(bias, quantize_bias(b, DEFAULT_SPEC), rtol=0, atol=0)
    assert torch.all((bias * 64 - torch.round(bias * 64)).abs() < 1e-6)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="hybrid, ann, snn"):
        ReSpikeSpec(kind="cnn")
    with pytest.raises(ValueError, match="multiscale"):
        ReSpikeSpec(fusion="early")
