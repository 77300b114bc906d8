"""The published data protocol: every non-overlapping window, every clip each epoch, Resize + CenterCrop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
from conftest import frame_pattern, write_video
from torch.utils.data import DataLoader
from torchvision.datasets.video_utils import unfold

from respike_nm.config import ConfigError, apply_overrides, load_config
from respike_nm.data.datasets import (
    ClipDataset,
    EveryWindowDataset,
    VideoClipDataset,
    collate_clips,
    with_clip_protocol,
)
from respike_nm.data.records import ClipSpec, VideoRecord
from respike_nm.data.sampling import window_starts
from respike_nm.data.transforms import ClipTransform
from respike_nm.train.builder import clip_spec


@pytest.mark.parametrize(("n", "expected"), [
    (40, [0, 16]),  # 8 remainder frames left out
    (15, [0]),  # shorter than T: one clip, padded by the decoder
    (16, [0]),
    (31, [0]),
    (32, [0, 16]),
    (48, [0, 16, 32]),
    (0, [0]),
])
def test_window_starts_hand_worked(n, expected):
    assert window_starts(n, 16).tolist() == expected


def test_window_starts_brute_force_and_torchvision():
    for t in (1, 4, 7, 16):
        for n in range(0, 70):
            whole = [s for s in range(n) if s % t == 0 and s + t <= n]  # every whole window
            assert window_starts(n, t).tolist() == (whole or [0]), (n, t)
            # the published code's clips: torchvision VideoClips unfolds the frame list with step T
            # (and keeps no clip of a video shorter than T, where ours keeps one padded clip)
            published = unfold(torch.arange(n), t, t)[:, 0].tolist()
            assert published == whole, (n, t)


def test_all_protocols_need_consecutive_sampling():
    with pytest.raises(ValueError, match="sampling 'consecutive'"):
        ClipSpec(frames=8, stride=4, sampling="segments", eval_protocol="all")
    with pytest.raises(ValueError, match="sampling 'consecutive'"):
        ClipSpec(frames=8, stride=4, sampling="segments", train_clips="all")
    with pytest.raises(ValueError, match="eval_resize"):
        ClipSpec(eval_resize="256")


def test_config_options_presets_and_bad_values():
    for name in ("paper-r18", "paper-r50"):
        spec = clip_spec(load_config(name))
        assert (spec.eval_protocol, spec.train_clips, spec.eval_resize) == ("all", "all", "crop_size")
        assert spec.decode_short_side == 224  # Resize(224): the short side to the crop size
    for name in ("tiny", "tiny-binding"):
        spec = clip_spec(load_config(name))
        assert (spec.eval_protocol, spec.train_clips, spec.eval_resize) == ("tiled", "one", "short_side_8_7")
    assert ClipSpec(size=224).decode_short_side == 256
    for key in ("data.eval_protocol", "data.train_clips", "data.eval_resize"):
        with pytest.raises(ConfigError, match=key):
            apply_overrides(load_config("tiny"), [f"{key}=every"])


class _Coded(ClipDataset):
    """Videos whose frame t of video v is 2x2 pixels holding (v, t, 0): a clip says where it came from."""

    def __init__(self, lengths, spec, train, seed=0):
        super().__init__(spec, train, seed, transform=lambda c, seed=None: torch.as_tensor(c))
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def label(self, i):
        return i % 2

    def source(self, i):
        return f"coded:{i}"

    def num_frames(self, i):
        return self.lengths[i]

    def frames(self, i, choose):
        n = self.lengths[i]
        idx = np.minimum(choose(n), n - 1)  # the padding policy: repeat the last frame
        out = np.zeros((*idx.shape, 2, 2, 3), np.uint8)
        out[..., 0], out[..., 1] = i, idx[..., None, None]
        return out


def test_training_visits_every_window_of_every_video_once_per_epoch():
    lengths = [40, 15, 33, 16, 64, 8]
    spec = ClipSpec(frames=16, stride=4, train_clips="all")
    ds = with_clip_protocol(_Coded(lengths, spec, train=True))
    assert isinstance(ds, EveryWindowDataset)
    expected = sorted((v, s) for v, n in enumerate(lengths) for s in range(0, max(n, 1), 16)
                      if s + 16 <= n or s == 0)
    assert len(ds) == len(expected) == 2 + 1 + 2 + 1 + 4 + 1
    for epoch in range(2):
        ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(epoch)
        seen = []
        for batch in DataLoader(ds, batch_size=3, shuffle=True, generator=gen, collate_fn=collate_clips):
            assert batch.video.shape[1] == 1  # one clip per item
            for clip, index, label in zip(batch.video[:, 0], batch.index, batch.label, strict=True):
                v, t0 = int(clip[0, 0, 0, 0]), int(clip[0, 0, 0, 1])
                assert v == int(index) and int(label) == v % 2
                assert clip[:, 0, 0, 1].tolist() == [min(t0 + t, lengths[v] - 1) for t in range(16)]
                seen.append((v, t0))
        assert sorted(seen) == expected  # each window exactly once


def test_one_clip_per_video_unchanged_by_default():
    ds = with_clip_protocol(_Coded([40, 15], ClipSpec(frames=16, stride=4), train=True))
    assert isinstance(ds, _Coded) and len(ds) == 2


def test_every_window_of_decoded_videos(tmp_path):
    lengths = [40, 15, 33]
    recs = [VideoRecord(write_video(tmp_path / f"v{i}.mov", frame_pattern(n, 20, 20)), i % 2, "ab"[i % 2])
            for i, n in enumerate(lengths)]
    # crop_size on 20x20 frames decoded at full size: the centre crop is the whole frame, no resize
    spec = ClipSpec(frames=16, stride=4, size=20, short_side=None, eval_protocol="all",
                    eval_resize="crop_size")
    ds = with_clip_protocol(VideoClipDataset(recs, spec, train=False))
    assert ds.counts.tolist() == lengths
    windows = list(zip(ds.video.tolist(), ds.start.tolist(), strict=True))
    assert windows == [(0, 0), (0, 16), (1, 0), (2, 0), (2, 16)]
    for j in range(len(ds)):
        v, s = int(ds.video[j]), int(ds.start[j])
        frames = frame_pattern(lengths[v], 20, 20)
        want = frames[np.minimum(np.arange(s, s + 16), lengths[v] - 1)]
        got = ds[j]
        assert got.index == v and got.label == v % 2
        assert torch.equal(got.video[0], torch.as_tensor(want).permute(0, 3, 1, 2))


def _blocks(h: int, w: int, block: int, phase: int, seed: int = 0) -> np.ndarray:
    """``uint8 [2, h, w, 3]``: constant ``block``-sided squares, their edges at ``phase`` mod ``block``."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (2, h // block + 2, w // block + 2, 3), dtype=np.uint8)
    ys, xs = (np.arange(h) - phase) // block + 1, (np.arange(w) - phase) // block + 1
    return colours[:, ys][:, :, xs]


