"""``simulate --workers 2``: the clips split over two processes, each with its own Lava networks,
give the report of one process (counts add up exactly; only the speeds differ)."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_TRAIN, liven_run

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train

SPEEDS = ("steps_per_second", "lava_steps_per_second")


def _without_speeds(obj):
    if isinstance(obj, dict):
        return {k: _without_speeds(v) for k, v in obj.items() if k not in SPEEDS}
    if isinstance(obj, list):
        return [_without_speeds(v) for v in obj]
    return obj


@pytest.mark.lava
@pytest.mark.slow
def test_two_workers_give_the_serial_report(tmp_path, capsys):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1"]), "hybrid", run)
    liven_run(run)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    reports = {}
    for workers in (1, 2):
        capsys.readouterr()
        assert main(["simulate", str(out), "--clips", "5", "--workers", str(workers), "--json"]) == 0
        reports[workers] = json.loads(capsys.readouterr().out)
    serial, sharded = reports[1], reports[2]
    assert serial["spike_mismatch"] == 0 and serial["clips"] == 5
    assert _without_speeds(sharded) == _without_speeds(serial)
    for stage in serial["stages"]:  # the counts behind the rates: every layer spiked, all neuron-steps seen
        assert all(s > 0 for s in stage["layer_spikes"]) and stage["clips"] == 5 * 2  # 2 key-frame groups
