"""The figures docs/performance.md quotes from bench/results/*.json equal those files at the rounding
shown: a benchmark re-run whose JSON changes fails here until the page follows.

A quoted number with d decimals matches a JSON value within half a unit of its last digit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = (ROOT / "docs" / "performance.md").read_text()
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _matches(quoted: str, value: float, scale: float = 1.0) -> bool:
    """``quoted`` (one number, units and markup around it ignored) equals ``value * scale`` as rounded."""
    found = NUMBER.findall(quoted.replace(",", ""))
    assert len(found) == 1, f"expected one number in {quoted!r}"
    text = found[0]
    decimals = len(text.partition(".")[2])
    return abs(float(text) - value * scale) <= 0.5 * 10 ** -decimals + 1e-9


def _check(quoted: str, value: float, scale: float = 1.0, where: str = "") -> None:
    assert _matches(quoted, value, scale), f"{where}: the page says {quoted!r}, the JSON {value * scale}"


def _table(header: str, page: str = PAGE) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``, as cells (markup removed)."""
    lines = page.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("**", "") for c in line.strip().strip("|").split("|")])
    return rows


def _keyed(rows: list[list[str]], width: int = 1) -> dict[str, list[str]]:
    """Rows by their first ``width`` cells joined with `` | ``; an empty first cell repeats the one above."""
    out, above = {}, ""
    for cells in rows:
        above = cells[0] or above
        key = " | ".join([above, *cells[1:width]])
        assert key not in out, f"two rows {key!r}"
        out[key] = cells[width:]
    return out


def _paragraph(start: str) -> str:
    """The text from ``start`` to the next blank line (to the next heading if ``start`` is one), one line."""
    i = PAGE.index(start)
    end = PAGE.find("\n## ", i + 1) if start.startswith("#") else PAGE.find("\n\n", i)
    return " ".join(PAGE[i:end].split())


# ---------------------------------------------------------------- training over seeds

TRAIN_ROWS = {  # first cell of the table row -> by_model name in train_tiny.json
    "hybrid (`tiny`: plain SNN, multi-scale cross-attention after stages 2-4)": "hybrid",
    "hybrid, quantization-aware training": "hybrid-qat",
    "ann baseline (key frames)": "ann",
    "snn baseline (residual frames)": "snn",
    "hybrid, late fusion": "hybrid-late",
    "hybrid, head only (`fusion=none`)": "hybrid-none",
    "synthetic-binding, head only (`fusion=none`)": "binding-none",
    "synthetic-binding, multi-scale hybrid": "binding-hybrid",
}


def test_training_table_matches_train_tiny_json():
    models = {m["name"]: m for m in _json("train_tiny.json")["by_model"]}
    table = _keyed(_table("| run | seed 0 |"))
    assert set(table) == set(TRAIN_ROWS)
    for label, name in TRAIN_ROWS.items():
        m, cells = models[name], table[label]
        for seed, top1 in zip(m["seeds"], m["top1"], strict=True):
            _check(cells[seed], top1, where=f"{label}, seed {seed}")
        assert all(not c for c in cells[len(m["seeds"]):5]), label
        if len(m["seeds"]) > 1:
            _check(cells[5], m["mean"], where=f"{label}, mean")
        quantized = cells[6].replace("(post-training)", "")
        if quantized.strip() not in ("-", "(trained quantized)"):
            shown = [q.strip() for q in quantized.split(",")]
            assert len(shown) == len(m["quantized"]), label
            for q, value in zip(shown, m["quantized"], strict=True):
                _check(q, value, where=f"{label}, quantized")


def test_training_times_match_train_tiny_json():
    models = {m["name"]: m for m in _json("train_tiny.json")["by_model"]}
    text = _paragraph("Times alone on the machine")
    for label, names in (("hybrid", ["hybrid"]), ("QAT", ["hybrid-qat"]), ("`ann`", ["ann"]),
                         ("`snn`", ["snn"]), ("binding runs", ["binding-none", "binding-hybrid"])):
        low, high = re.search(rf"{re.escape(label)} (\d+)-(\d+) s", text).groups()
        seconds = [s for n in names for s in models[n]["train_seconds"]]
        _check(low, min(seconds), where=f"{label} fastest")
        _check(high, max(seconds), where=f"{label} slowest")


