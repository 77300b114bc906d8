"""The ReSpike model and its two baselines, one code path (docs/method.md).

``hybrid``: ANN on key frames + SNN on residual frames + cross-attention fusion + head.
``ann``: key frames only (the SNN and fusion are not built). ``snn``: residual frames only.

Input: a normalised video ``[B, T, 3, H, W]`` (or ``[B, K, T, 3, H, W]`` for K clips per video,
whose logits are averaged). It is decomposed into T/s key frames and s-1 residual frames per key
frame; every key-frame group is an independent sample ``N = B * T/s`` for both branches, with
T' = s-1 SNN time steps. Head: SNN output averaged over T', concatenated with the ANN stage-4
features, global average pool, one linear layer; logits averaged over the groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from respike_nm.data.decompose import decompose
from respike_nm.data.transforms import INPUTS, normalize
from respike_nm.errors import UsageError
from respike_nm.layout import btchw_to_nchwt
from respike_nm.models.ann import create_ann_backbone
from respike_nm.models.deploy import StageSpec
from respike_nm.models.fusion import NORMS, CrossAttentionFusion
from respike_nm.models.names import KINDS
from respike_nm.models.snn import SNNSpec, create_snn, snn_class

StageRunner = Callable[[StageSpec, torch.Tensor], torch.Tensor]

FUSION_POINTS: dict[str, Callable[[tuple[int, ...]], tuple[int, ...]]] = {
    "multiscale": lambda stages: tuple(sorted(stages)),  # the configured stages (2, 3, 4 by default)
    "downsample": lambda stages: (1, 2, 3, 4),
    "late": lambda stages: (4,),
    "none": lambda stages: (),
}
"""Fusion variant -> the 1-based SNN stages it fuses after, given ``fusion_stages``."""
FUSIONS = tuple(FUSION_POINTS)
FUSION_NORMS = ("auto", *NORMS)
DOWNSAMPLE_POOL = {1: 4, 2: 2}  # published: stages 1 and 2 pooled to stage 3's resolution


@dataclass(frozen=True)
class ReSpikeSpec:
    """Everything that fixes the model's shape."""

    kind: str = "hybrid"
    num_classes: int = 12
    stride: int = 4  # s
    ann_arch: str = "resnet18"
    ann_width: float = 1.0
    ann_weights: str | None = None
    snn: SNNSpec = field(default_factory=SNNSpec)
    fusion: str = "multiscale"
    fusion_stages: tuple[int, ...] = (2, 3, 4)
    fusion_norm: str = "auto"  # auto: by what the SNN stage emits (see fusion_norm_for)
    fusion_norm_eps: float | None = None  # the norm's eps; None: fusion.DEFAULT_EPS
    dropout: float = 0.0
    ann_frozen_bn: bool = False  # the ANN's BatchNorms keep their (pretrained) statistics in training
    input: str = "rgb"  # the kind of frame (data.transforms.INPUTS): its channels and normalisation

    def __post_init__(self):
        if self.input not in INPUTS:
            raise UsageError(f"unknown input {self.input!r}; valid: {', '.join(INPUTS)}")
        snn_class(self.snn.arch)  # a registered architecture, or an error naming the registered ones
        if self.kind not in KINDS:
            raise UsageError(f"unknown model kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {self.fusion!r}; valid: {', '.join(FUSIONS)}")
        if self.fusion_norm not in FUSION_NORMS:
            raise UsageError(f"unknown fusion norm {self.fusion_norm!r}; valid: {', '.join(FUSION_NORMS)}")
        if any(s not in (1, 2, 3, 4) for s in self.fusion_stages):
            raise UsageError(f"fusion_stages must be among 1..4, not {self.fusion_stages}")

    @property
    def resolved_fusion_norm(self) -> str:
        """The fusion's input norm: ``fusion_norm``, or for ``auto`` the one suited to what the
        SNN's stages emit (:func:`fusion_norm_for`)."""
        if self.fusion_norm != "auto":
            return self.fusion_norm
        return fusion_norm_for(snn_class(self.snn.arch).emits)

    @property
    def fused_stages(self) -> tuple[int, ...]:
        """1-based SNN stages after which fusion is applied."""
        if self.kind != "hybrid":
            return ()
        return FUSION_POINTS[self.fusion](self.fusion_stages)


def fusion_norm_for(emits: str) -> str:
    """The fusion norm for what an SNN's stages emit (``SNNBranch.emits``).

    Real-valued ``currents`` (the ``resnet`` stages' ``BN(conv(...)) + shortcut``) get the published
    GroupNorm(32). Binary ``spikes`` (the ``plain`` stages end in a LIF): many groups are all zero and
    GroupNorm(eps 1e-6) multiplies the backward pass by ~1/sqrt(eps), so the fusion uses BatchNorm
    with eps 1e-2 there (measurements: :mod:`respike_nm.models.fusion`).
    """
    return {"currents": "groupnorm", "spikes": "batchnorm"}[emits]


