"""``respike-nm energy`` on a tiny trained hybrid: files, provenance, and an independent MAC count."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import SMALL_TRAIN

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

TARGETS = "h100,cmos45nm,loihi,truenorth"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("energy") / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1"]), "hybrid", out)
    return out


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "energy"
    assert main(["energy", str(run), "--clips", "3", "--targets", TARGETS, "--out", str(out)]) == 0
    return out, json.loads((out / "energy.json").read_text())


def test_plan_d_matches_an_independent_count_of_the_ann(run, report):
    from ptflops import get_model_complexity_info

    _, rep = report
    model, cfg, _ = load_run(run)
    size, frames = cfg.data.size, cfg.data.frames
    trunk, _ = get_model_complexity_info(model.ann.eval(), (3, size, size), as_strings=False, backend="aten",
                                         print_per_layer_stat=False, verbose=False)
    head = model.ann.feature_info.channels[-1] * model.spec.num_classes
    d = next(p for p in rep["plans"] if p["plan"] == "d")
    assert d["totals"]["gpu_mac"] == frames * (trunk + head)  # the trunk has no bias: aten agrees exactly


def test_every_row_adds_up_and_cites_its_figures(report):
    out, rep = report
    rows = rep["energy"]
    # the tiny run's 64x64 clips are too small for S3D's 7x7 pooling: skipped with its reason
    assert {(r["plan"], r["chip"]) for r in rows} == {
        ("a", None), ("d", None), ("b", "loihi"), ("b", "truenorth"), ("c", "loihi"), ("c", "truenorth"),
        ("e:r3d_18", None), ("e:mc3_18", None), ("e:r2plus1d_18", None)}
    assert "smaller than kernel size" in rep["skipped_plans"]["e:s3d"]
    assert {r["host"] for r in rows if not r["chip"]} == {"h100", "cmos45nm"}
    for r in rows:
        assert r["compute_pj"] == pytest.approx(sum(r["components_pj"].values()))
        assert r["compute_pj"] == pytest.approx(sum(r["layers_pj"].values()))
        priced = [f["energy_pj"] for f in r["figures"] if f["term"] != "memory"]
        assert r["compute_pj"] == pytest.approx(sum(priced))
        assert r["memory_pj"] > 0 and r["kinds"]
        for f in r["figures"]:  # provenance equals the shipped YAML, figure by figure
            assert rep["profiles"][f["profile"]]["path"] == f"hw_profiles/{f['profile']}.yaml"
            text = (ROOT / "hw_profiles" / f"{f['profile']}.yaml").read_text()
            raw = yaml.safe_load(text)["costs"][f["key"]]
            assert (f["value"], f["unit"], f["source"], f["kind"]) == (
                raw["value"], raw["unit"], raw["source"], raw["kind"])
    with open(out / "energy.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [(t["plan"], t["host"], t["chip"]) for t in table] == [(r["plan"], r["host"], r["chip"] or "")
                                                                   for r in rows]
    assert [float(t["compute_pj"]) for t in table] == pytest.approx([r["compute_pj"] for r in rows])
    for png in ("plans.png", "layers.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recorded_spikes_are_the_ones_the_snn_emits(run, report):
    """The chip plans' spike totals equal the spikes of a plain forward without any hook: the SNN's
    layers called one by one on the decomposed clips, fusing between stage networks, their outputs
    summed here."""
    import torch

    from respike_nm.data.decompose import decompose
    from respike_nm.data.transforms import normalize
    from respike_nm.train.builder import build_datasets

    _, rep = report
    model, cfg, _ = load_run(run, quantize=True)
    model.eval()
    _, test, _, _ = build_datasets(cfg)
    video = normalize(torch.stack([test[i].video[0] for i in range(3)]))
    spikes = 0.0
    with torch.no_grad():
        key, residual = decompose(video, model.spec.stride)
        ann = model.ann_features(key)
        x = model.snn_input(residual)
        for stage in model.stage_specs():
            for name, layer in zip(stage.names, stage.layers, strict=True):
                x = model.snn.run_stem(x) if name == "snn.stem" else layer(x)
                assert set(x.unique().tolist()) <= {0.0, 1.0}
                spikes += float(x.sum())
            if stage.fused_after is not None:
                x = model.fuse(stage.fused_after, x, ann)
    spikes /= 3
    assert spikes > 0
    c = next(p for p in rep["plans"] if p["plan"] == "c")
    assert c["totals"]["chip_spike"] == pytest.approx(spikes)
    assert rep["counts"]["totals"]["spikes"] == pytest.approx(spikes)


def test_bad_profile_and_existing_folder_are_one_line_errors(run, tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\ntarget: neuromorphic\ncosts:\n  synop: {value: -1, unit: pJ, source: x, "
                   "kind: measured}\n")
    out = tmp_path / "energy"
    assert main(["energy", str(run), "--targets", f"h100,{bad}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml.costs.synop.value" in err and "negative" in err and not out.exists()
    out.mkdir()
    assert main(["energy", str(run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_workers_give_the_same_report(run, tmp_path):
    """--workers 2 counts two shards of whole batches in forked processes; the added counts, and so
    every figure of energy.json, equal one process's. 5 clips in batches of 2: shards of 2+2 and 1."""
    reports = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert main(["energy", str(run), "--clips", "5", "--batch", "2", "--targets", TARGETS,
                     "--workers", str(workers), "--out", str(out)]) == 0
        reports[workers] = json.loads((out / "energy.json").read_text())
    assert reports[2] == reports[1]
    assert reports[1]["geometry"]["clips"] == 5
    layers = reports[1]["counts"]["layers"]
    assert sum(c["spikes_out"] for c in layers if c["branch"] == "snn") > 0  # the SNN's spikes were added