# ---------------------------------------------------------------- real clips

SEED_CELL = re.compile(r"seed (\d+): ([\d.]+) \[([\d.]+), ([\d.]+)\] \((\d+)/(\d+)\)")


def test_real_clip_table_matches_real_video_json():
    sets = _json("real_video.json")["sets"]
    expected = {f"{s} | {v}": r for s, e in sets.items() for v, r in e["variants"].items()}
    table = _keyed(_table("| set | variant | video top-1 per seed"), width=2)
    assert set(table) == set(expected)
    for key, (per_seed, seconds) in table.items():
        r = expected[key]
        cells = SEED_CELL.findall(per_seed)
        assert sorted(int(c[0]) for c in cells) == sorted(int(x) for x in r["seeds"]), key
        for seed, acc, lo, hi, right, videos in cells:
            x = r["seeds"][seed]
            _check(acc, x["video_top1"], where=f"{key} seed {seed}")
            _check(lo, x["ci95_subject_bootstrap"][0], where=f"{key} seed {seed} CI low")
            _check(hi, x["ci95_subject_bootstrap"][1], where=f"{key} seed {seed} CI high")
            assert (int(right), int(videos)) == (x["correct"], x["videos"]), key
            assert x["correct"] / x["videos"] == pytest.approx(x["video_top1"])
        _check(seconds, sum(x["train_seconds_per_fold"] for x in r["seeds"].values()) / len(r["seeds"]),
               where=f"{key} training time")


README_CELL = re.compile(r"([\d.]+) \[([\d.]+), ([\d.]+)\] \((\d+)/(\d+)\)")
PAIRED_CELL = re.compile(r"(?:([a-z-]+): )?(\d+) vs (\d+), p = ([\d.]+)")


