"""Output folders the file system refuses: read-only or full. Each command says so in one line
naming the file or folder the user asked for (never a hidden temporary name), exits 2, and leaves
nothing half-written behind.

Root writes through ``chmod``, so the refusals come from real mounts: a read-only tmpfs and a
tmpfs too small for a checkpoint (skipped where mounting is not permitted).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SMALL_TRAIN

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train

SETS = [a for s in [*SMALL_TRAIN, "train.epochs=1"] for a in ("--set", s)]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, options)``: a fresh tmpfs at ``tmp_path / name``, unmounted after the test."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: a read-only or full folder needs a tmpfs (root ignores chmod)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): a read-only or full "
                        "folder needs one (root ignores chmod)")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train(apply_overrides(load_config("tiny"), [*SMALL_TRAIN, "train.epochs=1"]), "hybrid", run)
    return run


def _error(capsys) -> str:
    """The one error line (after any progress bars)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("respike-nm: error: ") and "Traceback" not in "\n".join(err), err
    assert ".tmp-" not in err[-1]
    return err[-1]


def test_train_into_a_read_only_folder(tmpfs, capsys):
    ro = tmpfs("ro", "ro,size=1m")
    assert main(["train", "--out", str(ro), "--quiet", *SETS]) == 2
    line = _error(capsys)
    assert f"{ro}: read-only file system" in line
    assert main(["train", "--out", str(ro / "run"), "--quiet", *SETS]) == 2
    line = _error(capsys)
    assert f"{ro / 'run'}: " in line and "read-only file system" in line.lower()
    assert list(ro.iterdir()) == []


def test_train_on_a_full_disk_leaves_nothing_and_a_new_run_then_works(tmpfs, capsys):
    full = tmpfs("full", "size=300k")
    out = full / "run"
    assert main(["train", "--out", str(out), "--quiet", *SETS]) == 2
    assert f"{out / 'checkpoint.pt'}: no space left on device" in _error(capsys)
    assert list(full.iterdir()) == []  # no empty run folder that neither a new run nor --resume takes
    out.mkdir()  # a folder the user made: kept, and left empty
    assert main(["train", "--out", str(out), "--quiet", *SETS]) == 2
    assert f"{out / 'checkpoint.pt'}: no space left on device" in _error(capsys)
    assert list(out.iterdir()) == []
    remount(full, "size=64m")
    assert main(["train", "--out", str(out), "--quiet", *SETS]) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "summary.json").is_file()


def test_energy_into_a_read_only_or_full_folder(small_run, tmpfs, capsys):
    ro = tmpfs("ro", "ro,size=1m")
    argv = ["energy", str(small_run), "--clips", "1", "--batch", "1", "--targets", "loihi2"]
    assert main([*argv, "--out", str(ro / "report")]) == 2
    assert f"{ro / 'report'}: read-only file system" in _error(capsys)
    full = tmpfs("full", "size=8k")
    assert main([*argv, "--out", str(full / "report")]) == 2
    line = _error(capsys)
    assert f"{full / 'report'}" in line and "no space left on device" in line
    assert list(full.iterdir()) == []


def test_data_cache_and_inspect_into_a_read_only_folder(tmpfs, capsys):
    ro = tmpfs("ro", "ro,size=1m")
    assert main(["data", "cache", "--dataset", "synthetic-motion", "--frame-size", "16x16",
                 "--out", str(ro / "clips.h5")]) == 2
    assert f"{ro / 'clips.h5'}: read-only file system" in _error(capsys)
    assert main(["data", "inspect", "--synthetic", "1", "--frames", "8", "--stride", "4", "--size", "16",
                 "--out", str(ro / "strips")]) == 2
    line = _error(capsys)
    assert str(ro / "strips") in line and "read-only file system" in line.lower()
