"""Start-up of the command line: a wrong path is refused before torch is imported, and what third-party
imports print at start-up stays off the terminal unless ``--debug``. Each in a fresh interpreter."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from conversion.manifest import MANIFEST_NAME
from respike_nm import cli
from respike_nm.cli.main import build_parser
from respike_nm.train.loop import CHECKPOINT

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/respike"
PATH_COMMANDS = [
    ["eval", MISSING],
    ["export", MISSING, "--out", "/tmp/respike-never"],
    ["simulate", MISSING],
    ["map", MISSING],
    ["nir", MISSING, "--out", "/tmp/respike-never"],
    ["energy", MISSING, "--out", "/tmp/respike-never"],
    ["predict", MISSING, "clip.mp4"],
    ["train", "--config", f"{MISSING}.yaml", "--out", "/tmp/respike-never"],
    ["train", "--data-root", MISSING, "--dataset", "folder", "--out", "/tmp/respike-never"],
    ["crossval", "--data-root", MISSING, "--folds", "2", "--out", "/tmp/respike-never"],
    ["data", "cache", "--dataset", "folder", "--data-root", MISSING, "--out", "/tmp/respike-never.h5"],
]
REFUSE = """
import contextlib, io, json, sys
from respike_nm.cli.main import main
rows = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    rows.append([rc, err.getvalue(), "torch" in sys.modules])
print(json.dumps(rows))
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_missing_path_is_refused_before_torch_is_imported():
    proc = _run("-c", REFUSE, json.dumps(PATH_COMMANDS))
    assert proc.returncode == 0, proc.stderr
    for argv, (rc, err, torch_loaded) in zip(PATH_COMMANDS, json.loads(proc.stdout), strict=True):
        assert rc == 2 and not torch_loaded, (argv, rc, err)
        assert err.count("\n") == 1 and err.startswith(f"respike-nm: error: {MISSING}"), (argv, err)


def test_every_input_path_of_every_command_is_checked():
    """A new path option must join the pre-import check (or be an output, or data inspect's list)."""
    checked = {*cli.RUN_DIRS, *cli.EXPORT_DIRS, *cli.EXISTING, "config"}
    seen = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.type is Path or action.dest in ("data_root", "config"):
                seen.add(action.dest)

    walk(build_parser())
    assert seen - {"out", "paths"} <= checked, seen - checked
    assert (cli.CHECKPOINT, cli.MANIFEST) == (CHECKPOINT, MANIFEST_NAME)


def test_lava_dl_start_up_messages_show_only_with_debug(tmp_path):
    """A command that imports lava-dl (simulate, then refusing a manifest that is not JSON): one line."""
    (tmp_path / "manifest.json").write_text("{not json")
    quiet = _run("-m", "respike_nm.cli.main", "simulate", str(tmp_path))
    assert quiet.returncode == 2 and quiet.stdout == ""
    assert quiet.stderr.splitlines() == [quiet.stderr.strip()], quiet.stderr
    assert "manifest.json" in quiet.stderr and "Prophesee" not in quiet.stderr
    assert "CUDA" not in quiet.stderr

    loud = _run("-m", "respike_nm.cli.main", "--debug", "simulate", str(tmp_path))
    assert loud.returncode == 2 and loud.stdout == ""
    noise = [line for line in loud.stderr.splitlines() if line.startswith("DEBUG respike_nm.lavadl:")]
    assert any("Prophesee" in line for line in noise), loud.stderr  # lava-dl 0.6.0, no toolbox
