"""The real-small preset starts from the packaged ImageNet weights; the ANN trunk's own rate."""

from __future__ import annotations

import torch

from respike_nm.config import apply_overrides, load_config
from respike_nm.models.effnet_lite import packaged_weights
from respike_nm.train.builder import build_model
from respike_nm.train.loop import _lr_lambda, _optimizer


def test_real_small_builds_the_hybrid_from_the_packaged_imagenet_file():
    cfg = load_config("real-small")
    model = build_model(cfg, "hybrid", num_classes=4)
    packaged = torch.load(packaged_weights(), weights_only=True)
    own = model.ann.state_dict()
    # every trunk tensor is the file's (the classifier is not part of the trunk)
    trunk = {k: v for k, v in packaged.items() if not k.startswith("_fc.")}
    assert set(trunk) == {k.removeprefix("net.") for k in own}
    for k, v in trunk.items():
        assert torch.equal(own[f"net.{k}"], v), k
    # the SNN is the deployable plain one, fused after stages 2, 3 and 4 with the trunk's taps
    assert cfg.model.snn_arch == "plain" and sorted(model.fusion) == ["2", "3", "4"]
    assert model.fusion["4"].block.attn2.to_k.in_features == 1280


def test_ann_learning_rate_scale_makes_its_own_group_and_keeps_the_ratio():
    cfg = apply_overrides(load_config("real-small"), ["model.ann_weights=null", "train.ann_lr_scale=0.1",
                                                      "train.fusion_lr_scale=2.0"])
    model = build_model(cfg, "hybrid", num_classes=3)
    opt = _optimizer(cfg, model)
    by_id = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(by_id) == len(names)  # every parameter in exactly one group
    for n, p in names.items():
        want = {"ann": 0.1, "fusion": 2.0}.get(n.split(".", 1)[0], 1.0) * cfg.train.lr
        assert by_id[id(p)] == want, n
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps_per_epoch=3))
    for _ in range(7):
        opt.step()
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[1] / lrs[0] == 2.0 and abs(lrs[2] / lrs[0] - 0.1) < 1e-12


def test_without_an_ann_rate_the_groups_are_those_of_earlier_runs():
    """ann_lr_scale 1.0 keeps the ANN in the first group, so optimizer states saved before the
    option existed (two groups: rest, fusion) still load on resume."""
    cfg = apply_overrides(load_config("tiny"), ["train.fusion_lr_scale=0.5"])
    model = build_model(cfg, "hybrid", num_classes=3)
    opt = _optimizer(cfg, model)
    assert len(opt.param_groups) == 2
    fusion = {id(p) for n, p in model.named_parameters() if n.startswith("fusion.")}
    assert {id(p) for p in opt.param_groups[1]["params"]} == fusion


def test_frozen_ann_batchnorm_keeps_its_statistics_while_the_rest_trains():
    torch.manual_seed(0)
    video = torch.randn(2, 8, 3, 32, 32)
    for frozen in (True, False):
        cfg = apply_overrides(load_config("tiny"), [f"model.ann_frozen_bn={str(frozen).lower()}",
                                                    "data.frames=8"])
        model = build_model(cfg, "hybrid", num_classes=3).train()
        ann_bn = [m for m in model.ann.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        snn_bn = [m for m in model.snn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert ann_bn and snn_bn
        before = [m.running_mean.clone() for m in ann_bn + snn_bn]
        model(video).sum().backward()
        after = [m.running_mean for m in ann_bn + snn_bn]
        moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
        assert all(moved[len(ann_bn):])  # the SNN's statistics follow the batch either way
        assert not any(moved[:len(ann_bn)]) if frozen else all(moved[:len(ann_bn)])
        assert all(m.weight.grad is not None for m in ann_bn)  # scales and shifts still learn
        assert model.training and all(m.training != frozen for m in ann_bn)
