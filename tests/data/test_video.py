"""Decoding: exact pixels from lossless files, padding, odd sizes, VFR, GIF, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import frame_pattern, write_video

from respike_nm.data.errors import VideoDecodeError
from respike_nm.data.video import find_videos, probe_video, read_frames, read_sampled


def test_read_all_frames_exact(pattern_video):
    path, frames = pattern_video
    got, meta = read_frames(path)
    np.testing.assert_array_equal(got, frames)
    assert (meta.num_frames, meta.width, meta.height, meta.fps) == (20, 32, 24, 25.0)


def test_read_selected_frames_in_requested_order_with_repeats(pattern_video):
    path, frames = pattern_video
    idx = [5, 2, 2, 19]
    got, _ = read_frames(path, idx)
    np.testing.assert_array_equal(got, frames[idx])


def test_indices_past_the_end_repeat_the_last_frame(pattern_video):
    path, frames = pattern_video
    got, _ = read_frames(path, [18, 19, 20, 25])
    np.testing.assert_array_equal(got, frames[[18, 19, 19, 19]])


def test_read_sampled_gets_frame_count_and_keeps_index_shape(pattern_video):
    path, frames = pattern_video
    seen = []

    def choose(n):
        seen.append(n)
        return np.array([[0, 1], [n - 2, n - 1]])

    got, _ = read_sampled(path, choose)
    assert seen == [20]
    assert got.shape == (2, 2, 24, 32, 3)
    np.testing.assert_array_equal(got[1, 1], frames[19])


def test_odd_size_container_without_frame_count(tmp_path):
    frames = frame_pattern(9, 17, 33)
    path = write_video(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    assert probe_video(path).num_frames == 9  # matroska has no count: packets are counted
    got, _ = read_sampled(path, lambda n: np.arange(n))
    np.testing.assert_array_equal(got, frames)


def test_variable_frame_rate_keeps_every_frame(tmp_path):
    frames = frame_pattern(12, 16, 16)
    pts = [0, 40, 50, 120, 130, 200, 210, 300, 310, 400, 410, 420]
    path = write_video(tmp_path / "vfr.mov", frames, pts=pts)
    got, meta = read_frames(path)
    np.testing.assert_array_equal(got, frames)
    assert meta.num_frames == 12


def test_gif_decodes(tmp_path):
    frames = frame_pattern(6, 16, 20)
    path = write_video(tmp_path / "a.gif", frames, codec="gif", pix_fmt="rgb8")
    got, meta = read_frames(path)
    assert got.shape == (6, 16, 20, 3) and meta.codec == "gif"
    # rgb8 is a dithered 3-3-2 bit palette: pixels are off by up to a few palette steps, but on
    # average a GIF frame is far closer to its own source frame than to the next one
    err = np.abs(got.astype(int) - frames).mean(axis=(1, 2, 3))
    shifted = np.abs(got[:-1].astype(int) - frames[1:]).mean(axis=(1, 2, 3))
    assert err.max() < 20 and np.all(err[:-1] < shifted)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "empty"),
        ("text.mp4", b"this is not a video\n" * 50, "not a readable video"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=problem) as err:
        read_frames(path)
    assert str(path) in str(err.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_frames(path)


def test_truncated_file_keeps_frames_before_the_damage(tmp_path):
    frames = frame_pattern(40, 32, 32)
    path = write_video(tmp_path / "full.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    got, meta = read_frames(cut)
    assert 0 < len(got) < 40
    np.testing.assert_array_equal(got, frames[: len(got)])
    head = tmp_path / "head.mkv"
    head.write_bytes(data[:200])  # header only: nothing decodes
    with pytest.raises(VideoDecodeError):
        read_frames(head)


def test_find_videos_recurses_by_extension_and_keeps_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.avi", "a/b/y.MP4", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = find_videos([tmp_path, tmp_path / "named.bin"])
    assert found == [tmp_path / "a/b/y.MP4", tmp_path / "a/x.avi", tmp_path / "named.bin"]