def test_crop_size_resize_equals_torchvision_resize_then_centre_crop():
    # 64x96 -> Resize(32) = 32x48 exactly (factor 2), CenterCrop(32) at column round(16 / 2) = 8. The
    # squares' edges lie at 4 mod 8, so the crop's edges (columns 16 and 80 of the input) cut through
    # the middle of squares: every output pixel's filter support there is one colour, and cropping
    # before or after resizing gives the same picture; torchvision (on a CPU that does not report
    # "AVX2", its float path) and our native uint8 resampler round differently by at most 1.
    clip = _blocks(64, 96, 8, 4)
    ref = T.Compose([T.Resize(32, antialias=True), T.CenterCrop(32)])
    expected = ref(torch.as_tensor(clip).permute(0, 3, 1, 2))
    got = ClipTransform(32, train=False, crop_fraction=1.0)(clip)
    assert got.shape == (2, 3, 32, 32)
    assert (got.int() - expected.int()).abs().max() <= 1
    # hand arithmetic: output pixel (r, c) is centred on input (2r + 1, 16 + 2c + 1) and its bilinear
    # antialias filter (scale 2) reaches 2 input pixels either side; where those all lie in one square
    # the output is that square's colour
    def one_square(first: int, size: int) -> bool:
        ids = {(y - 4) // 8 for y in range(max(0, first - 1), min(size, first + 3))}
        return len(ids) == 1

    checked = 0
    for r in range(32):
        for c in range(32):
            if one_square(2 * r, 64) and one_square(16 + 2 * c, 96):
                assert got[:, :, r, c].tolist() == clip[:, 2 * r, 16 + 2 * c].tolist()
                checked += 1
    assert checked >= 32 * 32 // 4
    # and the 8/7 default differs: it crops the central 7/8 of the short side
    assert not torch.equal(ClipTransform(32, train=False)(clip), got)


def test_training_crop_area_follows_data_train_crop_scale(tmp_path):
    """Frames whose green channel is 4 * column: the span of columns a training crop covers tells
    its width, so crops drawn with area 90-100 % are wide and with 8-10 % narrow (aspect 3/4-4/3)."""
    w = 64
    frames = np.zeros((16, w, w, 3), dtype=np.uint8)
    frames[..., 1] = 4 * np.arange(w)[None, None, :]
    path = write_video(tmp_path / "ramp.mov", frames)
    spans = {}
    for scale in ((0.9, 1.0), (0.08, 0.1)):
        cfg = apply_overrides(load_config("tiny"), ["data.frames=16", "data.size=32",
                                                    f"data.train_crop_scale=[{scale[0]}, {scale[1]}]"])
        spec = clip_spec(cfg)
        spec = ClipSpec(**{**spec.__dict__, "short_side": None})  # decode at full resolution
        ds = VideoClipDataset([VideoRecord(path, 0, "ramp")], spec, train=True, seed=0)
        widths = []
        for epoch in range(12):
            ds.set_epoch(epoch)
            g = ds[0].video[0, 0, 1].float()  # green of the first frame [S, S]
            widths.append(abs(float(g[:, -1].mean() - g[:, 0].mean())) / 4 + 1)
        spans[scale] = widths
    # area a * 64^2 with aspect r: width sqrt(a r) * 64 -> >= 52 for a >= 0.9, <= 24 for a <= 0.1
    # (the resize blends the edge columns by about one source column)
    assert min(spans[(0.9, 1.0)]) >= 50 and max(spans[(0.08, 0.1)]) <= 26
