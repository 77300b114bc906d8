"""``data cache`` never loses a file: it refuses an existing --out (--overwrite replaces only a clip
cache), a full disk is one line naming the file, SIGTERM/SIGINT stop it; nothing half-written stays.

The full-disk and signal tests run the command in a subprocess: the crash they guard against (a
segmentation fault) would take the test process with it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import frame_pattern, write_video

from respike_nm.cli.main import main
from respike_nm.data.cache import CacheItem, CacheStopped, read_cache_info, write_cache

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ["data", "cache", "--dataset", "synthetic-motion"]  # 600 videos of 16 x 64 x 64


def _folder(tmp_path: Path) -> Path:
    """Two classes of one tiny video each."""
    root = tmp_path / "clips"
    for c, n in (("a", 6), ("b", 5)):
        (root / c).mkdir(parents=True)
        write_video(root / c / "v.mov", frame_pattern(n, 16, 16))
    return root


def _cache_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "cache", "--dataset", "folder", "--data-root", str(root), "--frame-size", "16x16",
            "--out", str(out), *extra]


def _tiny_cache(path: Path) -> Path:
    write_cache(path, [CacheItem(frame_pattern(2, 16, 16), 0, "train", "v0", 25.0)], ["a"], "unit",
                (16, 16))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("respike-nm: error: "), err
    return err[-1]


def test_cache_refuses_an_existing_out_without_overwrite(tmp_path, capsys):
    root = _folder(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    cache = _tiny_cache(tmp_path / "old.h5")
    before = cache.read_bytes()
    for out in (notes, cache):
        assert main(_cache_args(root, out)) == 2
        line = _error_line(capsys)
        assert str(out) in line and "already exists" in line and "--overwrite" in line
    assert notes.read_text() == "my notes\n" and cache.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "notes.txt", "old.h5"]


def test_overwrite_replaces_a_clip_cache_and_nothing_else(tmp_path, capsys):
    root = _folder(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    other = tmp_path / "other.h5"  # HDF5, but not ours
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    for out in (notes, other, tmp_path / "clips"):
        before = None if out.is_dir() else out.read_bytes()
        assert main(_cache_args(root, out, "--overwrite")) == 2
        line = _error_line(capsys)
        assert str(out) in line and ("not a clip cache" in line or "is a folder" in line)
        assert out.is_dir() or out.read_bytes() == before
    cache = _tiny_cache(tmp_path / "c.h5")
    assert main(_cache_args(root, cache, "--overwrite", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 2
    assert read_cache_info(cache).length.tolist() == [6, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "clips", "notes.txt", "other.h5"]


def test_stop_drops_the_file_and_keeps_the_old_cache(tmp_path):
    cache = _tiny_cache(tmp_path / "c.h5")
    before = cache.read_bytes()
    items = (CacheItem(frame_pattern(3, 16, 16), 0, "train", f"v{i}", 25.0) for i in range(5))
    asked = []
    with pytest.raises(CacheStopped):
        write_cache(cache, items, ["a"], "unit", (16, 16), overwrite=True,
                    stop=lambda: asked.append(1) or len(asked) > 2)
    assert len(asked) == 3 and cache.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (needs root, or a container that allows mounting); unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(where)],
                              capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"cannot run mount ({exc})")
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "respike_nm.cli.main", *args], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_full_disk_is_an_error_naming_the_file_and_keeps_what_was_there(small_disk, existing):
    out = small_disk / "c.h5"
    extra = []
    if existing:
        _tiny_cache(out)
        extra = ["--overwrite"]
    before = out.read_bytes() if existing else None
    proc = _cli(*SYNTHETIC, "--out", str(out), *extra)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("respike-nm: error: ") and str(out) in line, line
    assert "no space left" in line.lower(), line
    assert [p.name for p in small_disk.iterdir()] == (["c.h5"] if existing else [])
    if existing:
        assert out.read_bytes() == before


def _writing(folder: Path) -> bool:
    """Whether the command's temporary file in ``folder`` holds a few MB (videos are being written)."""
    tmp = next(iter(folder.glob(".c.tmp-*")), None)
    try:
        return tmp is not None and tmp.stat().st_size > 4_000_000
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig, code, word", [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted"),
])
def test_signal_while_writing_stops_and_leaves_no_file(tmp_path, sig, code, word):
    """Three commands at once, each sent the signal once its temporary file holds a few MB (of the
    71 MB it would). The write used to swallow the signal now and then (raised inside a weakref
    callback): 5 of 8 tries ran on and exited 0 with the whole cache written."""
    procs = {}
    for i in range(3):
        (tmp_path / f"try{i}").mkdir()
        procs[tmp_path / f"try{i}"] = _cli(*SYNTHETIC, "--out", str(tmp_path / f"try{i}" / "c.h5"))
    waiting = set(procs)
    while waiting:
        for folder in list(waiting):
            if procs[folder].poll() is not None:  # ended before it wrote: the checks below say how
                waiting.discard(folder)
            elif _writing(folder):
                procs[folder].send_signal(sig)
                waiting.discard(folder)
        time.sleep(0.005)
    for folder, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, f"{folder.name}: exit {proc.returncode}\n{err[-2000:]}"
        assert err.strip().splitlines()[-1] == f"respike-nm: {word}"
        assert list(folder.iterdir()) == [], f"{folder.name}: left {list(folder.iterdir())}"
