"""Plan ``e``: 3D-CNN video classifiers on the run's own clip geometry, the baselines of ReSpike's
energy claim. torchvision's architectures (R3D-18, MC3-18, R(2+1)D-18, S3D), built without weights
(counting dense MACs needs shapes only, :func:`respike_nm.energy.ops.shape_counts`), each a plan
``e:<name>`` priced on every GPU/CMOS host. What torchvision documents for each (its weights'
``meta``: ``_ops`` in G at the reference input, Kinetics-400 top-1) is read from the installed
package, never downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from respike_nm.energy.counters import ClipCounts
from respike_nm.energy.ops import OpCount, shape_counts
from respike_nm.energy.work import PlanCounts, PlanNotApplicable, Work, register_plan

KINETICS_CLASSES = 400


@dataclass(frozen=True)
class Baseline:
    """One torchvision video architecture and what its documentation says of it."""

    key: str  # torchvision.models.video builder name
    title: str
    weights: str  # the weights enum in torchvision.models.video (for its documented meta)
    reference: tuple[int, int, int]  # (T, H, W) at which torchvision documents ``_ops``

    def meta(self) -> dict:
        from torchvision.models import video

        return getattr(video, self.weights).DEFAULT.meta

    @property
    def documented_gmacs(self) -> float:
        """torchvision's ``_ops`` (it calls them GFLOPS; they are multiply-accumulates, as for its
        image classifiers, e.g. ResNet-18's 1.81) at :attr:`reference`."""
        return float(self.meta()["_ops"])

    @property
    def kinetics_top1(self) -> float:
        """Kinetics-400 video top-1 (%) of torchvision's weights, as documented."""
        return float(self.meta()["_metrics"]["Kinetics-400"]["acc@1"])

    def network(self, classes: int = KINETICS_CLASSES):
        from torchvision.models import video

        return getattr(video, self.key)(weights=None, num_classes=classes)


BASELINES = {b.key: b for b in (
    Baseline("r3d_18", "R3D-18", "R3D_18_Weights", (16, 112, 112)),
    Baseline("mc3_18", "MC3-18", "MC3_18_Weights", (16, 112, 112)),
    Baseline("r2plus1d_18", "R(2+1)D-18", "R2Plus1D_18_Weights", (16, 112, 112)),
    Baseline("s3d", "S3D", "S3D_Weights", (16, 224, 224)),
)}


@functools.lru_cache(maxsize=32)
def baseline_counts(key: str, frames: int, h: int, w: int, classes: int = KINETICS_CLASSES,
                    channels: int = 3) -> tuple[OpCount, ...]:
    """Dense MACs per layer of baseline ``key`` on one clip of ``frames`` frames of ``h x w``."""
    b = BASELINES[key]
    net = b.network(classes)
    if channels != 3:
        raise PlanNotApplicable(f"{b.title} takes RGB clips; this run's input has {channels} channels")
    try:
        return tuple(shape_counts(net, (1, channels, frames, h, w)))
    except RuntimeError as e:  # a pooling window larger than the clip's feature map
        first = str(e).strip().splitlines()[0]
        raise PlanNotApplicable(f"{b.title} cannot take clips of {frames}x{h}x{w} ({first})") from None


def baseline_plan(key: str, counts: ClipCounts, graded_bits: int) -> PlanCounts:
    b = BASELINES[key]
    h, w = counts.frame_shape
    ops = baseline_counts(key, counts.frames, h, w, counts.num_classes or KINETICS_CLASSES, counts.channels)
    p = PlanCounts(f"e:{key}", f"3D CNN {b.title}", (), "no spikes: a 3D CNN on the whole clip")
    p.layers = [Work(f"{key}.{o.name}", "gpu", "mac", o.dense_macs) for o in ops]
    p.notes.append(f"{b.title} (torchvision, no weights) on the run's {counts.frames}x{h}x{w} clips; "
                   f"torchvision documents {b.documented_gmacs} GMACs at {'x'.join(map(str, b.reference))} "
                   f"and {b.kinetics_top1} % Kinetics-400 top-1")
    return p


for _key, _b in BASELINES.items():
    register_plan(f"e:{_key}", f"3D CNN {_b.title}")(functools.partial(baseline_plan, _key))
