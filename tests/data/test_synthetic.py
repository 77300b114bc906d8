"""synthetic-motion: determinism, where appearance and motion live, and what a classifier can learn.

The statistical tests use a nearest-centroid classifier on three feature maps:
- ``pixels``: the frame mean-pooled 4x4 (sees colour, texture, coarse position);
- ``profile``: the object's mass per stage row and per stage column (sees position and size);
- ``xcorr``: on the stage, the circular cross-correlation of the frame's positive and negative
  parts (after removing its mean). It is translation invariant and, for a residual frame, peaks
  along the direction of motion (leading edge vs trailing edge), so it can read motion.
"""

from __future__ import annotations

import numpy as np
import pytest

from respike_nm.data.synthetic import (
    APPEARANCES,
    MOTIONS,
    STAGE_GRAY,
    SyntheticMotionConfig,
    SyntheticMotionVideos,
    draw_motion,
    render_clip,
    render_scenery,
    stage_mask,
)

STRIDE = 4  # group size s for HMDB-51/UCF-101 (docs/method.md)


def residual_groups(clip: np.ndarray, s: int = STRIDE) -> np.ndarray:
    """``int16 [T/s, s-1, H, W, 3]``: R[k, j-1] = F[k*s + j] - F[k*s]."""
    groups = clip.astype(np.int16).reshape(-1, s, *clip.shape[1:])
    return groups[:, 1:] - groups[:, :1]


def key_frames(clip: np.ndarray, s: int = STRIDE) -> np.ndarray:
    return clip[::s]


def pixel_features(frames: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N, H/4 * W/4 * 3]`` mean-pooled 4x4."""
    n, h, w, c = frames.shape
    pooled = frames.astype(np.float64).reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))
    return pooled.reshape(n, -1)


def profile_features(frames: np.ndarray, cfg: SyntheticMotionConfig) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N, sh + sw]``: mean gray deviation from the stage gray per stage
    row and per stage column."""
    top, left, sh, sw = cfg.stage_box
    x = frames[:, top:top + sh, left:left + sw].astype(np.float64).mean(axis=-1) - STAGE_GRAY
    return np.concatenate([x.mean(axis=2), x.mean(axis=1)], axis=1) / 127


