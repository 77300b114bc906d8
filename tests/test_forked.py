"""fork_map: results in item order; a worker's exception, or a signal to the parent alone, ends every
worker (each stops as the command would) instead of waiting for the others to finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from respike_nm.forked import fork_map

ROOT = Path(__file__).resolve().parents[1]


def _mark(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` whole: a reader that sees the file sees the pid (written to a hidden
    name, then renamed; a plain write_text creates the file before its content is there)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(str(pid))
    os.replace(tmp, path)


def test_results_come_back_in_item_order_from_separate_processes():
    parent = os.getpid()
    out = fork_map(lambda x: (x * x, os.getpid()), [3, 1, 2])
    assert [r[0] for r in out] == [9, 1, 4]
    pids = {r[1] for r in out}
    assert len(pids) == 3 and parent not in pids


def test_a_worker_exception_is_raised_and_the_other_workers_are_stopped(tmp_path):
    """Item 0 fails at once; item 1 would sleep for 10 minutes: fork_map raises item 0's error
    after ending item 1 (its marker shows it had started)."""
    def work(i):
        if i == 0:
            while not (tmp_path / "1").exists():
                time.sleep(0.01)
            raise ValueError("bad clip 0")
        _mark(tmp_path / "1", os.getpid())
        time.sleep(600)

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad clip 0"):
        fork_map(work, [0, 1])
    assert time.monotonic() - t0 < 300  # not the 600 s the second worker would have slept
    pid = int((tmp_path / "1").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from respike_nm import stopping
    from respike_nm.forked import fork_map

    marks = Path(sys.argv[1])

    def work(i):
        tmp = marks / f".{i}.tmp"
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, marks / str(i))  # the marker appears with its pid in it
        time.sleep(600)

    with stopping.install():
        try:
            fork_map(work, [0, 1])
        except stopping.Terminated:
            sys.exit(143)
        except KeyboardInterrupt:
            sys.exit(130)
""")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_parent_alone_ends_every_worker(tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, start_new_session=True,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("[0-9]"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        workers = [int(p.read_text()) for p in tmp_path.glob("[0-9]")]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)  # far less than the 600 s the workers would sleep
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    assert not [p for p in workers if Path(f"/proc/{p}").exists()], "workers left running"
