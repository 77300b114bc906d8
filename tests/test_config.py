"""Configs: presets, YAML files and overrides, with errors that list what is valid."""

from __future__ import annotations

import pytest

from respike_nm.config import PRESETS, ConfigError, apply_overrides, from_dict, load_config
from respike_nm.errors import UsageError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_a_dict(name):
    cfg = load_config(name)
    assert from_dict(cfg.to_dict()) == cfg


def test_paper_presets_follow_the_paper():
    cfg = load_config("paper-r50")
    assert (cfg.data.size, cfg.train.epochs, cfg.train.lr, cfg.train.optimizer) == (224, 100, 1e-4, "sgd")
    assert cfg.model.ann_arch == "resnet50" and cfg.train.momentum == 0.9


def test_overrides_are_typed():
    cfg = apply_overrides(load_config("tiny"), ["seed=7", "train.epochs=3", "train.lr=1e-3",
                                                 "model.fusion_stages=[3, 4]", "model.ann_weights=null"])
    assert (cfg.seed, cfg.train.epochs, cfg.train.lr, cfg.model.fusion_stages) == (7, 3, 1e-3, [3, 4])
    assert cfg.model.ann_weights is None


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "valid keys here: epochs"),
    ("train.epochs=three", "expects an integer"),
    ("train.amp=1", "true or false"),
    ("model.fusion=early", "multiscale, downsample, late, none"),
    ("model=3", "is a section"),
    ("epochs", "key=value"),
])
def test_bad_overrides_say_what_is_valid(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_config("tiny"), [override])


def test_yaml_file_with_base(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("base: tiny\nseed: 3\ntrain:\n  epochs: 2\n")
    cfg = load_config(str(p))
    assert (cfg.name, cfg.seed, cfg.train.epochs, cfg.data.size) == ("tiny", 3, 2, 64)


@pytest.mark.parametrize("text, message", [
    ("train: [1, 2", "not valid YAML"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("base: tiny\ntrian:\n  epochs: 2\n", "unknown key 'trian'"),
    ("base: huge\n", "not a preset"),
])
def test_bad_yaml_names_the_file(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(str(p))
    assert str(p) in str(err.value)


@pytest.mark.parametrize("text", ["seed: 3\ntrain:\n  epochs: 2\n", "", "# nothing yet\n"])
def test_yaml_file_without_a_preset_is_refused(tmp_path, text):
    """Without ``base:`` the file used to override the bare dataclass defaults: a 23.5 M-parameter,
    100-epoch model nobody asked for."""
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(p))
    assert str(p) in str(err.value) and "base: <preset>" in str(err.value)
    assert all(name in str(err.value) for name in PRESETS)


@pytest.mark.parametrize("text, where, problem", [
    ("base: tiny\ntrain: [1, 2\n", "line 3, column 1", "expected ',' or ']'"),
    ("base: tiny\nseed: 3\n  epochs: 2\n", "line 3, column 9", "mapping values are not allowed here"),
    ("base: tiny\nseed: *x\n", "line 2, column 7", "undefined alias 'x'"),
])
def test_malformed_yaml_is_one_line_with_line_and_column(tmp_path, text, where, problem):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(p))
    message = str(err.value)
    assert message.startswith(f"{p}: not valid YAML: {where}: ") and problem in message
    assert "\n" not in message


def test_config_choices_are_the_registries():
    """The config's valid values are the registries' names (the config module stays light, so it
    keeps its own copy; this keeps the two from drifting apart)."""
    from typing import get_args

    from respike_nm.config import CHOICES
    from respike_nm.data.factory import DATASETS
    from respike_nm.data.records import Sampling
    from respike_nm.models.ann import ANN_ARCHS
    from respike_nm.models.respike import FUSION_NORMS, FUSIONS

    assert CHOICES["data.dataset"] == DATASETS
    assert CHOICES["model.fusion"] == FUSIONS and CHOICES["model.fusion_norm"] == FUSION_NORMS
    assert CHOICES["model.ann_arch"] == ANN_ARCHS
    assert CHOICES["data.sampling"] == get_args(Sampling)


def test_names_without_a_copy_in_the_config_are_checked_against_their_registry(tmp_path):
    """SNN architectures and input kinds have no list in the config module: a run refuses an unknown
    one, naming the registry's entries, before it reads any data (the data folder here does not
    exist), so a registered one needs no other edit."""
    from respike_nm.data.transforms import INPUTS
    from respike_nm.models.snn import SNN_ARCHS
    from respike_nm.train.loop import train

    for option, registry in (("model.snn_arch=spiky", SNN_ARCHS), ("model.input=depth", INPUTS)):
        cfg = apply_overrides(load_config("tiny"), [option, "data.dataset=folder",
                                                    f"data.data_root={tmp_path / 'none'}"])
        with pytest.raises(UsageError, match=f"valid: {', '.join(registry)}$"):
            train(cfg, "hybrid", tmp_path / "run")
        assert not (tmp_path / "run").exists()
