"""Every real clip decodes and decomposes, with the frame count and size of the manifest.

Runs when RESPIKE_REALDATA names the real-clip folder (.ci/run and the Makefile set it when
../shared/realdata exists); skipped with the reason otherwise.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from respike_nm.data.inspect import inspect_video
from respike_nm.data.records import ClipSpec
from respike_nm.data.video import find_videos, read_frames

ROOT = os.environ.get("RESPIKE_REALDATA")
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not ROOT or not Path(ROOT, "MANIFEST.tsv").is_file(),
                       reason="RESPIKE_REALDATA does not name the real-clip folder with MANIFEST.tsv"),
]


def _manifest() -> dict[str, dict]:
    with open(Path(ROOT, "MANIFEST.tsv"), newline="", encoding="utf-8") as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_every_manifest_clip_is_found():
    found = {str(p.relative_to(ROOT)) for p in find_videos([ROOT])}
    assert found == set(_manifest())


def test_every_clip_decodes_to_the_manifest_frame_count_and_size():
    bad = []
    for rel, row in _manifest().items():
        frames, meta = read_frames(Path(ROOT, rel))
        w, h = map(int, row["WxH"].split("x"))
        if (len(frames), frames.shape[2], frames.shape[1]) != (int(row["frames"]), w, h):
            bad.append((rel, len(frames), frames.shape[1:3], row["frames"], row["WxH"]))
    assert not bad, bad


def test_every_clip_decomposes_into_key_and_residual_frames():
    spec = ClipSpec(frames=16, stride=4, size=64)
    for rel in _manifest():
        report, parts = inspect_video(Path(ROOT, rel), spec)
        assert parts.key.shape == (1, 4, 3, 64, 64) and parts.residual.shape == (1, 4, 3, 3, 64, 64)
        # real footage moves or is noisy: a clip with exactly zero residual would mean a
        # sampling bug (the same frame repeated)
        assert report.residual_energy > 0, rel


def test_clips_without_a_container_frame_count_decode_the_same_after_counting():
    """Where the container gives no frame count, read_sampled counts the packets, seeks back to the
    start and decodes: the frames it picks are those of a plain decode of the whole file."""
    import av
    import numpy as np

    from respike_nm.data.video import read_sampled

    checked = 0
    for rel in _manifest():
        path = Path(ROOT, rel)
        with av.open(str(path), metadata_errors="ignore") as c:
            if c.streams.video[0].frames > 0:
                continue
        every, _ = read_frames(path)
        picked, _ = read_sampled(path, lambda n: np.arange(0, n, 3))
        np.testing.assert_array_equal(picked, every[::3], err_msg=rel)
        checked += 1
    assert checked >= 10  # the manifest's mkv and webm clips
