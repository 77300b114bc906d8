"""``eval``, ``energy`` and ``simulate`` under ``torchrun``: each rank takes its contiguous part of the
clips, rank 0 gathers and merges, and the result equals one process's (counts add up exactly; for
``simulate`` only the speeds differ). Two CPU processes on gloo, launched as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import SMALL_TRAIN, liven_run
from test_simulate_workers import _without_speeds

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.ranks import Launch, launch, part, split
from respike_nm.train.loop import train


@pytest.mark.parametrize("items, parts", [(0, 2), (1, 3), (5, 2), (7, 3), (12, 4), (3, 5)])
def test_parts_are_contiguous_and_cover_every_item_once(items, parts):
    slices = [list(part(range(items), r, parts)) for r in range(parts)]
    assert sum(slices, []) == list(range(items))  # in order, each item once
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [list(s) for s in split(range(items), parts)] == [s for s in slices if s]  # no empty shard


def test_launch_reads_torchruns_environment(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch() == Launch(0, 1, 0) and launch().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch() == Launch(3, 4, 1) and not launch().main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 is not a rank of WORLD_SIZE=4"):
        launch()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="must be integers"):
        launch()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks") / "run"
    # 4 classes x 5 test videos = 20 items, batches of 4: 5 batches, ranks take 3 + 2
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1", "data.test_per_class=5"]),
          "hybrid", out)
    liven_run(out)  # every SNN layer spikes, so the merged spike counts are not all zeros
    return out


def _torchrun(*args: str) -> str:
    """``torchrun --standalone --nproc_per_node=2 -m respike_nm.cli.main ARGS``: rank 0's stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "respike_nm.cli.main", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_eval_and_energy_on_two_ranks_equal_one_process(run, tmp_path, capsys):
    assert main(["eval", str(run), "--json"]) == 0
    serial = json.loads(capsys.readouterr().out)
    ranked = json.loads(_torchrun("eval", str(run), "--json"))  # only rank 0 prints
    assert ranked == serial and serial["clips"] == 20
    energy = ["energy", str(run), "--clips", "5", "--batch", "2", "--targets", "h100,loihi"]
    assert main([*energy, "--out", str(tmp_path / "one")]) == 0
    _torchrun(*energy, "--out", str(tmp_path / "two"))  # batches 3: ranks count 2 + 1
    one, two = (json.loads((tmp_path / d / "energy.json").read_text()) for d in ("one", "two"))
    assert two == one and one["geometry"]["clips"] == 5
    assert sum(c["spikes_out"] for c in one["counts"]["layers"] if c["branch"] == "snn") > 0
    # one batch for two ranks: rank 1 has nothing to count and sends nothing
    single = ["energy", str(run), "--clips", "2", "--batch", "2", "--targets", "h100,loihi"]
    assert main([*single, "--out", str(tmp_path / "one1")]) == 0
    _torchrun(*single, "--out", str(tmp_path / "two1"))
    one, two = (json.loads((tmp_path / d / "energy.json").read_text()) for d in ("one1", "two1"))
    assert two == one and one["geometry"]["clips"] == 2


@pytest.mark.lava
@pytest.mark.slow
def test_simulate_on_two_ranks_with_two_workers_each_equals_one_process(run, tmp_path, capsys):
    """5 clips: rank 0 takes 3 (its workers 2 + 1), rank 1 takes 2 (1 + 1); each worker runs and stops
    its own Lava networks. The report rank 0 writes equals one process's, speeds aside."""
    export = tmp_path / "export"
    assert main(["export", str(run), "--out", str(export)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(export), "--clips", "5", "--json"]) == 0
    serial = json.loads(capsys.readouterr().out)
    (export / "verify.json").unlink()
    ranked = json.loads(_torchrun("simulate", str(export), "--clips", "5", "--workers", "2", "--json"))
    assert json.loads((export / "verify.json").read_text()) == ranked  # written once, by rank 0
    assert _without_speeds(ranked) == _without_speeds(serial)
    assert serial["spike_mismatch"] == 0 and serial["clips"] == 5
    assert all(s > 0 for stage in serial["stages"] for s in stage["layer_spikes"])
