"""synthetic-binding: a generated task that only fusion *at the same place* can solve.

synthetic-motion factorises (class = appearance x motion), so a head that adds a key-frame score
to a residual score solves it. Here the class is a conjunction of the two branches' facts at one
place. The stage (the middle half of the frame) is split into a left and a right half, each with
its own static colour, drawn per scene from ``A`` colours (the two always differ). Achromatic
objects (each adds the same brightness to all channels, so residual frames carry no colour) sit in
both halves in every key frame (frames ``k * segment``); after each key frame the object of one
half moves and the other one vanishes. So key frames show the two colours but not which half's
object will move, and residual frames show where the moving object is and how it moves (its old
and new position, as in synthetic-motion) but no colour.

Class = (colour of the half the object moves in, direction): label ``colour * M + direction``.

Scenes come in fours. Scene ``j`` fixes an unordered colour pair ``{a, b}`` and a direction
(enumerated, so classes are balanced), plus every random draw (texture, jitter, noise, object
size, level, speed, start positions) from ``(seed, j)`` streams; sample ``4 j + r`` is its
arrangement ``r``: bit 0 swaps which half is ``a``, bit 1 puts the object in the right half.
Then, exactly for every test set (docs/synthetic_binding.md):

- key frames are bit-identical for the two object halves and every direction of a scene: a
  key-frame-only model cannot beat ``1 / (2 M)``;
- residual frames are bit-identical for the two colour arrangements of a scene: a residual-only
  model cannot beat ``1 / A``;
- any model whose logits are a key-frame term plus a residual term (ReSpike's head without
  cross-attention, group averaging included) is right in at most 3 of a scene's 4 samples:
  ceiling ``3 / 4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from respike_nm.data.synthetic import (
    APPEARANCES,
    MOTIONS,
    GeneratedVideos,
    _check_range,
    _is_int,
)
from respike_nm.errors import UsageError

BACKGROUND_GRAY = 110
"""Gray level of the scenery outside the stage (before the static noise)."""
BASE_MAX = 195
"""Every pixel of the static image is clipped to this, so that the object never saturates."""
OBJECT_DELTA = (40, 60)
"""Brightness the object adds to all three channels (uint8 levels, inclusive)."""
_STRIPE_CONTRAST = 0.2
_BRIGHTNESS = (0.85, 1.05)
_TINT_JITTER = 0.03
_NOISE_STD = 0.02
_MIN_STAGE = 16


@dataclass(frozen=True)
class SyntheticBindingConfig:
    """Sizes of the synthetic-binding set; frames are ``uint8 [frames, height, width, 3]``.

    ``appearances`` (A, >= 2) colours, ``motions`` (M) directions from
    :data:`~respike_nm.data.synthetic.MOTIONS`. ``decoy`` False is the first design (the object
    absent from key frames and nothing in the other half, so that direction is only in the temporal
    order of the residual frames; docs/synthetic_binding.md says why it was replaced).
    ``*_per_class`` must be multiples of ``2 (A - 1)``: then every class has exactly that many
    samples and every scene all four arrangements. ``segment``: the key-frame stride s.
    """

    appearances: int = 3
    motions: int = 2
    frames: int = 16
    height: int = 64
    width: int = 64
    train_per_class: int = 80
    test_per_class: int = 32
    seed: int = 0
    segment: int = 4
    decoy: bool = True

    def __post_init__(self):
        _check_range("appearances", self.appearances, 2, len(APPEARANCES))
        _check_range("motions", self.motions, 1, len(MOTIONS))
        _check_range("frames", self.frames, 2, None)
        _check_range("seed", self.seed, 0, None)
        _check_range("segment", self.segment, 2, None)
        step = 2 * (self.appearances - 1)
        for name in ("train_per_class", "test_per_class"):
            n = getattr(self, name)
            if not _is_int(n) or n < 0 or n % step or (name == "train_per_class" and n == 0):
                raise UsageError(
                    f"synthetic-binding: {name} must be a positive multiple of 2*(A-1) = {step} "
                    f"(A = {self.appearances} colours), got {n!r}: then classes are balanced and "
                    "every scene comes in its four arrangements")
        for name in ("height", "width"):
            size = getattr(self, name)
            if not _is_int(size) or size // 2 < _MIN_STAGE:
                raise UsageError(f"{name} must be an integer >= {2 * _MIN_STAGE}, got {size!r}: the "
                                 f"stage (the middle half) needs two halves of >= {_MIN_STAGE // 2} px")

    @property
    def num_classes(self) -> int:
        return self.appearances * self.motions

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"{APPEARANCES[c].name}/{MOTIONS[m][0]}"
                     for c in range(self.appearances) for m in range(self.motions))

    @property
    def stage_box(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the stage: the middle half of the frame."""
        sh, sw = self.height // 2, self.width // 2
        return (self.height - sh) // 2, (self.width - sw) // 2, sh, sw

    @property
    def half_width(self) -> int:
        """Width of each half of the stage (px); the right half starts there."""
        return self.stage_box[3] // 2

    @property
    def object_sizes(self) -> tuple[int, int]:
        """Inclusive range of the object's height and width (px): 4-6 at 64 px."""
        side = min(self.height, self.width) // 2
        return max(2, round(side / 8)), max(2, round(3 * side / 16))

    @property
    def max_speed(self) -> int:
        """Speeds are drawn in ``1..max_speed`` px/frame (2 at 64 px)."""
        return max(1, round(2 * min(self.height, self.width) / 64))

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """The unordered colour pairs, in the order scenes cycle through them."""
        return tuple(combinations(range(self.appearances), 2))


