"""Video datasets: clip sampling end to end, and bad files that never crash a worker."""

from __future__ import annotations

import torch
from conftest import frame_pattern, write_video
from torch.utils.data import DataLoader

from respike_nm.data.datasets import VideoClipDataset, check_videos, collate_clips
from respike_nm.data.records import ClipSpec, VideoRecord


def _records(tmp_path):
    good = write_video(tmp_path / "good.mov", frame_pattern(30, 20, 20))
    short = write_video(tmp_path / "short.mov", frame_pattern(5, 20, 20))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    return [VideoRecord(p, i % 2, "ab"[i % 2]) for i, p in enumerate([good, empty, short, junk])]


def test_eval_clip_is_the_centre_window_decomposable(tmp_path):
    """Spatially constant frames (value 8t + 3 in every pixel, so any resize keeps it exactly): one
    eval clip is the centre window (30 frames, T = 8: frames 11-18), two are tiled at 0 and 22; the
    decomposition gives key frames t = 11, 15 and residuals equal to frame minus key frame."""
    from respike_nm.data.decompose import decompose
    from respike_nm.data.transforms import normalize

    n = 30
    values = 8 * torch.arange(n) + 3
    frames = values.view(n, 1, 1, 1).expand(n, 24, 32, 3).to(torch.uint8).numpy()
    path = write_video(tmp_path / "flat.mov", frames)
    rec = [VideoRecord(path, 0, "a")]
    for clips, starts in ((1, [11]), (2, [0, 22])):
        ds = VideoClipDataset(rec, ClipSpec(frames=8, stride=4, size=20, eval_clips=clips), train=False)
        video = ds[0].video  # [K, 8, 3, 20, 20]
        for k, start in enumerate(starts):
            want = values[start:start + 8].view(8, 1, 1, 1).expand(8, 3, 20, 20).to(torch.uint8)
            assert torch.equal(video[k], want)
    centre = VideoClipDataset(rec, ClipSpec(frames=8, stride=4, size=20), train=False)[0].video
    clip = normalize(centre)  # [1, 8, 3, 20, 20]: frames 11-18
    key, residual = decompose(clip, 4)
    assert torch.equal(key[0, :, 0], clip[0, [0, 4], 0]) and key.shape == (1, 2, 3, 20, 20)
    for g in range(2):
        for j in range(3):
            torch.testing.assert_close(residual[0, g, j], clip[0, 4 * g + j + 1] - clip[0, 4 * g],
                                       rtol=0, atol=0)
    # frame value steps of 8 -> residual j of a group is 8 (j + 1) / 255 / std per channel
    std = torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(residual[0, 1, 2, :, 0, 0], 24 / 255 / std, rtol=1e-5, atol=1e-6)


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
