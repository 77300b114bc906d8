"""From a :class:`~respike_nm.config.Config` to datasets and a model."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from respike_nm.config import Config
from respike_nm.data.binding import SyntheticBindingConfig
from respike_nm.data.datasets import EveryWindowDataset, with_clip_protocol
from respike_nm.data.factory import DataSource, make_dataset
from respike_nm.data.folds import FoldSpec, check_classes
from respike_nm.data.records import ClipSpec
from respike_nm.data.synthetic import SyntheticMotionConfig
from respike_nm.errors import UsageError
from respike_nm.models import create_model
from respike_nm.models.fixed_point import spec_for
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNNSpec
from respike_nm.progress import Progress


def _copy(config, names) -> dict:
    """The config fields ``names``, lists as tuples (the specs are frozen records)."""
    return {n: tuple(v) if isinstance(v := getattr(config, n), list) else v for n in names}


def clip_spec(cfg: Config) -> ClipSpec:
    """Every :class:`ClipSpec` field is the ``data`` field of the same name (``short_side``, set by
    ``predict`` and the data tools, is not a config option: its default)."""
    return ClipSpec(**_copy(cfg.data, [f.name for f in fields(ClipSpec) if f.name != "short_side"]))


def data_source(cfg: Config) -> DataSource:
    d = cfg.data
    sizes = dict(appearances=d.appearances, motions=d.motions, frames=d.frames, height=d.size, width=d.size,
                 train_per_class=d.train_per_class, test_per_class=d.test_per_class, seed=cfg.seed,
                 segment=d.stride)
    synthetic = None
    if d.dataset == "synthetic-motion":
        synthetic = SyntheticMotionConfig(**sizes)
    elif d.dataset == "synthetic-binding":
        synthetic = SyntheticBindingConfig(**sizes, decoy=d.binding_decoy)
    root = Path(d.data_root) if d.data_root else None
    folds = (FoldSpec(d.folds, d.fold, d.group_pattern, d.group_divisor, cfg.seed) if d.folds else None)
    return DataSource(d.dataset, root, d.split, cfg.seed, synthetic, folds)


def build_datasets(cfg: Config, progress: Progress | None = None):
    """``(train, test, classes, skipped)``; with ``data.train_clips``/``data.eval_protocol`` ``all``
    the set is an :class:`EveryWindowDataset` (one item per window; ``progress`` wraps the reading of
    the videos' frame counts that needs)."""
    source, spec = data_source(cfg), clip_spec(cfg)
    train, classes, skipped = make_dataset(source, "train", spec, train=True, seed=cfg.seed)
    check_classes(classes, source.root)
    test, _, _ = make_dataset(source, "test", spec, train=False, seed=cfg.seed)
    return with_clip_protocol(train, progress), with_clip_protocol(test, progress), classes, skipped


def test_clips(cfg: Config, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` test clips of ``cfg``'s dataset (one per video: its first evaluation window),
    as decoded (the model normalises them): ``(video uint8 [n', T, C, S, S], labels [n'])``,
    ``n' = min(n, test videos)``; clips that fail to decode are left out."""
    if n < 1:
        raise UsageError(f"the number of clips must be at least 1, got {n}")
    _, test, _, _ = build_datasets(cfg)
    items = range(len(test))
    if isinstance(test, EveryWindowDataset):  # items are windows: take each video's first
        items = np.flatnonzero(test.start == 0).tolist()
    samples = [s for s in (test[i] for i in items[:n]) if s is not None]
    if not samples:
        raise UsageError(f"{cfg.data.dataset}: no test clip could be read")
    return torch.stack([s.video[0] for s in samples]), torch.tensor([s.label for s in samples])


def model_options(cfg: Config, quantize: bool | None = None) -> dict:
    """``create_model`` options (fields of :class:`ReSpikeSpec`) that ``cfg`` sets: each ``model.<x>``
    is ``ReSpikeSpec.<x>``, each ``model.snn_<x>`` is ``SNNSpec.<x>`` (a config field without its
    spec field is an error when the model is built, never silently dropped)."""
    names = [f.name for f in fields(cfg.model)]
    options = _copy(cfg.model, [n for n in names if not n.startswith("snn_")])
    snn = _copy(cfg.model, [n for n in names if n.startswith("snn_")])
    q = cfg.quant.enabled if quantize is None else quantize
    quant = spec_for(cfg.quant.target) if q else None
    return dict(stride=cfg.data.stride, **options,
                snn=SNNSpec(**{n.removeprefix("snn_"): v for n, v in snn.items()}, quant=quant))


def check_model(cfg: Config, kind: str) -> None:
    """Refuse, naming the option and the valid values, a model ``cfg`` cannot build (an SNN
    architecture or input kind no registry holds, ...), before any data is read."""
    ReSpikeSpec(kind=kind, num_classes=1, **model_options(cfg))


def build_model(cfg: Config, kind: str, num_classes: int, quantize: bool | None = None) -> ReSpike:
    """The registered model ``kind`` (:func:`respike_nm.models.create_model`) as ``cfg`` sets it."""
    return create_model(kind, num_classes, **model_options(cfg, quantize))
