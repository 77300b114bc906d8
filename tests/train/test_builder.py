"""Config to specs: every config field reaches the spec field of its name, none is dropped."""

from __future__ import annotations

from dataclasses import fields, make_dataclass

import pytest

from respike_nm.config import apply_overrides, load_config
from respike_nm.data.records import ClipSpec
from respike_nm.train.builder import build_model, clip_spec, model_options

CHANGED = ["model.ann_width=0.25", "model.snn_width=0.25", "model.snn_backend=norse",
           "model.fusion=downsample", "model.fusion_stages=[1, 3]", "model.fusion_norm=identity",
           "model.fusion_norm_eps=0.5",
           "model.dropout=0.25", "model.ann_frozen_bn=true", "data.stride=2", "data.frames=8",
           "data.sampling=segments", "data.size=40", "data.eval_clips=3", "data.eval_resize=crop_size",
           "data.train_crop_scale=[0.5, 0.75]"]


def test_every_model_and_clip_field_reaches_its_spec():
    cfg = apply_overrides(load_config("tiny"), CHANGED)
    spec = build_model(cfg, "hybrid", 3).spec
    for f in fields(cfg.model):
        value = getattr(cfg.model, f.name)
        value = tuple(value) if isinstance(value, list) else value
        if f.name.startswith("snn_"):
            assert getattr(spec.snn, f.name.removeprefix("snn_")) == value, f.name
        else:
            assert getattr(spec, f.name) == value, f.name
    assert spec.stride == 2 and spec.fusion_stages == (1, 3) and spec.snn.backend == "norse"
    clips = clip_spec(cfg)
    assert (clips.frames, clips.stride, clips.sampling, clips.size, clips.eval_clips, clips.eval_resize,
            clips.train_crop_scale) == (8, 2, "segments", 40, 3, "crop_size", (0.5, 0.75))
    assert {f.name for f in fields(ClipSpec)} - {f.name for f in fields(cfg.data)} == {"short_side"}


def test_a_model_config_field_without_a_spec_field_is_an_error_not_dropped():
    cfg = load_config("tiny")
    extra = make_dataclass("ModelConfig", [("colour", str, "red")], bases=(type(cfg.model),))
    cfg.model = extra(**{f.name: getattr(cfg.model, f.name) for f in fields(cfg.model)})
    assert model_options(cfg)["colour"] == "red"
    with pytest.raises(ValueError, match="unknown model option.*colour"):
        build_model(cfg, "hybrid", 3)