def test_logs_of_disjoint_batches_add_up_to_one_log(run):
    """merge_logs of two shards' totals equals the totals of counting both in one pass, layer by
    layer (and differs from either shard alone)."""
    from respike_nm.energy.counters import count_log, merge_logs
    from respike_nm.train.builder import test_clips

    model, cfg, _ = load_run(run, quantize=True)
    model.eval()
    video, _ = test_clips(cfg, 5)
    batches = [video[:2], video[2:4], video[4:]]
    whole, clips, shape = count_log(model, batches)
    first, second = count_log(model, batches[:2]), count_log(model, batches[2:])
    assert (first[1] + second[1], first[2]) == (clips, shape) == (5, shape)
    merged = merge_logs([first[0], second[0]])
    assert list(merged.layers) == list(whole.layers)
    assert merged.layers == whole.layers
    assert merged.layers != first[0].layers
    assert merged.snn_stage_shapes == whole.snn_stage_shapes
    assert merged.ann_stage_shapes == whole.ann_stage_shapes


def test_a_saved_report_reprices_like_counting_again_without_a_model(run, report, tmp_path, monkeypatch):
    """Re-pricing the counts kept in energy.json with other profiles, host and plans gives every figure
    that counting the run again with those settings gives; no run is loaded."""
    import respike_nm.train.run as run_module

    saved, _ = report
    again = tmp_path / "again"
    args = ["--targets", "a100,loihi2,spinnaker2", "--host", "a100", "--plans", "a,c,d,e:r2plus1d_18"]
    assert main(["energy", str(run), "--clips", "3", *args, "--out", str(again)]) == 0

    def no_model(*a, **k):
        raise AssertionError("re-pricing loaded a run")

    monkeypatch.setattr(run_module, "load_run", no_model)
    re = tmp_path / "re"
    assert main(["reprice", str(saved / "energy.json"), *args, "--out", str(re)]) == 0
    a, b = (json.loads((p / "energy.json").read_text()) for p in (again, re))
    assert [(r["plan"], r["host"], r["chip"]) for r in a["energy"]] == [
        (r["plan"], r["host"], r["chip"]) for r in b["energy"]]
    assert {r["plan"] for r in a["energy"]} == {"a", "c", "d", "e:r2plus1d_18"}
    for x, y in zip(a["energy"], b["energy"], strict=True):
        assert x["components_pj"] == pytest.approx(y["components_pj"], rel=1e-12)
        assert x["memory_pj"] == pytest.approx(y["memory_pj"], rel=1e-12)
    assert a["plans"] == b["plans"] and a["counts"] == b["counts"] and a["geometry"] == b["geometry"]


