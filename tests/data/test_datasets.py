"""Video datasets: clip sampling end to end, and bad files that never crash a worker."""

from __future__ import annotations

import torch
from conftest import frame_pattern, write_video
from torch.utils.data import DataLoader

from respike_nm.data.datasets import VideoClipDataset, check_videos, collate_clips
from respike_nm.data.records import ClipSpec, VideoRecord
from respike_nm.data.transforms import ClipTransform


def _records(tmp_path):
    good = write_video(tmp_path / "good.mov", frame_pattern(30, 20, 20))
    short = write_video(tmp_path / "short.mov", frame_pattern(5, 20, 20))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    return [VideoRecord(p, i % 2, "ab"[i % 2]) for i, p in enumerate([good, empty, short, junk])]


def test_eval_clip_is_the_centre_window_decomposable(tmp_path):
    recs = _records(tmp_path)
    spec = ClipSpec(frames=8, stride=4, size=20, eval_clips=2)
    ds = VideoClipDataset(recs, spec, train=False, transform=ClipTransform(20, False))
    sample = ds[0]
    assert sample.video.shape == (2, 8, 3, 20, 20) and sample.label == 0
    frames = torch.as_tensor(frame_pattern(30, 20, 20)).permute(0, 3, 1, 2).float() / 255
    # 20 * 7/8 = 17.5 -> the eval crop resizes, so compare the time axis through frame means
    means = frames.mean(dim=(1, 2, 3))
    got = sample.video.float().div(255).mean(dim=(2, 3, 4))
    first, last = means[0:8], means[22:30]  # windows tiled to start at 0 and at 30 - 8
    assert torch.allclose(got[0], first, atol=0.02) and torch.allclose(got[1], last, atol=0.02)


def test_bad_files_are_dropped_and_counted_in_workers(tmp_path):
    recs = _records(tmp_path)
    ds = VideoClipDataset(recs, ClipSpec(frames=8, stride=4, size=16), train=True, seed=1)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert sum(b.failed for b in batches) == 2
    assert sorted(i for b in batches for i in b.index.tolist()) == [0, 2]
    assert all(b.video.shape[1:] == (1, 8, 3, 16, 16) for b in batches if len(b.index))


def test_training_draws_depend_on_seed_epoch_and_index_only(tmp_path):
    recs = _records(tmp_path)[:1]
    spec = ClipSpec(frames=8, stride=4, size=16)
    a = VideoClipDataset(recs, spec, train=True, seed=3)
    b = VideoClipDataset(recs, spec, train=True, seed=3)
    assert torch.equal(a[0].video, b[0].video)
    b.set_epoch(1)
    assert not torch.equal(a[0].video, b[0].video)


def test_check_videos_splits_off_unreadable_files(tmp_path):
    recs = _records(tmp_path)
    kept, skipped = check_videos(recs)
    assert [r.path.name for r in kept] == ["good.mov", "short.mov"]
    assert [s.path.split("/")[-1] for s in skipped] == ["empty.avi", "junk.mp4"]
    assert skipped[0].reason == "file is empty"
    assert "not a readable video" in skipped[1].reason
