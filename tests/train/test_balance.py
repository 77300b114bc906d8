"""Branch balancing (train.branch_loss): the head's decomposition, auxiliary heads that exist only in
training, OGM-GE's coefficients and modulation, Gradient-Blending's weights, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SMALL_TRAIN

from respike_nm.config import ConfigError, apply_overrides, load_config
from respike_nm.models.respike import BranchFeatures
from respike_nm.train.balance import (
    BranchHeads,
    gblend_weights,
    make_heads,
    modulate,
    ogm_coefficients,
    step_loss,
)
from respike_nm.train.builder import build_model
from respike_nm.train.checkpoint import load_checkpoint
from respike_nm.train.loop import train
from respike_nm.train.run import load_run


def _cfg(*extra):
    return apply_overrides(load_config("tiny"), SMALL_TRAIN + list(extra))


def _video(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, 3, 32, 32, generator=g)


def test_branch_logits_add_up_to_the_head_and_use_each_branchs_columns():
    torch.manual_seed(0)
    model = build_model(_cfg(), "hybrid", 4).eval()
    with torch.no_grad():
        logits, feats = model(_video(), with_features=True)
        shares = model.branch_logits(feats)
        torch.testing.assert_close(shares["ann"] + shares["snn"], logits)
        # independent: the SNN's share is its features times the first columns of the head's weight
        s = feats.parts["snn"]
        w = model.head.weight[:, : s.shape[1]]
        expect = (s @ w.t() + model.head.bias / 2).reshape(feats.b, feats.g, -1).mean(1)
        torch.testing.assert_close(shares["snn"], expect)
        assert list(feats.parts) == ["snn", "ann"]  # the order of the head's input


def test_aux_heads_train_but_are_not_part_of_the_model(tmp_path):
    res = train(_cfg("train.epochs=1", "train.branch_loss=aux"), "hybrid", tmp_path / "aux")
    train(_cfg("train.epochs=1"), "hybrid", tmp_path / "fused")
    aux, fused = (
        load_checkpoint(tmp_path / "aux/checkpoint.pt"),
        load_checkpoint(tmp_path / "fused/checkpoint.pt"),
    )
    assert {k: v.shape for k, v in aux.model.items()} == {k: v.shape for k, v in fused.model.items()}
    assert fused.aux is None and set(aux.aux) == {"ann.weight", "ann.bias", "snn.weight", "snn.bias"}
    model, _, _ = load_run(tmp_path / "aux")  # loads strictly into the deployable model
    assert [s.names for s in model.stage_specs()] == [
        s.names for s in load_run(tmp_path / "fused")[0].stage_specs()
    ]
    row = res.history[-1]
    assert {"train_loss_fused", "train_loss_ann", "train_loss_snn"} <= set(row)
    # the loss is the weighted sum of the three heads' cross-entropies (weights 1, 1, 1)
    assert row["train_loss"] == pytest.approx(
        row["train_loss_fused"] + row["train_loss_ann"] + row["train_loss_snn"], rel=1e-6
    )


def test_aux_weights_reach_the_branches_gradients():
    """Weights (1, 0, 0) give the fused loss exactly; an SNN head weight changes the SNN's gradient."""
    cfg = _cfg()
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", 4)
    heads = make_heads(apply_overrides(cfg, ["train.branch_loss=aux"]).train, "hybrid", model, 4)
    labels = torch.tensor([0, 3])

    def grad(weights, with_heads=True):
        model.zero_grad()
        t = apply_overrides(cfg, ["train.branch_loss=aux", f"train.branch_weights={weights}"]).train
        torch.manual_seed(1)
        logits, feats = model(_video(), with_features=True)
        loss, _, _ = step_loss(t, model, logits, feats, labels, heads if with_heads else None)
        loss.backward()
        return model.snn.stem.synapse.conv.weight.grad.clone()

    plain = grad([1, 1, 1], with_heads=False)
    assert torch.equal(grad([1, 0, 0]), plain)
    assert not torch.allclose(grad([1, 0, 1]), plain)


def test_ogm_coefficient_damps_the_branch_that_scores_higher():
    labels = torch.tensor([0, 1])
    ann = torch.tensor([[4.0, 0.0], [0.0, 4.0]])  # confident and right
    snn = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # 0.5 on the true class
    c = ogm_coefficients({"ann": ann, "snn": snn}, labels, alpha=0.5)
    p = 1 / (1 + math.exp(-4.0))  # softmax of the true class for ann
    assert c["snn"] == 1.0
    assert c["ann"] == pytest.approx(1 - math.tanh(0.5 * (2 * p) / 1.0))
    c = ogm_coefficients({"ann": snn, "snn": ann}, labels, alpha=0.5)
    assert c["ann"] == 1.0 and c["snn"] < 1.0