def _exact_mcnemar(a_only: int, b_only: int) -> float:
    from math import comb

    n, k = a_only + b_only, min(a_only, b_only)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def test_readme_real_footage_table_matches_real_video_json():
    """The README's real-footage table: its first model is `real-small` as validation chose it, then
    its two branches trained alone on the same sampling, then the fusion ablation; every cell against
    the benchmark's JSON, the better branch recounted, the paired tests recomputed from their
    discordant counts."""
    doc = _json("real_video.json")
    sets = doc["sets"]
    readme = (ROOT / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| set | seed |"))
    names = [n.strip() for n in header.strip().strip("|").split("|")][2:-2]
    ship, *branch_names = names[:3]
    assert ship == (doc.get("preset_choice") or {}).get("chosen", "hybrid")
    assert branch_names == (["ann-snippets", "snn-snippets"] if ship == "snippets" else ["ann", "snn"])
    assert names[3:] == [v for v in ("hybrid", "fusion-late", "fusion-none") if v != ship]
    rows = _table(header, page=readme)
    want = {(s, seed) for s, e in sets.items() for seed in e["variants"].get(ship, {}).get("seeds", {})}
    assert {(r[0], r[1]) for r in rows} == want
    for s, seed, *cells in rows:
        e = sets[s]
        for name, c in zip(names, cells[: len(names)], strict=True):
            x = e["variants"].get(name, {}).get("seeds", {}).get(seed)
            if x is None:
                assert c == "-", (s, seed, name)
                continue
            acc, lo, hi, right, videos = README_CELL.fullmatch(c).groups()
            _check(acc, x["video_top1"], where=f"{s} {name}")
            _check(lo, x["ci95_subject_bootstrap"][0], where=f"{s} {name} CI low")
            _check(hi, x["ci95_subject_bootstrap"][1], where=f"{s} {name} CI high")
            assert (int(right), int(videos)) == (x["correct"], x["videos"])
        got = {b: e["variants"].get(b, {}).get("seeds", {}).get(seed) for b in branch_names}
        if None in got.values():
            assert cells[len(names)] == "-"
        else:
            branch, a_only, b_only, p = PAIRED_CELL.fullmatch(cells[len(names)]).groups()
            right = {b: r["correct"] for b, r in got.items()}
            assert branch == max(branch_names, key=lambda b: (right[b], b == branch_names[0])), (s, seed)
            m = next(m for m in e["mcnemar"] if (m["a"], m["b"], str(m["seed"])) == (ship, branch, seed))
            assert (int(a_only), int(b_only)) == (m["a_only"], m["b_only"])
            _check(p, _exact_mcnemar(m["a_only"], m["b_only"]), where=f"{s} {ship} vs {branch}")
        fusion = cells[len(names) + 1]
        if fusion != "-":
            _, a_only, b_only, p = PAIRED_CELL.fullmatch(fusion).groups()
            m = next(m for m in e["mcnemar"]
                     if (m["a"], m["b"], str(m["seed"])) == ("hybrid", "fusion-none", seed))
            assert (int(a_only), int(b_only)) == (m["a_only"], m["b_only"])
            _check(p, _exact_mcnemar(m["a_only"], m["b_only"]), where=f"{s} multi-scale vs none")


def test_real_clip_paired_tests_match_real_video_json():
    from math import comb

    sets = _json("real_video.json")["sets"]
    expected = {f"{s} | {m['a']} vs {m['b']} | {m['seed']}": m for s, e in sets.items() for m in e["mcnemar"]}
    table = _keyed(_table("| set | a vs b | seed |"), width=3)
    assert set(table) == set(expected)
    for key, (a_only, b_only, p) in table.items():
        m = expected[key]
        assert (int(a_only), int(b_only)) == (m["a_only"], m["b_only"]), key
        n, k = m["a_only"] + m["b_only"], min(m["a_only"], m["b_only"])  # exact two-sided binomial
        _check(p, min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0, where=key)


# ---------------------------------------------------------------- Lava simulation, prediction, paper scale

LAVA_ROWS = {  # table row -> case name in lava_sim.json
    "tiny stage 0 (3x64x64, 5 layers)": "tiny stage0 (5 layers)",
    "tiny stage 1 (2 layers)": "tiny stage1 (2 layers)",
    "tiny stage 2 (2 layers)": "tiny stage2 (2 layers)",
    "3x10x14 -> 8 -> 12": "3x10x14->8->12",
    "16x32x48 -> 32 -> 64": "16x32x48->32->64",
    "32x64x96 -> 64 -> 64": "32x64x96->64->64",
}
LAVA_COLUMNS = ("stock_steps_per_s", "loihi_steps_per_s", "async_steps_per_s", "torch_clip_steps_per_s",
                "async_vs_torch")


def test_lava_simulation_table_matches_lava_sim_json():
    cases = {c["name"]: c for c in _json("lava_sim.json")["cases"]}
    table = _keyed(_table("| stage | Lava's models"))
    assert set(table) == set(LAVA_ROWS)
    for label, name in LAVA_ROWS.items():
        for quoted, key in zip(table[label], LAVA_COLUMNS, strict=True):
            _check(quoted, cases[name][key], where=f"{label}, {key}")


PREDICT_ROWS = {  # (model row, path) -> (JSON file, path)
    "`tiny` (T 16, s 4, 64 px, 3 stage networks) | PyTorch as trained": ("predict_speed.json", "torch"),
    "`tiny` (T 16, s 4, 64 px, 3 stage networks) | PyTorch quantized":
        ("predict_speed.json", "torch-quantized"),
    "`tiny` (T 16, s 4, 64 px, 3 stage networks) | SNN in Lava (`--lava`: networks kept running)":
        ("predict_speed.json", "lava"),
    "`tiny` (T 16, s 4, 64 px, 3 stage networks) | SNN in Lava, networks built and stopped per window":
        ("predict_speed.json", "lava-per-window"),
    "`real-small` (weizmann4 fold 0; T 16, s 4, 96 px, Lite0, 3 stage networks) | PyTorch as trained":
        ("predict_speed_real_small.json", "torch"),
    "`real-small` (weizmann4 fold 0; T 16, s 4, 96 px, Lite0, 3 stage networks) | PyTorch quantized":
        ("predict_speed_real_small.json", "torch-quantized"),
    "`real-small` (weizmann4 fold 0; T 16, s 4, 96 px, Lite0, 3 stage networks) | SNN in Lava, per window "
    "(Loihi protocol)": ("predict_speed_real_small.json", "lava"),
}


def _latency(quoted: str, seconds: float, where: str) -> None:
    scale = 1000.0 if quoted.endswith("ms") else 1.0
    _check(quoted, seconds, scale, where)


def test_prediction_table_matches_predict_speed_json():
    table = _keyed(_table("| model | path |"), width=2)
    assert set(table) == set(PREDICT_ROWS)
    for key, (name, path) in PREDICT_ROWS.items():
        row = next(p for p in _json(name)["paths"] if p["path"] == path)
        rate, median, p90 = table[key]
        _check(rate, row["windows_per_s"], where=f"{key}, windows/s")
        _latency(median, row["latency_s"]["median"], f"{key}, median")
        _latency(p90, row["latency_s"]["p90"], f"{key}, p90")


def test_paper_scale_table_matches_paper_scale_json():
    rows = {r["preset"]: r for r in _json("paper_scale.json")["rows"]}
    table = {k.split("`")[1]: v for k, v in _keyed(_table("| preset | s / step")).items()}
    assert set(table) == set(rows)
    for preset, (step, rss, params, macs) in table.items():
        r, b = rows[preset], rows[preset]["branches"]
        _check(step, r["median_seconds_per_step"], where=f"{preset} s/step")
        _check(rss, r["peak_rss_gib"], where=f"{preset} RSS")
        total, parts = params.split("(")
        _check(total, r["params"], 1e-6, f"{preset} parameters")
        for q, branch in zip(parts.rstrip(")").split("/"), ("ann", "snn", "fusion", "head"), strict=True):
            _check(q, b[branch]["params"], 1e-6, f"{preset} {branch} parameters")
        for q, branch in zip(macs.split("/"), ("ann", "snn", "fusion"), strict=True):
            _check(q, b[branch]["dense_macs"], 1e-9, f"{preset} {branch} GMACs")


# ---------------------------------------------------------------- figures in the text

def _within(range_text: str, value: float) -> bool:
    low, high = (float(x) for x in re.findall(r"\d+(?:\.\d+)?", range_text))
    return low - 0.005 <= value <= high + 0.005


def test_data_pipeline_figures_match_data_pipeline_json():
    d = _json("data_pipeline.json")
    text = _paragraph("`bench/data_pipeline.py`:")
    clips, rounds = re.search(r"(\d+) real clips x (\d+) rounds", text).groups()
    assert (int(clips), int(rounds)) == (d["clips"], d["rounds"])
    evaluation = re.search(r"\*\*([\d.-]+)x\*\* raw decode speed in evaluation", text)[1]
    training = re.search(r"\*\*([\d.-]+)x\*\* in training", text)[1]
    assert _within(evaluation, d["ratio_vs_raw_decode"]), (evaluation, d["ratio_vs_raw_decode"])
    assert _within(training, d["ratio_vs_raw_decode_train"]), (training, d["ratio_vs_raw_decode_train"])


@pytest.mark.parametrize("name, pattern", [
    ("simulate_workers.json", r"(\d+) clips ([\d.]+) s with one worker, ([\d.]+) s with two \(([\d.]+)x\)"),
    ("simulate_workers_96.json", r"(\d+) clips ([\d.]+) s against ([\d.]+) s \(([\d.]+)x"),
])
def test_sharded_simulation_figures_match_simulate_workers_json(name, pattern):
    d = _json(name)
    clips, one, two, ratio = re.search(pattern, _paragraph("`bench/simulate_workers.py`:")).groups()
    assert int(clips) == d["clips"]
    _check(one, d["median_seconds"]["1"], where=f"{name} one worker")
    _check(two, d["median_seconds"]["2"], where=f"{name} two workers")
    _check(ratio, d["speedup_2_workers"], where=f"{name} ratio")


def test_network_set_up_figures_match_lava_setup_json():
    stages = _json("lava_setup.json")["stages"]
    text = _paragraph("`bench/lava_setup.py`:")
    pairs = re.findall(r"(\d\.\d+) -> (\d\.\d+)", text)
    assert len(pairs) == 2 * len(stages)
    expected = ([(s["median_setup_seconds"]["search"], s["median_setup_seconds"]["by_class"]) for s in stages]
                + [(s["median_seconds"]["search"], s["median_seconds"]["by_class"]) for s in stages])
    for (before, after), (search, by_class) in zip(pairs, expected, strict=True):
        _check(before, search, where="Lava's search")
        _check(after, by_class, where="by class")


def test_energy_overhead_figures_match_energy_overhead_json():
    d = _json("energy_overhead.json")
    text = _paragraph("`bench/energy_overhead.py`:")
    per_forward, attached_once = re.findall(r"\*\*(\d\.\d+-\d\.\d+)x\*\*", text)[:2]
    assert _within(per_forward, d["overhead_ratio"]) and _within(attached_once, d["overhead_ratio_steady"])
    on, off = re.search(r"(\d+) ms against (\d+) ms", text).groups()
    _check(on, d["seconds_on_median"], 1000, "with counters")
    _check(off, d["seconds_off_median"], 1000, "without")


BEFORE, AFTER = "before (issue 11 head)", "after"  # parsers without torch
PATHS_BEFORE = "before (paths checked in the commands)"
PATHS_AFTER = "after (paths checked before the imports)"
HELP, MISSING = "respike-nm --help", "respike-nm simulate MISSING"
STARTUP = [  # (the page's words, entry of startup.json, command, ratio to import torch or seconds)
    ("`respike-nm --help` took {}x an `import torch` before", BEFORE, HELP, "x"),
    ("import torch` before and {}x after", AFTER, HELP, "x"),
    ("after ({} s); `data inspect --help`", AFTER, HELP, "s"),
    ("`data inspect --help` {}x before", BEFORE, "respike-nm data inspect --help", "x"),
    ("x before, {}x after. `data inspect CLIP`", AFTER, "respike-nm data inspect --help", "x"),
    ("which it uses ({}x)", AFTER, "respike-nm data inspect CLIP", "x"),
    ("took {} s to say so", PATHS_BEFORE, MISSING, "s"),
    ("to say so, {}x an `import torch`", PATHS_BEFORE, MISSING, "x"),
    ("and takes {} s,", PATHS_AFTER, MISSING, "s"),
    ("s, {}x, after", PATHS_AFTER, MISSING, "x"),
    ("`respike-nm --help` {}x and", PATHS_BEFORE, HELP, "x"),
    ("x and {}x in the same sessions", PATHS_AFTER, HELP, "x"),
]


@pytest.mark.parametrize("words, entry, command, kind", STARTUP, ids=[s[0][:40] for s in STARTUP])
def test_start_up_figures_match_startup_json(words, entry, command, kind):
    text = _paragraph("## Start-up")
    pattern = re.escape(words).replace(re.escape("{}"), r"(\d+\.\d+)")
    quoted = re.search(pattern, text)
    assert quoted, f"not on the page: {words!r}"
    row = _json("startup.json")[entry]
    _check(quoted[1], row["vs_import_torch" if kind == "x" else "median_s"][command], where=words)


def test_real_clip_validation_table_matches_real_video_json():
    sets = _json("real_video.json")["sets"]
    expected = {f"{s} | {v} | {seed}": x for s, e in sets.items() for v, r in e.get("validation", {}).items()
                for seed, x in r.items()}
    if not expected:
        return
    table = _keyed(_table("| set | method | seed | inner-validation video top-1"), width=3)
    assert set(table) == set(expected)
    for key, (cell,) in table.items():
        acc, right, videos = re.fullmatch(r"([\d.]+) \((\d+)/(\d+)\)", cell).groups()
        _check(acc, expected[key]["video_top1"], where=key)
        assert (int(right), int(videos)) == (expected[key]["correct"], expected[key]["videos"]), key
