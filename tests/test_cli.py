"""The command line: data inspect and data cache, run as a user would (in-process)."""

from __future__ import annotations

import json

import h5py
import numpy as np
from conftest import frame_pattern, write_video

from respike_nm.cli.main import main


def _tree(tmp_path):
    root = tmp_path / "clips"
    (root / "a").mkdir(parents=True)
    moving = np.stack([np.roll(frame_pattern(1, 40, 48)[0], 3 * t, axis=1) for t in range(20)])
    write_video(root / "a" / "moving.mov", moving)
    write_video(root / "a" / "still.mov", np.repeat(frame_pattern(1, 40, 48), 20, axis=0))
    (root / "a" / "broken.mp4").write_bytes(b"not a video" * 10)
    return root


def test_inspect_json_reports_decoded_and_failed(tmp_path, capsys):
    root = _tree(tmp_path)
    rc = main(["data", "inspect", str(root), "--json", "--frames", "8", "--stride", "4",
               "--size", "32", "--out", str(tmp_path / "png")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1  # one clip failed
    assert out["decoded"] == 2
    assert [f["path"] for f in out["failed"]] == [str(root / "a" / "broken.mp4")]
    clips = {c["path"].split("/")[-1]: c for c in out["clips"]}
    assert clips["moving.mov"]["frames"] == 20 and clips["moving.mov"]["key_frames"] == 2
    assert clips["still.mov"]["residual_energy"] == 0.0 < clips["moving.mov"]["residual_energy"]
    for c in clips.values():
        with open(c["strip"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_inspect_table_and_bad_stride(tmp_path, capsys):
    root = _tree(tmp_path)
    assert main(["data", "inspect", str(root / "a" / "still.mov"), "--size", "32"]) == 0
    assert "1 decoded, 0 failed" in capsys.readouterr().out
    assert main(["data", "inspect", str(root), "--frames", "10", "--stride", "4"]) == 2
    err = capsys.readouterr().err
    assert "T=10" in err and "s=4" in err and "Traceback" not in err


def test_inspect_missing_path_is_a_failure_not_a_crash(tmp_path, capsys):
    rc = main(["data", "inspect", str(tmp_path / "nope.avi"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["decoded"] == 0
    assert out["failed"][0]["error"] == "no such file"


def test_cache_folder_dataset_skips_bad_files(tmp_path, capsys):
    root = _tree(tmp_path)
    (root / "b").mkdir()
    write_video(root / "b" / "x.mov", frame_pattern(12, 40, 48))
    write_video(root / "b" / "y.mov", frame_pattern(9, 40, 48))
    out = tmp_path / "c.h5"
    rc = main(["data", "cache", "--dataset", "folder", "--data-root", str(root),
               "--frame-size", "24x32", "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["videos"] == 4 and summary["frames"] == 20 + 20 + 12 + 9
    assert [s["path"].split("/")[-1] for s in summary["skipped"]] == ["broken.mp4"]
    with h5py.File(out) as f:
        assert f["frames"].shape == (61, 24, 32, 3)
        assert sorted(f["label"][:].tolist()) == [0, 0, 1, 1]


def test_cache_without_root_is_a_clear_error(tmp_path, capsys):
    rc = main(["data", "cache", "--dataset", "ucf101", "--out", str(tmp_path / "x.h5")])
    assert rc == 2 and "--data-root" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