def test_modulate_scales_only_branch_convolutions_and_adds_their_noise():
    torch.manual_seed(0)
    model = build_model(_cfg(), "hybrid", 4)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    modulate(model, {"ann": 0.25, "snn": 1.0}, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    touched = 0
    for n, p in model.named_parameters():
        if n.split(".")[0] in ("ann", "snn") and p.dim() >= 4:
            noise = torch.randn(p.shape, generator=g) * (float(before[n].std()) + 1e-8)
            scale = 0.25 if n.startswith("ann.") else 1.0
            torch.testing.assert_close(p.grad, before[n] * scale + noise)
            touched += 1
        else:
            assert torch.equal(p.grad, before[n]), n  # head, fusion, BatchNorm, biases untouched
    assert touched > 4


def test_gblend_weights_follow_the_overfitting_to_generalisation_ratio():
    # fused: gains 0.5 and overfits by 0.5 more; ann: gains 0.5, overfits by 1.0; snn: no gain
    h = [
        {
            "epoch": 1,
            "train_loss_fused": 2.0,
            "test_loss_fused": 2.0,
            "train_loss_ann": 2.0,
            "test_loss_ann": 2.0,
            "train_loss_snn": 2.0,
            "test_loss_snn": 2.0,
        },
        {
            "epoch": 5,
            "train_loss_fused": 1.0,
            "test_loss_fused": 1.5,
            "train_loss_ann": 0.5,
            "test_loss_ann": 1.5,
            "train_loss_snn": 1.5,
            "test_loss_snn": 2.1,
        },
    ]
    w = gblend_weights(h, floor=0.0)
    raw = [0.5 / 0.5**2, 0.5 / 1.0**2, 0.0]
    assert w == pytest.approx([r / sum(raw) for r in raw])
    # the floor keeps every head learning: 0 -> 0.1, then normalised again
    floored = [max(r / sum(raw), 0.1) for r in raw]
    assert gblend_weights(h) == pytest.approx([f / sum(floored) for f in floored])
    with pytest.raises(ValueError, match="branch_metrics"):
        gblend_weights(h[:1])


def test_branch_metrics_record_each_heads_test_loss(tmp_path):
    res = train(_cfg("train.epochs=1", "train.branch_metrics=true"), "hybrid", tmp_path)
    row = res.history[-1]
    # the fused head's test loss is what evaluation measured on the same clips
    assert row["test_loss_fused"] == pytest.approx(row["test_loss"], rel=1e-4)
    assert row["test_loss_ann"] > 0 and row["test_loss_snn"] > 0


def test_bad_branch_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="branch_loss"):
        _cfg("train.branch_loss=blend")
    with pytest.raises(ValueError, match="branch_weights"):
        train(
            _cfg("train.epochs=1", "train.branch_loss=aux", "train.branch_weights=[1, 1]"), "hybrid", tmp_path
        )
    assert not tmp_path.joinpath("checkpoint.pt").exists()


@pytest.mark.parametrize("method", ["aux", "ogm-ge"])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, method):
    cfg = _cfg("train.epochs=2", f"train.branch_loss={method}")
    full = train(cfg, "hybrid", tmp_path / "full")

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, "hybrid", tmp_path / "cut", on_epoch=stop)
    assert load_checkpoint(tmp_path / "cut/checkpoint.pt").epoch == 1
    train(cfg, "hybrid", tmp_path / "cut", resume=True)
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("full", "cut"))
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    if method == "aux":
        assert all(torch.equal(a.aux[k], b.aux[k]) for k in a.aux)
    else:
        assert 0 < full.history[-1]["ogm_coeff_ann"] <= 1 and 0 < full.history[-1]["ogm_coeff_snn"] <= 1


def test_branch_heads_average_over_groups():
    heads = BranchHeads({"ann": 3, "snn": 2}, 4)
    parts = {"ann": torch.randn(6, 3), "snn": torch.randn(6, 2)}
    out = heads(parts, 2, 3)
    torch.testing.assert_close(out["snn"], heads["snn"](parts["snn"]).reshape(2, 3, 4).mean(1))
    assert isinstance(BranchFeatures(parts, 2, 3).parts, dict)
