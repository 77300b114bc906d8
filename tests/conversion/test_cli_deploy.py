"""export + simulate from the command line on a tiny trained hybrid: bit-exact, same predictions."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_TRAIN, liven_run

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train

SMALL = SMALL_TRAIN + ["train.epochs=1"]


@pytest.mark.lava
@pytest.mark.parametrize("fusion", ["late", "multiscale"])
def test_export_then_simulate_is_bit_exact(tmp_path, capsys, fusion):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL + [f"model.fusion={fusion}"]), "hybrid", run)
    liven_run(run)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["stages"]) == (1 if fusion == "late" else 3)
    assert len(manifest["checkpoint_sha256"]) == 64 and "lava-nc" in manifest["versions"]
    capsys.readouterr()
    assert main(["simulate", str(out), "--clips", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["spike_mismatch"] == 0 and res["model_mismatch"] == 0
    assert res["prediction_agreement"] == 1.0 and res["clips"] == 3
    assert json.loads((out / "verify.json").read_text()) == res
    # every layer fires, but not everywhere: zero mismatch is not a match of silent layers
    rates = [r for s in res["stages"] for r in s["layer_rates"]]
    assert len(rates) == 9 and all(0.01 < r < 0.9 for r in rates), rates
    assert res["passed"] and res["layers_fired"] == res["layers"] == 9 and res["silent_layers"] == []


def test_export_refuses_the_resnet_snn_and_leaves_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL + ["model.snn_arch=resnet"]), "hybrid", run)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "residual add" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["run"]
