"""``respike-nm demo --quick``: every stage runs, the summary holds what each stage produced."""

from __future__ import annotations

import json

import pytest
import torch

from respike_nm.cli import demo
from respike_nm.cli.main import main
from respike_nm.data.transforms import normalize
from respike_nm.hardware import builtin_profiles
from respike_nm.train.builder import build_datasets
from respike_nm.train.run import load_run


@pytest.mark.lava
@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_summarises_them(tmp_path, capsys):
    out = tmp_path / "demo"
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == s  # stdout: exactly the summary
    assert [st["stage"].split(":")[0] for st in s["stages"]] == [
        "data", "train", "train", "train", "eval", "eval", "eval", "export", "simulate", "energy"]
    # The accuracies are the runs' checkpoints evaluated again, here, on their test sets: a forward
    # pass of each loaded model over every test clip, counted without the library's evaluate()
    for m in ("hybrid", "ann", "snn"):
        model, cfg, _ = load_run(out / "runs" / m)
        model.eval()
        _, test, _, _ = build_datasets(cfg)
        hits = clips = 0
        with torch.no_grad():
            for i in range(len(test)):
                sample = test[i]
                logits = model(normalize(sample.video[None]))[0]  # [K, classes]
                hits += int((logits.argmax(-1) == sample.label).sum())
                clips += logits.shape[0]
        assert s["accuracy"][m]["test_top1"] == pytest.approx(hits / clips)
    # Verification: the quick run's deep SNN layers are silent, so the summary must not present the
    # check as a test of them. It states the layers that fired, counted here from the per-layer
    # reference spikes of verify.json (bit-exactness itself: tests/conversion/test_verification.py).
    v = json.loads((out / "hybrid-lava" / "verify.json").read_text())
    fired = [f"stage{st['stage']} {name}" for st in v["stages"]
             for name, n in zip(st["layers"], st["layer_spikes"], strict=True) if n]
    ver = s["verification"]
    assert ver["layers"] == sum(len(st["layers"]) for st in v["stages"]) == 9
    assert ver["layers_fired"] == len(fired) and len(ver["silent_layers"]) == 9 - len(fired)
    assert not set(fired) & set(ver["silent_layers"])
    # Energy: a row for every shipped profile in some plan, each total > 0 and memory on top.
    report = json.loads((out / "energy" / "energy.json").read_text())
    used = {e["host"] for e in report["energy"]} | {e["chip"] for e in report["energy"] if e["chip"]}
    assert used == set(builtin_profiles())
    assert len(s["energy"]["rows"]) == len(report["energy"])
    assert all(r["uj_per_clip_with_memory"] > r["uj_per_clip"] > 0 for r in s["energy"]["rows"])
    for png in s["figures"]:
        assert (out / png).stat().st_size > 1000, png
    md = (out / "summary.md").read_text()
    assert f"over all 9 layers, prediction agreement {ver['prediction_agreement']:.3f}" in md
    assert "| hybrid |" in md
    if ver["silent_layers"]:
        assert f"Only {len(fired)} of 9 layers fired" in md and ver["silent_layers"][0] in md


def test_a_failing_stage_stops_the_demo_and_is_named(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_data(out):
        calls.append("data")
        raise FileNotFoundError("no frames")

    monkeypatch.setattr(demo, "_data", fake_data)
    monkeypatch.setattr(demo, "_train", lambda *a: calls.append("train"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "demo stage 'data: decompose synthetic-motion clips" in err and "no frames" in err
    assert calls == ["data"]  # nothing after the failing stage ran
    assert not (tmp_path / "d" / "summary.json").exists()
