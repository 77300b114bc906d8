"""synthetic-motion: the embedded default dataset, video clips generated in code.

Each class is a pair (appearance ``a``, motion ``m``), label ``a * M + m``. A frame is a static
*scenery* (everything outside a central *stage*) that carries the appearance, and the stage (the
middle half of the frame in each dimension), one constant neutral gray for every class and sample,
in which a bright rectangle moves with a constant integer velocity, wrapping around toroidally.
Its position is drawn afresh, uniform over the stage, at the start of every ``segment`` frames
(set ``segment`` to the model's key-frame stride s). So appearance lives only in what does not
move and motion only in what changes:

- key frames (frames ``k * segment``) show the object at independent uniform positions, so for
  the same random draws they are bit-identical for every motion: a key-frame-only classifier,
  even one that sees all key frames of a clip, cannot beat ``1 / M``;
- the scenery is static, so residual frames ``F[t] - F[key]`` are zero outside the stage and
  identical for every appearance given the same draws: a residual-only classifier cannot beat
  ``1 / A``.

Randomness is derived from ``(seed, index)`` alone, never from the class: appearance jitter from
``default_rng([seed, index, 0])``, motion draws from ``default_rng([seed, index, 1])``. See
``docs/synthetic_motion.md``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from respike_nm.errors import UsageError

Partition = Literal["train", "test"]

STAGE_GRAY = 128
"""Gray level (uint8, all three channels) of the stage, the same for every class and sample."""


@dataclass(frozen=True)
class Appearance:
    """A scenery style: base colour (RGB in [0, 1]), stripe orientation (radians) and period
    (pixels at 64 px frame size; scaled with the frame)."""

    name: str
    rgb: tuple[float, float, float]
    angle: float
    period: float


APPEARANCES: tuple[Appearance, ...] = (
    Appearance("red", (0.85, 0.15, 0.15), 0 * np.pi / 8, 8.0),
    Appearance("green", (0.15, 0.75, 0.2), 4 * np.pi / 8, 10.0),
    Appearance("blue", (0.15, 0.3, 0.9), 2 * np.pi / 8, 12.0),
    Appearance("yellow", (0.9, 0.8, 0.1), 6 * np.pi / 8, 8.0),
    Appearance("magenta", (0.85, 0.2, 0.8), 1 * np.pi / 8, 10.0),
    Appearance("cyan", (0.1, 0.8, 0.85), 5 * np.pi / 8, 12.0),
    Appearance("orange", (0.95, 0.5, 0.05), 3 * np.pi / 8, 8.0),
    Appearance("purple", (0.5, 0.2, 0.85), 7 * np.pi / 8, 10.0),
)

MOTIONS: tuple[tuple[str, int, int], ...] = (
    ("right", 0, 1),
    ("left", 0, -1),
    ("down", 1, 0),
    ("up", -1, 0),
    ("down-right", 1, 1),
    ("up-left", -1, -1),
    ("down-left", 1, -1),
    ("up-right", -1, 1),
)
"""Motion directions ``(name, dy, dx)`` (image axes: y down, x right), in class order."""

_STRIPE_CONTRAST = 0.35
_NOISE_STD = 0.03          # static pixel noise, in [0, 1] intensity units
_BRIGHTNESS = (0.85, 1.1)  # per-sample scenery gain
_TINT_JITTER = 0.03        # per-sample, per-channel colour offset
_OBJECT_LEVELS = (200, 255)  # object gray level, inclusive
_MIN_STAGE = 8             # stage side (px) below which the object and its motion do not fit


@dataclass(frozen=True)
class SyntheticMotionConfig:
    """Sizes of the synthetic-motion set. Frames are ``uint8 [frames, height, width, 3]``.

    ``segment``: frames between re-draws of the object's position (>= 2). Set it to the model's
    stride s: then every key frame is independent of the motion and every residual group is pure
    motion. ``segment >= frames`` gives one continuous trajectory, whose key frames then reveal
    the motion's axis and speed jointly (though each one alone does not). A residual
    ``F[t] - F[key]`` is never zero while ``(segment - 1) * max_speed`` is below the stage side.

    Derived per resolution (``side = min(height, width) // 2``, the stage's shorter side): object
    sides in ``object_sizes`` px, speeds in ``1..max_speed`` px/frame (at 64x64: 4-8 px, 1-3 px).
    """

    appearances: int = 3
    motions: int = 4
    frames: int = 16
    height: int = 64
    width: int = 64
    train_per_class: int = 40
    test_per_class: int = 10
    seed: int = 0
    segment: int = 4

    def __post_init__(self):
        _check_range("appearances", self.appearances, 1, len(APPEARANCES))
        _check_range("motions", self.motions, 1, len(MOTIONS))
        _check_range("frames", self.frames, 2, None)
        _check_range("train_per_class", self.train_per_class, 1, None)
        _check_range("test_per_class", self.test_per_class, 0, None)
        _check_range("seed", self.seed, 0, None)
        _check_range("segment", self.segment, 2, None)
        for name in ("height", "width"):
            size = getattr(self, name)
            if not _is_int(size) or size // 2 < _MIN_STAGE:
                raise UsageError(
                    f"{name} must be an integer >= {2 * _MIN_STAGE}, got {size!r}: the stage is "
                    f"the middle half of the frame and needs >= {_MIN_STAGE} px for the object "
                    "and its motion")

    @property
    def num_classes(self) -> int:
        return self.appearances * self.motions

    @property
    def class_names(self) -> tuple[str, ...]:
        """``"appearance/motion"`` for each label ``a * motions + m``, e.g. ``"red/right"``."""
        return tuple(f"{APPEARANCES[a].name}/{MOTIONS[m][0]}"
                     for a in range(self.appearances) for m in range(self.motions))

    @property
    def stage_box(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the stage in pixels: the middle half of the frame."""
        sh, sw = self.height // 2, self.width // 2
        return (self.height - sh) // 2, (self.width - sw) // 2, sh, sw

    @property
    def object_sizes(self) -> tuple[int, int]:
        """Inclusive range of the object's height and width (px), each drawn per sample."""
        side = min(self.height, self.width) // 2
        lo = max(2, round(side / 8))
        return lo, max(lo, round(side / 4))

    @property
    def max_speed(self) -> int:
        """Largest speed (px/frame along each moving axis); speeds are drawn in 1..max_speed."""
        return max(1, round(3 * min(self.height, self.width) / 64))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_range(name: str, value: object, lo: int, hi: int | None) -> None:
    ok = _is_int(value) and value >= lo and (hi is None or value <= hi)
    if not ok:
        bound = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise UsageError(f"{name} must be an integer {bound}, got {value!r}")


@dataclass(frozen=True)
class MotionDraw:
    """One sample's motion: ``starts[k] = (y, x)``, the object's top-left corner (stage pixels)
    at frame ``k * segment``; velocity ``(vy, vx)`` in px/frame; object ``size_h x size_w`` px;
    object gray ``level`` (uint8)."""

    starts: tuple[tuple[int, int], ...]
    segment: int
    vy: int
    vx: int
    size_h: int
    size_w: int
    level: int

    @property
    def speed(self) -> int:
        """Pixels per frame along each moving axis (>= 1)."""
        return max(abs(self.vy), abs(self.vx))

    def positions(self, frames: int) -> np.ndarray:
        """``int [frames, 2]``: top-left corner ``(y, x)`` at each frame, before wrapping
        (take it modulo the stage size)."""
        t = np.arange(frames)
        starts = np.asarray(self.starts)[t // self.segment]
        return starts + (t % self.segment)[:, None] * np.array([self.vy, self.vx])


def draw_motion(cfg: SyntheticMotionConfig, motion: int, index: int, seed: int) -> MotionDraw:
    """The motion draws of sample ``(seed, index)`` for direction ``motion``.

    The random numbers come from ``default_rng([seed, index, 1])`` and do not depend on
    ``motion`` (only the velocity's direction does) nor on the appearance.
    """
    _check_range("motion", motion, 0, cfg.motions - 1)
    rng = np.random.default_rng([seed, index, 1])
    _, _, sh, sw = cfg.stage_box
    lo, hi = cfg.object_sizes
    speed = int(rng.integers(1, cfg.max_speed + 1))
    size_h, size_w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    level = int(rng.integers(_OBJECT_LEVELS[0], _OBJECT_LEVELS[1] + 1))
    segments = -(-cfg.frames // cfg.segment)
    starts = np.stack([rng.integers(sh, size=segments), rng.integers(sw, size=segments)], axis=1)
    _, dy, dx = MOTIONS[motion]
    return MotionDraw(tuple(map(tuple, starts.tolist())), cfg.segment, speed * dy, speed * dx,
                      size_h, size_w, level)


def render_scenery(cfg: SyntheticMotionConfig, appearance: int, index: int,
                   seed: int) -> np.ndarray:
    """The static frame of sample ``(seed, index)``: ``uint8 [H, W, 3]``, the appearance's
    striped scenery with the stage filled with :data:`STAGE_GRAY`.

    Jitter (stripe phase, brightness, tint, static pixel noise) comes from
    ``default_rng([seed, index, 0])`` and does not depend on ``appearance`` or the motion.
    """
    _check_range("appearance", appearance, 0, cfg.appearances - 1)
    rng = np.random.default_rng([seed, index, 0])
    phase = rng.uniform(0.0, 2 * np.pi)
    gain = rng.uniform(*_BRIGHTNESS)
    tint = rng.uniform(-_TINT_JITTER, _TINT_JITTER, size=3)
    noise = rng.normal(0.0, _NOISE_STD, size=(cfg.height, cfg.width, 1))
    app = APPEARANCES[appearance]
    y = np.arange(cfg.height, dtype=np.float64)[:, None]
    x = np.arange(cfg.width, dtype=np.float64)[None, :]
    period = app.period * min(cfg.height, cfg.width) / 64
    along = x * np.cos(app.angle) + y * np.sin(app.angle)
    stripes = 1.0 - _STRIPE_CONTRAST * (0.5 - 0.5 * np.cos(2 * np.pi * along / period + phase))
    colour = (np.asarray(app.rgb) + tint) * gain
    img = np.clip(stripes[..., None] * colour + noise, 0.0, 1.0)
    out = np.rint(img * 255).astype(np.uint8)
    out[stage_mask(cfg)] = STAGE_GRAY
    return out


def render_stage(cfg: SyntheticMotionConfig, draw: MotionDraw) -> np.ndarray:
    """The stage over time: ``uint8 [T, sh, sw]`` gray levels, :data:`STAGE_GRAY` with the object
    at :meth:`MotionDraw.positions` (top-left corner) modulo the stage, wrapped toroidally."""
    _, _, sh, sw = cfg.stage_box
    pos = draw.positions(cfg.frames)
    rows = (np.arange(sh)[None, :] - pos[:, :1]) % sh < draw.size_h  # [T, sh]
    cols = (np.arange(sw)[None, :] - pos[:, 1:]) % sw < draw.size_w  # [T, sw]
    inside = rows[:, :, None] & cols[:, None, :]
    return np.where(inside, np.uint8(draw.level), np.uint8(STAGE_GRAY))


def render_clip(cfg: SyntheticMotionConfig, appearance: int, motion: int, index: int,
                seed: int) -> np.ndarray:
    """One clip, ``uint8 [T, H, W, 3]`` RGB (the layout :func:`read_frames` returns).

    ``(index, seed)`` fix all random draws; ``appearance`` and ``motion`` only choose the scenery
    style and the direction, so two classes can be compared on the same draws.
    """
    scenery = render_scenery(cfg, appearance, index, seed)
    stage = render_stage(cfg, draw_motion(cfg, motion, index, seed))
    top, left, sh, sw = cfg.stage_box
    clip = np.repeat(scenery[None], cfg.frames, axis=0)
    clip[:, top:top + sh, left:left + sw, :] = stage[..., None]
    return clip


def stage_mask(cfg: SyntheticMotionConfig) -> np.ndarray:
    """``bool [H, W]``, True inside the stage (where the object moves)."""
    top, left, sh, sw = cfg.stage_box
    mask = np.zeros((cfg.height, cfg.width), dtype=bool)
    mask[top:top + sh, left:left + sw] = True
    return mask


def partition_seed(cfg: SyntheticMotionConfig, partition: Partition) -> int:
    """Generator seed of a partition: ``2 * cfg.seed`` for train, ``2 * cfg.seed + 1`` for test,
    so the two never share draws and every ``cfg.seed`` gives a fresh pair."""
    if partition not in ("train", "test"):
        raise ValueError(f"partition must be 'train' or 'test', got {partition!r}")
    return 2 * cfg.seed + (1 if partition == "test" else 0)


class GeneratedVideos:
    """The clips of one partition of a generated set, rendered on demand (not a torch Dataset).

    A subclass names itself (``name``) and says what sample ``i`` is (``label``, ``frames``); its
    config gives ``train_per_class``, ``test_per_class``, ``num_classes``, ``class_names`` and ``seed``.
    """

    name: str

    def __init__(self, cfg, partition: Partition):
        self.cfg = cfg
        self.partition = partition
        self.seed = partition_seed(cfg, partition)
        per_class = cfg.train_per_class if partition == "train" else cfg.test_per_class
        self._len = per_class * cfg.num_classes

    def __len__(self) -> int:
        return self._len

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.class_names

    def _check(self, i: int) -> int:
        if not 0 <= i < self._len:
            raise IndexError(f"sample {i} out of range for {self._len} {self.partition} clips")
        return int(i)


class SyntheticMotionVideos(GeneratedVideos):
    """synthetic-motion clips of one partition.

    Sample ``i`` has label ``i % num_classes`` (so classes are balanced: ``*_per_class`` clips
    each) and is ``render_clip(cfg, label // motions, label % motions, i, seed)`` with
    ``seed = partition_seed(cfg, partition)``.
    """

    name = "synthetic-motion"

    def label(self, i: int) -> int:
        """Class of sample ``i``: ``appearance * motions + motion``."""
        return self._check(i) % self.cfg.num_classes

    def frames(self, i: int) -> np.ndarray:
        """Clip ``i``: ``uint8 [T, H, W, 3]`` RGB."""
        a, m = divmod(self.label(i), self.cfg.motions)
        return render_clip(self.cfg, a, m, i, self.seed)