@dataclass(frozen=True)
class Scene:
    """Everything a scene fixes: the colour pair ``(a, b)``, the direction, and the seed of its
    random draws. Its four samples differ only in :class:`Arrangement`."""

    a: int
    b: int
    motion: int
    index: int
    seed: int


@dataclass(frozen=True)
class Arrangement:
    swapped: bool  # False: a on the left, b on the right
    right: bool  # the object moves in the right half

    def colours(self, scene: Scene) -> tuple[int, int]:
        """``(left colour, right colour)``."""
        return (scene.b, scene.a) if self.swapped else (scene.a, scene.b)

    def object_colour(self, scene: Scene) -> int:
        left, right = self.colours(scene)
        return right if self.right else left


def scene_of(cfg: SyntheticBindingConfig, index: int, seed: int) -> tuple[Scene, Arrangement]:
    """Sample ``index`` -> its scene (``index // 4``) and arrangement (``index % 4``)."""
    j, r = divmod(index, 4)
    pairs = cfg.pairs
    a, b = pairs[j % len(pairs)]
    motion = (j // len(pairs)) % cfg.motions
    return Scene(a, b, motion, j, seed), Arrangement(swapped=bool(r & 1), right=bool(r & 2))


def label_of(cfg: SyntheticBindingConfig, index: int) -> int:
    scene, arr = scene_of(cfg, index, 0)
    return arr.object_colour(scene) * cfg.motions + scene.motion


def render_static(cfg: SyntheticBindingConfig, scene: Scene, arrangement: Arrangement) -> np.ndarray:
    """The image without the object, ``uint8 [H, W, 3]``, every value <= :data:`BASE_MAX`: gray
    scenery with static noise, and the stage's two halves in their colours with mild stripes,
    gain, tint and noise. The draws come from ``default_rng([seed, scene, 0])`` per half position
    (so a swap changes the colours, not the textures); the object's half plays no part."""
    rng = np.random.default_rng([scene.seed, scene.index, 0])
    h, w = cfg.height, cfg.width
    img = BACKGROUND_GRAY / 255 + rng.normal(0.0, _NOISE_STD, size=(h, w, 1))
    img = np.repeat(img, 3, axis=2)
    top, left, sh, _ = cfg.stage_box
    hw = cfg.half_width
    y = np.arange(sh, dtype=np.float64)[:, None]
    x = np.arange(hw, dtype=np.float64)[None, :]
    for side, colour in enumerate(arrangement.colours(scene)):
        app = APPEARANCES[colour]
        phase, gain = rng.uniform(0.0, 2 * np.pi), rng.uniform(*_BRIGHTNESS)
        tint = rng.uniform(-_TINT_JITTER, _TINT_JITTER, size=3)
        noise = rng.normal(0.0, _NOISE_STD, size=(sh, hw, 1))
        period = app.period * min(h, w) / 64
        along = x * np.cos(app.angle) + y * np.sin(app.angle)
        stripes = 1.0 - _STRIPE_CONTRAST * (0.5 - 0.5 * np.cos(2 * np.pi * along / period + phase))
        x0 = left + side * hw
        img[top:top + sh, x0:x0 + hw] = stripes[..., None] * (np.asarray(app.rgb) + tint) * gain + noise
    return np.rint(np.clip(img, 0.0, BASE_MAX / 255) * 255).astype(np.uint8)


@dataclass(frozen=True)
class ObjectDraw:
    """The objects of a scene: ``starts[k][h] = (y, x)``, the top-left corner in half ``h``'s
    coordinates (0 left, 1 right) at key frame ``k``; velocity ``(vy, vx)`` px/frame; size; the
    brightness ``delta`` each adds. Nothing here depends on which half the object moves in."""

    starts: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    vy: int
    vx: int
    size_h: int
    size_w: int
    delta: int


def draw_object(cfg: SyntheticBindingConfig, scene: Scene) -> ObjectDraw:
    """From ``default_rng([seed, scene, 1])``; only the velocity's sign depends on the direction."""
    rng = np.random.default_rng([scene.seed, scene.index, 1])
    _, _, sh, _ = cfg.stage_box
    lo, hi = cfg.object_sizes
    speed = int(rng.integers(1, cfg.max_speed + 1))
    size_h, size_w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    delta = int(rng.integers(OBJECT_DELTA[0], OBJECT_DELTA[1] + 1))
    segments = -(-cfg.frames // cfg.segment)
    ys, xs = rng.integers(sh, size=(segments, 2)), rng.integers(cfg.half_width, size=(segments, 2))
    starts = np.stack([ys, xs], axis=-1)  # [segment, half, (y, x)]
    _, dy, dx = MOTIONS[scene.motion]
    return ObjectDraw(tuple(tuple(map(tuple, seg)) for seg in starts.tolist()), speed * dy, speed * dx,
                      size_h, size_w, delta)


def object_masks(cfg: SyntheticBindingConfig, draw: ObjectDraw, half: int, moving: bool) -> np.ndarray:
    """``bool [T, sh, half_width]``: where the object of ``half`` is, wrapped inside its half.

    The moving object is at ``starts[k][half] + j v`` in frame ``k s + j``. With ``cfg.decoy`` the
    other half's object sits at ``starts[k][half]`` in key frames only (it vanishes after them);
    without, the moving object too is absent from key frames and the other half stays empty.
    """
    _, _, sh, _ = cfg.stage_box
    hw = cfg.half_width
    t = np.arange(cfg.frames)
    k, j = t // cfg.segment, t % cfg.segment
    starts = np.asarray(draw.starts)[k, half]  # [T, 2]
    pos = starts + (j if moving else 0 * j)[:, None] * np.array([draw.vy, draw.vx])
    rows = (np.arange(sh)[None, :] - pos[:, :1]) % sh < draw.size_h
    cols = (np.arange(hw)[None, :] - pos[:, 1:]) % hw < draw.size_w
    present = (j > 0) if moving else (j == 0)
    if cfg.decoy and moving:
        present = np.ones_like(present)
    if not cfg.decoy and not moving:
        present = np.zeros_like(present)
    return (rows[:, :, None] & cols[:, None, :]) & present[:, None, None]


def render_clip(cfg: SyntheticBindingConfig, scene: Scene, arrangement: Arrangement) -> np.ndarray:
    """One clip, ``uint8 [T, H, W, 3]`` RGB."""
    clip = np.repeat(render_static(cfg, scene, arrangement)[None], cfg.frames, axis=0)
    draw = draw_object(cfg, scene)
    top, left, sh, _ = cfg.stage_box
    moving = 1 if arrangement.right else 0
    for half in (0, 1):
        x0 = left + half * cfg.half_width
        view = clip[:, top:top + sh, x0:x0 + cfg.half_width]
        mask = object_masks(cfg, draw, half, moving=half == moving)
        view += (mask * np.uint8(draw.delta))[..., None]  # no overflow: the base is <= 195
    return clip


class SyntheticBindingVideos(GeneratedVideos):
    """synthetic-binding clips of one partition (the interface of
    :class:`~respike_nm.data.synthetic.SyntheticMotionVideos`)."""

    name = "synthetic-binding"

    def label(self, i: int) -> int:
        return label_of(self.cfg, self._check(i))

    def scene(self, i: int) -> tuple[Scene, Arrangement]:
        return scene_of(self.cfg, self._check(i), self.seed)

    def frames(self, i: int) -> np.ndarray:
        return render_clip(self.cfg, *self.scene(i))