def test_reprice_refuses_a_report_without_counts_by_name(report, tmp_path, capsys):
    saved, rep = report
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**rep, "version": 1}))
    assert main(["reprice", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(old) in err and "count the run again" in err and not (tmp_path / "o").exists()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**rep, "geometry": {**rep["geometry"], "snn_stage_shapes": {"x": [1]}}}))
    assert main(["reprice", str(broken), "--out", str(tmp_path / "o")]) == 2
    assert "geometry.snn_stage_shapes" in capsys.readouterr().err


def test_price_paper_r18_against_r2plus1d_over_a_rate_sweep(tmp_path, capsys):
    """The one command of the paper-scale question: paper-r18 priced from shapes against R(2+1)D-18
    over a firing-rate sweep on every target, with the table, JSON, CSV and plot."""
    from respike_nm.energy.baselines import BASELINES

    out = tmp_path / "scale"
    assert main(["price", "paper-r18", "--sweep", "1", "20", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "break-even vs r2plus1d_18" in text and (out / "scale.png").stat().st_size > 10_000
    res = json.loads((out / "scale.json").read_text())
    # R(2+1)D-18 on the same 16 x 224 x 224 clips: 4x torchvision's documented 16 x 112 x 112 count
    assert res["dense_gmacs"]["e:r2plus1d_18"] == pytest.approx(4 * BASELINES["r2plus1d_18"].documented_gmacs,
                                                                rel=0.01)
    # every shipped GPU/CMOS host carries the baselines, every host x chip pair carries plan b
    hosts, chips = {"a100", "h100", "cmos45nm"}, {"loihi", "loihi2", "spinnaker", "spinnaker2", "truenorth"}
    rows = res["rows"]
    pairs = {(h, c) for h in hosts for c in chips}
    assert {(r["host"], r["chip"]) for r in rows if r["plan"] == "b"} == pairs
    assert {r["host"] for r in rows if r["plan"] == "e:r2plus1d_18"} == hosts
    assert sorted({r["rate"] for r in rows}) == pytest.approx([0.01, 0.01 * 20 ** 0.5, 0.2])
    for r in rows:
        assert sum(r["shares"].values()) == pytest.approx(1.0)
    # the break-even rate of every host x chip pair sits where its priced line crosses the baseline's
    for b in res["break_even"]:
        line = sorted((r["rate"], r["compute_pj"]) for r in rows
                      if (r["plan"], r["host"], r["chip"]) == (b["plan"], b["host"], b["chip"]))
        base = next(r["compute_pj"] for r in rows if (r["plan"], r["host"]) == (b["against"], b["host"]))
        below = [e < base for _, e in line]
        if b["compute_rate"] is None:
            assert set(below) == {b["compute_cheaper_at_zero"]}
        else:
            for rate, e in line:
                assert (e < base) == (rate < b["compute_rate"])


def test_price_with_a_runs_measured_rates(report, tmp_path):
    """--rates-from: the run's own per-layer firing rates; for the same architecture (the tiny preset's
    SNN, whatever the clip size) the depth mapping is the identity."""
    saved, rep = report
    out = tmp_path / "tiny-scale"
    assert main(["price", "tiny", "--rate", "5", "--rates-from", str(saved / "energy.json"),
                 "--classes", str(rep["geometry"]["num_classes"]), "--out", str(out)]) == 0
    res = json.loads((out / "scale.json").read_text())
    measured = [c["firing_rate"] for c in rep["counts"]["layers"] if c["branch"] == "snn"]
    assert res["measured_rates"]["mapped"] == pytest.approx(measured)
    assert {r["rate"] for r in res["rows"]} == {0.05, None}
    assert "e:s3d" in res["skipped_plans"]  # 64 x 64 clips: too small for S3D's pooling


def test_price_refuses_targets_without_a_host_and_an_unknown_baseline(tmp_path, capsys):
    assert main(["price", "tiny", "--rate", "5", "--targets", "loihi2", "--out", str(tmp_path / "a")]) == 2
    assert "at least one GPU or CMOS profile" in capsys.readouterr().err
    assert main(["price", "tiny", "--against", "c3d", "--out", str(tmp_path / "b")]) == 2
    assert "unknown 3D CNN 'c3d'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
