"""SIGTERM and SIGINT during ``simulate``: every Lava process stops and its shared memory is released.

``timeout``, ``docker stop`` and SLURM stop a job with SIGTERM; Ctrl-C sends SIGINT. The command
runs in its own session, the test collects every descendant while Lava runs (process models and
multiprocessing's resource tracker), sends the signal to the command and checks that each of them
is gone and that no segment it created remains in /dev/shm.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import SMALL_TRAIN

from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")


def _children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(d.name)] = int(fields[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, todo = _children(), set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        todo += list(kids - found)
        found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from conversion.pipeline import export_run

    base = tmp_path_factory.mktemp("sig")
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1", "data.test_per_class=50"]),
          "hybrid", base / "run")
    export_run(base / "run", base / "export")
    return base / "export"


def _signal_while_lava_runs(args: list[str], sig: int, processes: int,
                            ready: str | None = None) -> tuple[int, str, str]:
    """Run ``respike-nm ARGS`` in its own session; once it has ``processes`` descendants and a new
    /dev/shm segment (Lava is running), and ``ready`` (if given) has appeared on its stdout, send
    ``sig`` to the command alone (as ``kill PID`` does). Returns its exit code, stdout and stderr,
    after checking that every descendant seen has ended and no segment it created is left. Every wait
    is for a condition, polled, so a busy machine only makes it slower."""
    before = set(os.listdir(SHM))
    proc = subprocess.Popen([sys.executable, "-m", "respike_nm.cli.main", *args], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    err_lines: list[str] = []
    errors = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    errors.start()
    seen: set[int] = set()
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _descendants(proc.pid)
            printed = ready is None or any(ready in line for line in list(lines))
            if len(seen) >= processes and set(os.listdir(SHM)) - before and printed:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"{args[0]} ended before the signal: {''.join(err_lines)[-2000:]}"
        seen |= _descendants(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=60)
    errors.join(timeout=60)
    for _ in range(250):  # the descendants are reaped by their parents: wait until they are
        left = {p for p in seen if _alive(p)}
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"processes left running: {sorted(left)}"
    assert not set(os.listdir(SHM)) - before, "shared-memory segments left in /dev/shm"
    return proc.returncode, "".join(lines), "".join(err_lines)


@pytest.mark.lava
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_simulate_leaves_no_process_and_no_segment(export, sig, code, workers):
    """The signal goes to the command's process alone (as ``kill PID`` sends it); with workers, the
    command passes it on to them, and each stops its own Lava networks."""
    args = ["simulate", str(export), "--clips", "200", "--workers", str(workers)]
    rc, _, err = _signal_while_lava_runs(args, sig, 3 * workers)
    assert rc == code, err[-2000:]
    assert "Traceback" not in err
    assert not (export / "verify.json").exists()  # no report from a stopped run


@pytest.mark.lava
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_predict_lava_stops_its_running_networks(export, tmp_path, sig, code):
    """predict --lava keeps three stage networks running between windows; a signal in a Lava run
    or between windows stops them all."""
    from test_predict import _video

    video = _video(tmp_path / "long.avi", 400)
    run = json.loads((export / "manifest.json").read_text())["run_dir"]
    rc, out, err = _signal_while_lava_runs(["predict", run, str(video), "--lava", str(export), "--quiet"],
                                           sig, 20, ready=" window 0: ")  # the three networks run
    assert rc == code, err[-2000:]
    assert "Traceback" not in err and " window 0: " in out  # it was predicting