class ReSpike(nn.Module):
    def __init__(self, spec: ReSpikeSpec):
        super().__init__()
        self.spec = spec
        use_ann, use_snn = spec.kind in ("hybrid", "ann"), spec.kind in ("hybrid", "snn")
        self.input_kind = INPUTS[spec.input]
        channels = self.input_kind.channels
        self.ann = (create_ann_backbone(spec.ann_arch, spec.ann_width, spec.ann_weights, channels)
                    if use_ann else None)
        # a stage after a fusion point receives the fused, real-valued features as graded input
        graded = tuple(i + 1 for i in spec.fused_stages if i < 4) if use_ann and use_snn else ()
        snn = replace(spec.snn, graded_stages=graded, in_channels=channels)
        self.snn = create_snn(snn) if use_snn else None
        self.fusion = nn.ModuleDict()
        if use_ann and use_snn:
            a, s = self.ann.feature_info.channels, self.snn.feature_info.channels
            for i in spec.fused_stages:
                pool = DOWNSAMPLE_POOL.get(i, 1) if spec.fusion == "downsample" else 1
                self.fusion[str(i)] = CrossAttentionFusion(s[i - 1], a[i - 1], pool=pool,
                                                           norm=spec.resolved_fusion_norm,
                                                           eps=spec.fusion_norm_eps)
        width = (self.ann.feature_info.channels[-1] if use_ann else 0) + (
            self.snn.feature_info.channels[-1] if use_snn else 0)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(width, spec.num_classes)

    def train(self, mode: bool = True) -> ReSpike:
        """As ``nn.Module.train``; with ``ann_frozen_bn`` the ANN's BatchNorms stay in eval mode, so
        a pretrained trunk normalises with its ImageNet statistics instead of those of a few clips
        (a batch of 8 clips is 32 strongly correlated key frames). Their scales and shifts still learn."""
        super().train(mode)
        if mode and self.spec.ann_frozen_bn and self.ann is not None:
            for m in self.ann.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, video: torch.Tensor, stage_runner: StageRunner | None = None,
                with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, BranchFeatures]:
        """``[B, T, 3, H, W]`` -> logits ``[B, classes]``; ``[B, K, T, 3, H, W]`` -> ``[B, K, classes]``.

        In parts: decompose, :meth:`ann_features` of the key frames, :meth:`forward_snn` of the
        residual frames (stage network by stage network, fusing between them), :meth:`classify`.
        ``stage_runner(stage, x)`` replaces :meth:`run_stage` for the SNN's stage networks (the
        hybrid runner passes one that runs them in Lava). ``with_features`` (5-D input): also the
        pooled features of each branch that the head sees (:class:`BranchFeatures`), for training
        methods that look at the branches one by one (:mod:`respike_nm.train.balance`).
        """
        if video.dim() == 6:
            b, k = video.shape[:2]
            return self.forward(video.flatten(0, 1), stage_runner).reshape(b, k, -1)
        feats = self.branch_features(video, stage_runner)
        logits = self.classify(feats)
        return (logits, feats) if with_features else logits

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """The model's entrance: a ``uint8`` clip ``[..., C, H, W]`` (frames as decoded) normalised as
        its input kind says (``spec.input``); a float clip is taken as normalised already."""
        if video.shape[-3] != self.input_kind.channels:
            raise UsageError(f"the model takes {self.spec.input} frames of {self.input_kind.channels} "
                             f"channel(s), not {video.shape[-3]} (clip {tuple(video.shape)})")
        return normalize(video, self.input_kind) if video.dtype == torch.uint8 else video

    def branch_features(self, video: torch.Tensor, stage_runner: StageRunner | None = None) -> BranchFeatures:
        """Decompose ``[B, T, C, H, W]`` (:meth:`prepare`), run both branches, pool what the head sees."""
        key, residual = decompose(self.prepare(video), self.spec.stride)
        b, g = key.shape[:2]
        ann_feats = self.ann_features(key)
        snn_out = None
        if self.snn is not None:
            snn_out = self.forward_snn(self.snn_input(residual), ann_feats, stage_runner)
        return self.pooled(snn_out, ann_feats, b, g)

    def stage_specs(self) -> tuple[StageSpec, ...]:
        """The SNN cut at every fusion point into stage networks (:class:`StageSpec`): the stem
        belongs to the first; ``late`` fusion and ``none`` give one network."""
        if self.snn is None:
            return ()
        groups = [(0, ("snn.stem", self.snn.stem), [("snn.stem", self.snn.stem)])]
        for i, seq in enumerate(self.snn.stages, start=1):
            named = [(f"snn.{name}", m) for name, m in self.snn.stage_layers(i - 1)]
            groups.append((i, (f"snn.stages.{i - 1}", seq), named))
        last = len(self.snn.stages)
        cuts = set(self.spec.fused_stages)
        stages, current = [], []
        for group in groups:
            current.append(group)
            number = group[0]
            if number in cuts or number == last:
                layers = [pair for _, _, pairs in current for pair in pairs]
                stages.append(StageSpec(len(stages), tuple(n for n, _ in layers), tuple(m for _, m in layers),
                                        tuple(k for k, _, _ in current), number if number in cuts else None,
                                        tuple(block for _, block, _ in current)))
                current = []
        return tuple(stages)

    def run_stage(self, stage: StageSpec, x: torch.Tensor) -> torch.Tensor:
        """One stage network in PyTorch on ``[N, C, H, W, T]``, through the SNN's own modules."""
        for name, block in stage.blocks:
            x = self.snn.run_stem(x) if name == "snn.stem" else block(x)
        return x

    def forward_snn(self, x: torch.Tensor, ann_feats: list[torch.Tensor] | None,
                    stage_runner: StageRunner | None = None) -> torch.Tensor:
        """The SNN on its input ``[N, 3, H, W, T']``, each stage network followed by its fusion."""
        run = stage_runner or self.run_stage
        for stage in self.stage_specs():
            x = run(stage, x)
            if stage.fused_after is not None:
                x = self.fuse(stage.fused_after, x, ann_feats)
        return x

    def ann_features(self, key: torch.Tensor) -> list[torch.Tensor] | None:
        """ANN stage features of key frames ``[B, G, 3, H, W]`` (flattened to ``B*G``)."""
        return self.ann(key.flatten(0, 1)) if self.ann is not None else None

    @staticmethod
    def snn_input(residual: torch.Tensor) -> torch.Tensor:
        """Residual frames ``[B, G, s-1, 3, H, W]`` -> SNN input ``[B*G, 3, H, W, s-1]``."""
        return btchw_to_nchwt(residual.flatten(0, 1))

    def fuse(self, stage: int, x: torch.Tensor, ann_feats: list[torch.Tensor] | None) -> torch.Tensor:
        """Apply the fusion point after SNN ``stage`` (1-based), if there is one."""
        if str(stage) in self.fusion:
            return self.fusion[str(stage)](x, ann_feats[stage - 1])
        return x

    @staticmethod
    def pooled(snn_out: torch.Tensor | None, ann_feats: list[torch.Tensor] | None, b: int, g: int
               ) -> BranchFeatures:
        """What the head sees of each branch: the SNN output averaged over T' and the ANN's stage-4
        features, each globally average-pooled to ``[b * g, C]``."""
        parts = {}
        if snn_out is not None:
            parts["snn"] = snn_out.mean(dim=-1).mean(dim=(2, 3))
        if ann_feats is not None:
            parts["ann"] = ann_feats[-1].mean(dim=(2, 3))
        return BranchFeatures(parts, b, g)

    def classify(self, feats: BranchFeatures) -> torch.Tensor:
        """Head: the branches' pooled features concatenated (SNN first), one linear layer, logits
        averaged over the ``g`` key-frame groups -> ``[b, classes]``."""
        logits = self.head(self.dropout(torch.cat(list(feats.parts.values()), dim=1)))
        return logits.reshape(feats.b, feats.g, -1).mean(dim=1)

    def head_logits(self, snn_out: torch.Tensor | None, ann_feats: list[torch.Tensor] | None,
                    b: int, g: int) -> torch.Tensor:
        """:meth:`classify` of :meth:`pooled` features."""
        return self.classify(self.pooled(snn_out, ann_feats, b, g))

    def branch_logits(self, feats: BranchFeatures) -> dict[str, torch.Tensor]:
        """Each branch's share of the head's logits (without dropout): its columns of the head's
        weight times its features, plus the bias split evenly, averaged over the groups ->
        ``{branch: [b, classes]}``; they sum to the head's logits (OGM-GE's decomposition)."""
        out, start = {}, 0
        bias = self.head.bias / len(feats.parts)
        for name, x in feats.parts.items():
            w = self.head.weight[:, start:start + x.shape[1]]
            start += x.shape[1]
            out[name] = (x @ w.t() + bias).reshape(feats.b, feats.g, -1).mean(dim=1)
        return out


@dataclass
class BranchFeatures:
    """The pooled features of each branch that the head sees: ``parts`` maps ``snn`` and ``ann``
    (those the model has, SNN first, the order of the head's input) to ``[b * g, C]``, for ``b``
    clips of ``g`` key-frame groups each."""

    parts: dict[str, torch.Tensor]
    b: int
    g: int
