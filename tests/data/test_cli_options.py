"""``data inspect`` and ``data cache`` options: counts that cannot be 0 or negative are refused while
parsing, naming the option; every inspected clip gets a figure of its own."""

from __future__ import annotations

import json

import pytest
from conftest import frame_pattern, write_video

from respike_nm.cli.main import main


@pytest.mark.parametrize("args, option, least", [
    (["data", "cache", "--dataset", "synthetic-motion", "--max-frames", "0"], "--max-frames", 1),
    (["data", "cache", "--dataset", "synthetic-motion", "--max-frames", "-2"], "--max-frames", 1),
    (["data", "cache", "--dataset", "ucf101", "--split", "0"], "--split", 1),
    (["data", "cache", "--dataset", "synthetic-motion", "--seed", "-1"], "--seed", 0),
    (["data", "inspect", "--synthetic", "1", "--frames", "0"], "--frames", 1),
    (["data", "inspect", "--synthetic", "1", "--stride", "0"], "--stride", 1),
    (["data", "inspect", "--synthetic", "1", "--size", "0"], "--size", 1),
    (["data", "inspect", "--synthetic", "-1"], "--synthetic", 0),
    (["crossval", "--data-root", ".", "--folds", "2", "--group-pattern", "P(\\d+)",
      "--group-divisor", "0", "--dry-run"], "--group-divisor", 1),
])
def test_counts_out_of_range_are_refused_while_parsing(tmp_path, capsys, args, option, least):
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"argument {option}: must be at least {least}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_inspect_gives_names_differing_only_in_accents_a_strip_each(tmp_path, capsys):
    root = tmp_path / "clips" / "cafe"
    root.mkdir(parents=True)
    for i, name in enumerate(("café.mp4", "cafè.mp4")):
        write_video(root / name, frame_pattern(8 + 4 * i, 24, 32))
    png = tmp_path / "png"
    rc = main(["data", "inspect", str(tmp_path / "clips"), "--json", "--frames", "8", "--stride", "4",
               "--size", "16", "--out", str(png)])
    clips = json.loads(capsys.readouterr().out)["clips"]
    assert rc == 0 and len(clips) == 2
    strips = {c["strip"] for c in clips}
    assert len(strips) == 2 and {p.name for p in png.iterdir()} == {s.rsplit("/", 1)[1] for s in strips}
    assert all(s.rsplit("/", 1)[1].startswith("clips_cafe_caf_.mp4-") for s in strips)
