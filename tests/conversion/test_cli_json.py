"""``respike-nm <command> --json``: stdout is exactly one JSON document for every command, whatever a
dependency prints on import (lava-dl prints a warning on stdout when the Prophesee toolbox is absent).

Each command runs in a fresh interpreter, as a user's pipe ``respike-nm ... --json | jq`` would, so
that import-time output is not hidden by modules an earlier test already loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_TRAIN, frame_pattern, liven_run, write_video

ROOT = Path(__file__).resolve().parents[2]
SETS = [a for s in SMALL_TRAIN + ["train.epochs=1"] for a in ("--set", s)]


def _json(*argv: str):
    proc = subprocess.run([sys.executable, "-m", "respike_nm.cli.main", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{' '.join(argv[:2])}: stdout is not one JSON document ({exc}):\n"
                             f"{proc.stdout[:500]}") from None


@pytest.mark.lava
def test_every_command_prints_one_json_document(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    summary = _json("train", "--model", "hybrid", "--out", str(run), "--quiet", "--json", *SETS)
    assert summary["model"] == "hybrid" and summary["epochs"] == 1
    assert _json("train", "--out", str(tmp_path / "dry"), "--dry-run", "--json", *SETS)["classes"] == 4
    assert _json("eval", str(run), "--json")["model"] == "hybrid"
    liven_run(run)  # every SNN layer fires: the simulation below compares them all
    assert len(_json("export", str(run), "--out", str(export), "--json")["manifest"]["stages"]) == 3
    assert _json("map", str(export), "--json")["layers"]
    verified = _json("simulate", str(export), "--clips", "2", "--json")
    assert verified["spike_mismatch"] == 0 and verified["layers_fired"] == verified["layers"] == 9
    assert _json("energy", str(run), "--out", str(tmp_path / "energy"), "--clips", "2", "--json")["energy"]
    assert _json("nir", str(run), "--out", str(tmp_path / "nir"), "--json")
    video = tmp_path / "clip.mov"
    write_video(video, frame_pattern(12, 40, 48))
    assert _json("data", "inspect", str(video), "--json", "--frames", "8", "--size", "32")["decoded"] == 1
    assert _json("data", "cache", "--dataset", "synthetic-motion", "--out", str(tmp_path / "c.h5"),
                 "--json")["videos"] > 0
    for what in ("presets", "datasets", "profiles", "models"):
        assert _json("list", what, "--json")