def xcorr_features(frames: np.ndarray, cfg: SyntheticMotionConfig) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N, sh * sw]``: C(u) = sum_x P(x + u) N(x) on the stage torus, with
    P, N the positive and negative parts of the mean-removed gray stage; L2-normalised."""
    top, left, sh, sw = cfg.stage_box
    x = frames[:, top:top + sh, left:left + sw].astype(np.float64).mean(axis=-1)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    pos, neg = np.fft.fft2(np.maximum(x, 0)), np.fft.fft2(np.maximum(-x, 0))
    corr = np.fft.ifft2(pos * np.conj(neg)).real.reshape(len(x), -1)
    return corr / (np.linalg.norm(corr, axis=1, keepdims=True) + 1e-9)


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    classes = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in classes])
    dist = ((test_x[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((classes[dist.argmin(axis=1)] == test_y).mean())


def chance_bound(classes: int, clips: int) -> float:
    """1/M + 3 sigma. Each test input has the same distribution for every label and the labels
    are balanced, so a classifier fitted on independent training data has expected accuracy
    exactly 1/M, and its accuracy over ``clips`` independent test inputs has variance
    <= (1/M)(1 - 1/M) / clips (per balanced group of M, sum p_m (1 - p_m) <= 1 - 1/M when
    sum p_m = 1). Twelve such checks at 3 sigma: a correct generator fails one with probability
    about 1 % (normal approximation); the seeds are fixed, so the outcome is reproducible."""
    p = 1.0 / classes
    return p + 3.0 * np.sqrt(p * (1 - p) / clips)


# --- determinism, partitions, labels ---------------------------------------------------------

def test_frames_are_deterministic_and_partitions_differ():
    cfg = SyntheticMotionConfig(train_per_class=2, test_per_class=2)
    a, b = SyntheticMotionVideos(cfg, "train"), SyntheticMotionVideos(cfg, "train")
    test = SyntheticMotionVideos(cfg, "test")
    other_seed = SyntheticMotionVideos(SyntheticMotionConfig(seed=1), "train")
    for i in (0, 5, len(a) - 1):
        clip = a.frames(i)
        assert clip.dtype == np.uint8 and clip.shape == (16, 64, 64, 3)
        np.testing.assert_array_equal(clip, a.frames(i))
        np.testing.assert_array_equal(clip, b.frames(i))
        assert a.label(i) == test.label(i)
        assert not np.array_equal(clip, test.frames(i))
        assert not np.array_equal(clip, other_seed.frames(i))


def test_labels_are_balanced_and_named():
    cfg = SyntheticMotionConfig(appearances=3, motions=4, train_per_class=5, test_per_class=2)
    train, test = SyntheticMotionVideos(cfg, "train"), SyntheticMotionVideos(cfg, "test")
    assert (len(train), len(test)) == (60, 24)
    for videos, per_class in ((train, 5), (test, 2)):
        counts = np.bincount([videos.label(i) for i in range(len(videos))])
        np.testing.assert_array_equal(counts, np.full(cfg.num_classes, per_class))
    assert train.classes == cfg.class_names
    assert cfg.class_names[:5] == ("red/right", "red/left", "red/down", "red/up", "green/right")
    assert len(set(cfg.class_names)) == cfg.num_classes == 12
    with pytest.raises(IndexError):
        train.frames(len(train))
    with pytest.raises(ValueError, match="partition"):
        SyntheticMotionVideos(cfg, "val")


def test_label_matches_rendered_class():
    cfg = SyntheticMotionConfig(train_per_class=1)
    videos = SyntheticMotionVideos(cfg, "train")
    for i in range(cfg.num_classes):
        a, m = divmod(videos.label(i), cfg.motions)
        np.testing.assert_array_equal(videos.frames(i), render_clip(cfg, a, m, i, videos.seed))


# --- where appearance and motion live ---------------------------------------------------------

def test_residuals_are_zero_outside_the_stage_and_nonzero_inside():
    cfg = SyntheticMotionConfig(appearances=8, motions=8, train_per_class=1)
    videos = SyntheticMotionVideos(cfg, "train")
    outside = ~stage_mask(cfg)
    assert stage_mask(cfg).sum() == 32 * 32
    for i in range(len(videos)):
        clip = videos.frames(i).astype(np.int16)
        diff = clip - clip[:1]
        assert not diff[:, outside].any(), f"clip {i}: scenery changes over time"
        groups = residual_groups(videos.frames(i))
        assert groups.reshape(*groups.shape[:2], -1).any(axis=-1).all(), f"clip {i}: still group"


def test_residuals_do_not_depend_on_appearance():
    cfg = SyntheticMotionConfig(appearances=8, motions=8)
    for index in range(6):
        for m in range(cfg.motions):
            clips = [render_clip(cfg, a, m, index, seed=3) for a in range(cfg.appearances)]
            ref = residual_groups(clips[0])
            for a in range(1, cfg.appearances):
                assert not np.array_equal(clips[a][0], clips[0][0])  # appearances do differ
                np.testing.assert_array_equal(residual_groups(clips[a]), ref)


def test_key_frames_do_not_depend_on_motion():
    cfg = SyntheticMotionConfig(appearances=2, motions=8)  # segment = STRIDE
    for index in range(6):
        for a in range(cfg.appearances):
            clips = [render_clip(cfg, a, m, index, seed=5) for m in range(cfg.motions)]
            for m in range(1, cfg.motions):
                np.testing.assert_array_equal(key_frames(clips[m]), key_frames(clips[0]))
            later = {clip[1].tobytes() for clip in clips}
            assert len(later) == cfg.motions, "two motions give the same second frame"


def test_continuous_trajectory_shares_only_the_first_frame():
    cfg = SyntheticMotionConfig(motions=4, segment=16)
    for index in range(6):
        clips = [render_clip(cfg, 0, m, index, seed=5) for m in range(cfg.motions)]
        for m in range(1, cfg.motions):
            np.testing.assert_array_equal(clips[m][0], clips[0][0])
            assert not np.array_equal(clips[m][STRIDE], clips[0][STRIDE])


@pytest.mark.parametrize("segment", [STRIDE, 16])
def test_object_moves_rigidly_inside_the_stage(segment):
    cfg = SyntheticMotionConfig(motions=8, height=48, width=80, segment=segment)  # non-square
    top, left, sh, sw = cfg.stage_box
    outside = ~stage_mask(cfg)
    for index in range(16):
        m = index % cfg.motions
        clip = render_clip(cfg, 1, m, index, seed=7)
        draw = draw_motion(cfg, m, index, seed=7)
        scenery = render_scenery(cfg, 1, index, seed=7)
        stage = clip[:, top:top + sh, left:left + sw]
        obj = (stage != STAGE_GRAY).any(axis=-1)  # [T, sh, sw]
        at_origin = np.zeros((sh, sw), dtype=bool)
        at_origin[:draw.size_h, :draw.size_w] = True
        pos = draw.positions(cfg.frames)
        assert len(draw.starts) == -(-cfg.frames // segment)
        for t in range(cfg.frames):
            np.testing.assert_array_equal(clip[t][outside], scenery[outside])
            assert (stage[t][obj[t]] == draw.level).all()
            np.testing.assert_array_equal(obj[t], np.roll(at_origin, pos[t], axis=(0, 1)))
            k, j = divmod(t, segment)
            assert tuple(pos[t]) == (draw.starts[k][0] + j * draw.vy,
                                     draw.starts[k][1] + j * draw.vx)


def test_motion_draws_cover_their_ranges():
    for cfg in (SyntheticMotionConfig(), SyntheticMotionConfig(height=128, width=128),
                SyntheticMotionConfig(height=16, width=16)):
        _, _, sh, sw = cfg.stage_box
        lo, hi = cfg.object_sizes
        draws = [draw_motion(cfg, 0, i, seed=11) for i in range(1000)]
        speeds = {d.speed for d in draws}
        assert speeds == set(range(1, cfg.max_speed + 1))
        assert {d.size_h for d in draws} == set(range(lo, hi + 1))
        assert hi < min(sh, sw) // 2
        starts = np.concatenate([d.starts for d in draws])
        assert set(starts[:, 0]) == set(range(sh))  # every start position occurs
        assert set(starts[:, 1]) == set(range(sw))
    cfg = SyntheticMotionConfig(motions=8)
    assert (cfg.max_speed, cfg.object_sizes) == (3, (4, 8))
    for i in range(20):
        base = draw_motion(cfg, 0, i, seed=2)
        for m, (_, dy, dx) in enumerate(MOTIONS):
            d = draw_motion(cfg, m, i, seed=2)
            assert (d.vy, d.vx) == (dy * base.speed, dx * base.speed)
            assert (d.starts, d.size_h, d.size_w, d.level) == (
                base.starts, base.size_h, base.size_w, base.level)


# --- what a classifier can learn --------------------------------------------------------------

@pytest.fixture(scope="module")
def one_appearance():
    """Appearance 0 with 4 motions: 200 train and 200 test clips."""
    cfg = SyntheticMotionConfig(appearances=1, motions=4, train_per_class=50, test_per_class=50)
    out = {}
    for part in ("train", "test"):
        videos = SyntheticMotionVideos(cfg, part)
        clips = np.stack([videos.frames(i) for i in range(len(videos))])
        labels = np.array([videos.label(i) for i in range(len(videos))])
        out[part] = (clips, labels)
    return cfg, out


def test_key_frames_do_not_reveal_motion(one_appearance):
    """One classifier per key-frame position k (a stronger adversary than one that pools them,
    as it may learn where objects of each motion sit at time k*s)."""
    cfg, data = one_appearance
    bound = chance_bound(cfg.motions, clips=len(data["test"][1]))  # 0.25 + 0.092
    features = {"pixels": pixel_features, "profile": lambda f: profile_features(f, cfg),
                "xcorr": lambda f: xcorr_features(f, cfg)}
    for t in range(0, cfg.frames, STRIDE):
        for name, phi in features.items():
            (trc, trl), (tec, tel) = data["train"], data["test"]
            acc = nearest_centroid_accuracy(phi(trc[:, t]), trl, phi(tec[:, t]), tel)
            assert acc < bound, f"key frame {t} ({name}): motion accuracy {acc:.3f} >= {bound:.3f}"


def test_residual_frames_reveal_motion(one_appearance):
    cfg, data = one_appearance
    xs, ys = {}, {}
    for part, (clips, labels) in data.items():
        res = np.stack([residual_groups(c) for c in clips])  # [N, K, s-1, H, W, 3]
        per_clip = res.shape[1] * res.shape[2]
        xs[part] = xcorr_features(res.reshape(-1, *res.shape[3:]), cfg)
        ys[part] = np.repeat(labels, per_clip)
    acc = nearest_centroid_accuracy(xs["train"], ys["train"], xs["test"], ys["test"])
    assert acc > 0.9, f"residual frames predict motion with accuracy {acc:.3f} only"


def test_clip_key_frames_do_not_reveal_motion():
    """Exact: for one (seed, index, appearance) every motion gives identical key frames, so even
    a classifier that sees all key frames of a clip, in order, is right for one motion in M."""
    cfg = SyntheticMotionConfig(appearances=2, motions=4)

    def key_set(seed: int, n: int):
        x, y = [], []
        for index in range(n):
            for m in range(cfg.motions):
                x.append(key_frames(render_clip(cfg, index % 2, m, index, seed)))
                y.append(m)
        return np.stack(x), np.array(y)

    (train_x, train_y), (test_x, test_y) = key_set(0, 24), key_set(1, 24)
    for phi in (pixel_features, lambda f: profile_features(f, cfg)):
        train_f, test_f = (np.stack([phi(c).ravel() for c in x]) for x in (train_x, test_x))
        acc = nearest_centroid_accuracy(train_f, train_y, test_f, test_y)
        assert acc == pytest.approx(1 / cfg.motions, abs=1e-12)


def test_residual_frames_do_not_reveal_appearance():
    """Exact: for one (seed, index, motion) every appearance gives identical residuals, so any
    deterministic classifier is right for exactly one of the A appearances."""
    cfg = SyntheticMotionConfig(appearances=4, motions=4)

    def residual_set(seed: int, n: int):
        x, y = [], []
        for index in range(n):
            for a in range(cfg.appearances):
                res = residual_groups(render_clip(cfg, a, index % cfg.motions, index, seed))
                x.append(res.reshape(-1, *res.shape[2:]))
                y.append(np.full(len(x[-1]), a))
        return np.concatenate(x), np.concatenate(y)

    (trx, try_), (tex, tey) = residual_set(0, 24), residual_set(1, 24)
    for features in (pixel_features, lambda f: xcorr_features(f, cfg)):
        acc = nearest_centroid_accuracy(features(trx), try_, features(tex), tey)
        assert acc == pytest.approx(1 / cfg.appearances, abs=1e-12)


def test_key_frames_reveal_appearance_after_crop_and_resize():
    cfg = SyntheticMotionConfig(appearances=8, motions=2, train_per_class=6, test_per_class=6)
    rng = np.random.default_rng(0)

    def crop_resize(frame: np.ndarray) -> np.ndarray:
        """Random crop of 75-100 % of each side, resized back (nearest) to 64x64."""
        h, w = rng.integers(48, 65, size=2)
        y, x = rng.integers(0, 65 - h), rng.integers(0, 65 - w)
        rows = y + (np.arange(64) * h) // 64
        cols = x + (np.arange(64) * w) // 64
        return frame[rows][:, cols]

    xs, ys = {}, {}
    for part in ("train", "test"):
        videos = SyntheticMotionVideos(cfg, part)
        frames = [crop_resize(k) for i in range(len(videos)) for k in key_frames(videos.frames(i))]
        xs[part] = pixel_features(np.stack(frames))
        ys[part] = np.repeat([videos.label(i) // cfg.motions for i in range(len(videos))], 4)
    acc = nearest_centroid_accuracy(xs["train"], ys["train"], xs["test"], ys["test"])
    assert acc > 0.95, f"appearance from cropped key frames: accuracy {acc:.3f}"


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("appearances", 0), ("appearances", len(APPEARANCES) + 1), ("motions", 0),
    ("motions", len(MOTIONS) + 1), ("frames", 1), ("height", 15), ("width", 8),
    ("train_per_class", 0), ("test_per_class", -1), ("seed", -1), ("appearances", 2.0),
    ("segment", 1),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticMotionConfig(**{field: value})


def test_render_rejects_out_of_range_classes():
    cfg = SyntheticMotionConfig(appearances=2, motions=3)
    with pytest.raises(ValueError, match="appearance"):
        render_clip(cfg, 2, 0, 0, 0)
    with pytest.raises(ValueError, match="motion"):
        render_clip(cfg, 0, 3, 0, 0)
