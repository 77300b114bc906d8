"""synthetic-binding: the facts its ceilings rest on (docs/synthetic_binding.md), checked on pixels."""

import itertools

import numpy as np
import pytest

from respike_nm.data.binding import (
    BASE_MAX,
    Arrangement,
    Scene,
    SyntheticBindingConfig,
    SyntheticBindingVideos,
    render_clip,
    render_static,
)
from respike_nm.data.synthetic import APPEARANCES

ARRANGEMENTS = [Arrangement(swapped=s, right=r) for r in (False, True) for s in (False, True)]


def residuals(clip: np.ndarray, s: int) -> np.ndarray:
    """``int [K, s-1, H, W, 3]``: frame minus its group's key frame, in uint8 levels."""
    g = clip.astype(np.int64).reshape(-1, s, *clip.shape[1:])
    return g[:, 1:] - g[:, :1]


def key_frames(clip: np.ndarray, s: int) -> np.ndarray:
    return clip[::s]


@pytest.fixture(scope="module")
def cfg():
    return SyntheticBindingConfig(appearances=4, motions=3, train_per_class=12, test_per_class=6)


def test_classes_are_balanced_and_every_scene_has_its_four_arrangements(cfg):
    videos = SyntheticBindingVideos(cfg, "train")
    labels = [videos.label(i) for i in range(len(videos))]
    assert np.bincount(labels, minlength=cfg.num_classes).tolist() == [12] * cfg.num_classes
    for j in range(len(videos) // 4):
        scenes = [videos.scene(4 * j + r) for r in range(4)]
        assert len({s for s, _ in scenes}) == 1
        assert {a for _, a in scenes} == set(ARRANGEMENTS)
        scene = scenes[0][0]
        # the class colour is the colour of the object's half, the direction the scene's
        for i, (_, arr) in zip(range(4 * j, 4 * j + 4), scenes, strict=True):
            left, right = arr.colours(scene)
            assert labels[i] == (right if arr.right else left) * cfg.motions + scene.motion
            assert left != right


def test_key_frames_do_not_show_the_moving_half_or_the_direction(cfg):
    for a, b in [(0, 1), (2, 3)]:
        for swapped in (False, True):
            ref = None
            for right, motion in itertools.product((False, True), range(cfg.motions)):
                clip = render_clip(cfg, Scene(a, b, motion, 7, 3), Arrangement(swapped, right))
                keys = key_frames(clip, cfg.segment)
                if ref is None:
                    ref = keys
                    # a key frame is the static image plus one object in each half
                    static = render_static(cfg, Scene(a, b, motion, 7, 3), Arrangement(swapped, right))
                    diff = keys.astype(int) - static.astype(int)
                    top, left, sh, sw = cfg.stage_box
                    hw = cfg.half_width
                    for half in (0, 1):
                        x0 = left + half * hw
                        assert (diff[:, top:top + sh, x0:x0 + hw] > 0).any(axis=(1, 2, 3)).all()
                    assert diff.min() >= 0 and not diff[:, :top].any()
                assert np.array_equal(keys, ref)


def test_residuals_do_not_show_colours(cfg):
    for right, motion in itertools.product((False, True), range(cfg.motions)):
        ref = None
        for a, b in itertools.permutations(range(cfg.appearances), 2):
            res = residuals(render_clip(cfg, Scene(a, b, motion, 11, 5), Arrangement(False, right)),
                            cfg.segment)
            if ref is None:
                ref = res
            assert np.array_equal(res, ref)


def test_residuals_are_achromatic_show_the_displacement_and_stay_in_the_stage(cfg):
    top, left, sh, sw = cfg.stage_box
    hw = cfg.half_width
    for j, arr in itertools.product(range(6), ARRANGEMENTS):
        clip = render_clip(cfg, Scene(0, 2, j % cfg.motions, j, 1), arr)
        assert clip.max() <= 255 and render_static(cfg, Scene(0, 2, 0, j, 1), arr).max() <= BASE_MAX
        res = residuals(clip, cfg.segment)
        assert np.array_equal(res[..., 0], res[..., 1]) and np.array_equal(res[..., 0], res[..., 2])
        values = np.unique(res)
        assert len(values) == 3 and values[0] == -values[2] and 40 <= values[2] <= 60  # exactly +-delta
        stage = np.zeros(clip.shape[1:3], bool)
        stage[top:top + sh, left:left + sw] = True
        assert not res[..., ~stage, :].any()
        x0 = left + (hw if arr.right else 0)
        moving = np.zeros(clip.shape[1:3], bool)
        moving[top:top + sh, x0:x0 + hw] = True
        other = stage & ~moving
        # the moving half gains the object somewhere new in every residual frame; the other half
        # only loses its vanished object
        assert ((res[..., moving, 0] > 0).sum(axis=-1) > 0).all()
        assert not (res[..., other, 0] > 0).any() and ((res[..., other, 0] < 0).sum(axis=-1) > 0).all()


def test_first_design_leaves_the_object_out_of_key_frames():
    cfg = SyntheticBindingConfig(decoy=False)
    clip = render_clip(cfg, Scene(0, 1, 0, 3, 0), Arrangement(False, True))
    static = render_static(cfg, Scene(0, 1, 0, 3, 0), Arrangement(False, True))
    assert all(np.array_equal(k, static) for k in key_frames(clip, cfg.segment))
    assert residuals(clip, cfg.segment).min() == 0  # only +delta: no old position to lose


def test_key_frames_show_each_half_in_its_colour(cfg):
    """The ANN's facts are there: the mean colour of each half is nearest its own colour."""
    top, left, sh, sw = cfg.stage_box
    hw = cfg.half_width
    palette = np.array([a.rgb for a in APPEARANCES[:cfg.appearances]])
    for a, b in itertools.permutations(range(cfg.appearances), 2):
        key = render_clip(cfg, Scene(a, b, 0, a * 10 + b, 2), Arrangement(False, False))[0] / 255
        for side, want in ((0, a), (1, b)):
            half = key[top:top + sh, left + side * hw:left + (side + 1) * hw].reshape(-1, 3).mean(0)
            chroma = half / half.sum()
            got = np.argmin(((palette / palette.sum(1, keepdims=True) - chroma) ** 2).sum(1))
            assert got == want


def test_a_sum_of_a_key_term_and_a_residual_term_is_right_at_most_three_times_in_four():
    """Brute force over random score tables of one scene: K(arrangement) + R(half) never gets
    all four samples right, and 3 of 4 is reached (the ceiling is tight)."""
    rng = np.random.default_rng(0)
    # samples (arrangement ab/ba, half L/R) -> correct colour (0 = a, 1 = b), as in the docs' table
    truth = {(0, 0): 0, (1, 0): 1, (0, 1): 1, (1, 1): 0}
    best = 0
    for _ in range(20000):
        k, r = rng.normal(size=(2, 2)), rng.normal(size=(2, 2)) * rng.uniform(0.1, 10)
        right = sum(int(np.argmax(k[arr] + r[half]) == c) for (arr, half), c in truth.items())
        best = max(best, right)
        assert right <= 3
    assert best == 3


def test_per_class_counts_must_fill_whole_cycles():
    with pytest.raises(ValueError, match="multiple of 2\\*\\(A-1\\) = 4"):
        SyntheticBindingConfig(appearances=3, test_per_class=10)
    with pytest.raises(ValueError, match="appearances"):
        SyntheticBindingConfig(appearances=1)


def test_randomness_comes_from_the_seed_and_index_only(cfg):
    videos = SyntheticBindingVideos(cfg, "test")
    again = SyntheticBindingVideos(cfg, "test")
    assert np.array_equal(videos.frames(5), again.frames(5))
    other = SyntheticBindingVideos(SyntheticBindingConfig(appearances=4, motions=3, train_per_class=12,
                                                          test_per_class=6, seed=1), "test")
    assert not np.array_equal(videos.frames(5), other.frames(5))
    train = SyntheticBindingVideos(cfg, "train")
    assert not np.array_equal(videos.frames(5), train.frames(5))
