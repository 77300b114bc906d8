"""HDF5 clip cache: round trip, validation of malformed files, atomic writes, workers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import frame_pattern
from torch.utils.data import DataLoader

from respike_nm.data.cache import (
    CacheItem,
    H5ClipDataset,
    read_cache_info,
    write_cache,
)
from respike_nm.data.datasets import collate_clips
from respike_nm.data.errors import CacheFormatError, DataError
from respike_nm.data.records import ClipSpec, Skipped
from respike_nm.data.transforms import ClipTransform


def _items():
    for v, n in enumerate([10, 16, 7, 12]):
        frames = np.roll(frame_pattern(n, 16, 16), 5 * v, axis=2)
        yield CacheItem(frames, v % 2, "train" if v < 3 else "test", f"video{v}", 25.0)
    yield Skipped("bad.avi", "no frame decodes")


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "c.h5"
    write_cache(path, _items(), ["a", "b"], "unit", (16, 16))
    return path


def test_round_trip_keeps_frames_labels_and_metadata(cache):
    info = read_cache_info(cache)
    assert info.classes == ("a", "b") and info.frame_size == (16, 16)
    assert info.length.tolist() == [10, 16, 7, 12]
    assert info.label.tolist() == [0, 1, 0, 1] and info.partition.tolist() == [0, 0, 0, 1]
    assert info.skipped == (Skipped("bad.avi", "no frame decodes"),)
    with h5py.File(cache) as f:
        for v, item in enumerate(i for i in _items() if isinstance(i, CacheItem)):
            off, n = info.offset[v], info.length[v]
            np.testing.assert_array_equal(f["frames"][off : off + n], item.frames)
            assert f["source"][v].decode() == item.source


def test_dataset_reads_the_same_clip_as_from_memory(cache):
    spec = ClipSpec(frames=8, stride=4, size=16)
    ds = H5ClipDataset(cache, "train", spec, train=False,
                       transform=ClipTransform(16, train=False))
    assert len(ds) == 3 and ds.labels() == [0, 1, 0]
    item = [i for i in _items() if isinstance(i, CacheItem)][1]  # 16 frames: centre window 4..11
    sample = ds[1]
    expected = ClipTransform(16, train=False)(item.frames[4:12])
    torch.testing.assert_close(sample.video[0], expected, rtol=0, atol=0)
    short = ds[2].video[0]  # 7 frames < 8: last frame repeated
    torch.testing.assert_close(short[7], short[6], rtol=0, atol=0)


def test_dataloader_workers_give_the_same_batches_as_one_process(cache):
    spec = ClipSpec(frames=4, stride=2, size=12)
    ds = H5ClipDataset(cache, "train", spec, train=True, seed=5)
    one = [b.video for b in DataLoader(ds, batch_size=2, collate_fn=collate_clips)]
    two = [b.video for b in DataLoader(ds, batch_size=2, collate_fn=collate_clips, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    ds.set_epoch(1)
    other = [b.video for b in DataLoader(ds, batch_size=2, collate_fn=collate_clips)]
    assert not all(torch.equal(a, b) for a, b in zip(one, other, strict=True))


def test_failed_write_leaves_no_file(tmp_path):
    def broken():
        yield next(_items())
        raise RuntimeError("disk full")

    out = tmp_path / "c.h5"
    with pytest.raises(RuntimeError):
        write_cache(out, broken(), ["a"], "unit", (16, 16))
    assert list(tmp_path.iterdir()) == []


def test_nothing_readable_is_an_error_and_keeps_an_existing_cache(tmp_path, cache):
    before = cache.read_bytes()
    with pytest.raises(DataError, match="no video could be read"):
        write_cache(cache, iter([Skipped("x.avi", "empty")]), ["a"], "unit", (16, 16), overwrite=True)
    assert cache.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]


def _corrupt(path, how):
    with h5py.File(path, "a") as f:
        if how == "missing":
            del f["label"]
        elif how == "version":
            f.attrs["format_version"] = 99
        elif how == "dtype":
            del f["offset"]
            f.create_dataset("offset", data=np.zeros(4, np.float32))
        elif how == "rows":
            del f["fps"]
            f.create_dataset("fps", data=np.zeros(3, np.float32))
        elif how == "range":
            f["length"][3] = 10_000
        elif how == "label":
            f["label"][0] = 7


@pytest.mark.parametrize("how, field", [
    ("missing", "/label"), ("version", "format_version"), ("dtype", "/offset"),
    ("rows", "/fps"), ("range", "/length"), ("label", "/label"),
])
def test_malformed_cache_is_rejected_naming_the_field(cache, how, field):
    _corrupt(cache, how)
    with pytest.raises(CacheFormatError, match=field) as err:
        read_cache_info(cache)
    assert str(cache) in str(err.value)


def test_not_hdf5_or_missing(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    with pytest.raises(CacheFormatError, match="not a readable HDF5"):
        read_cache_info(bad)
    with pytest.raises(CacheFormatError, match="no such cache"):
        read_cache_info(tmp_path / "nope.h5")
