"""The run folder's records: summary.json and metrics.jsonl written, read back and checked, and who
may open a run (conversion reads it without importing the training code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from respike_nm.train.run import (
    METRICS,
    SUMMARY,
    SUMMARY_FORMAT,
    SUMMARY_VERSION,
    EpochRow,
    Quantization,
    RunError,
    RunSummary,
    read_metrics,
    read_summary,
    write_metrics,
    write_summary,
)

ROOT = Path(__file__).resolve().parents[2]
FIELDS = dict(model="snn", config="tiny", dataset="synthetic", test_top1=0.5, test_top5=1.0,
              test_top1_video=0.5,
              epochs=2, seconds=3.25, params=1234, classes=4, skipped_inputs=0,
              failed_to_decode={"train": 0, "test": 0}, firing_rates={"snn.stem": 0.125},
              full_config={"name": "tiny", "seed": 0})


def _summary(**changes) -> RunSummary:
    q = Quantization("post-training", "loihi2", float_top1=0.5, quantized_top1=0.25)
    return RunSummary(**{"format": SUMMARY_FORMAT, "format_version": SUMMARY_VERSION, **FIELDS,
                         "quantization": q, **changes})


def test_a_summary_reads_back_as_written(tmp_path):
    s = _summary()
    write_summary(tmp_path, s)
    data = json.loads((tmp_path / SUMMARY).read_text())
    assert list(data)[:3] == ["format", "format_version", "model"]  # a reader sees what it holds first
    assert data["quantization"]["quantized_top1"] == 0.25 and data["firing_rates"] == {"snn.stem": 0.125}
    assert read_summary(tmp_path) == s
    write_summary(tmp_path, _summary(model="ann", quantization=None))
    assert read_summary(tmp_path).quantization is None


def test_a_summary_written_before_the_format_had_a_name_still_reads(tmp_path):
    (tmp_path / SUMMARY).write_text(json.dumps(FIELDS | {"model": "ann"}))  # an ANN: no quantization key
    s = read_summary(tmp_path)
    assert (s.format_version, s.quantization, s.test_top1, s.failed_to_decode) == (0, None, 0.5,
                                                                                    {"train": 0, "test": 0})


@pytest.mark.parametrize("text, words", [
    ("{", "not JSON"),
    (json.dumps([1, 2]), "expected an object"),
    (json.dumps({**FIELDS, "epochs": "two"}), "epochs: expected int"),
    (json.dumps({**FIELDS, "colour": "red"}), "unknown field(s) colour"),
    (json.dumps({k: v for k, v in FIELDS.items() if k != "params"}), "missing field(s) params"),
    (json.dumps({"format": SUMMARY_FORMAT, "format_version": 99, **FIELDS, "quantization": None}),
     "version 99"),
    (json.dumps({"format": "something-else", "format_version": 1, **FIELDS, "quantization": None}),
     "'something-else'"),
])
def test_a_bad_summary_is_one_error_naming_the_file_and_the_problem(tmp_path, text, words):
    (tmp_path / SUMMARY).write_text(text)
    with pytest.raises(RunError) as e:
        read_summary(tmp_path)
    assert str(tmp_path / SUMMARY) in str(e.value) and words in str(e.value)


def test_a_missing_summary_names_the_file(tmp_path):
    with pytest.raises(RunError, match="no such file"):
        read_summary(tmp_path)


ROW = {"epoch": 1, "train_loss": 2.5, "train_top1": 0.25, "train_samples": 24, "train_failed": 0,
       "lr": 0.001, "train_loss_fused": 2.5, "train_loss_ann": 2.0, "train_loss_snn": 3.0, "test_top1": 0.5,
       "test_top5": 1.0,
       "test_top1_video": 0.5, "test_top5_video": 1.0, "test_loss": 1.5, "test_failed": 0,
       "firing_rates": {"snn.stem": 0.25}, "seconds": 4.0}


def test_metrics_rows_read_back_and_are_written_as_the_loop_keeps_them(tmp_path):
    plain = {k: ROW[k] for k in ("epoch", "train_loss", "train_top1", "train_samples", "train_failed", "lr",
                                 "seconds")}  # an epoch that was not evaluated
    write_metrics(tmp_path, [ROW, {**plain, "epoch": 2}])
    lines = (tmp_path / METRICS).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [ROW, {**plain, "epoch": 2}]  # no key added or dropped
    rows = read_metrics(tmp_path)
    assert rows[0] == EpochRow(**ROW)
    second = rows[1]
    assert (second.epoch, second.test_top1, second.firing_rates, second.ogm_coeff_snn) == (2, None, {}, None)


def test_a_row_no_reader_knows_is_never_written(tmp_path):
    with pytest.raises(RunError, match="metrics row 2: unknown field.*test_tpo1"):
        write_metrics(tmp_path, [ROW, {**ROW, "epoch": 2, "test_tpo1": 0.5}])
    assert not (tmp_path / METRICS).exists()


@pytest.mark.parametrize("line, words", [
    ("{not json", "line 2 is not JSON"),
    (json.dumps({**ROW, "epoch": 2.5}), "line 2: epoch: expected int"),
    (json.dumps({k: v for k, v in ROW.items() if k != "lr"}), "line 2: missing field(s) lr"),
])
def test_a_bad_metrics_line_names_the_file_and_the_line(tmp_path, line, words):
    (tmp_path / METRICS).write_text(json.dumps(ROW) + "\n" + line + "\n")
    with pytest.raises(RunError) as e:
        read_metrics(tmp_path)
    assert str(tmp_path / METRICS) in str(e.value) and words in str(e.value)


def test_conversion_opens_a_run_without_importing_the_training_code():
    code = ("import sys, conversion.pipeline, conversion.verify, conversion.mapping; "
            "print(sorted(m for m in sys.modules if m.startswith('respike_nm.train')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert "respike_nm.train.run" in loaded  # it does open runs, through the run module
    assert not loaded & {"respike_nm.train.loop", "respike_nm.train.evaluate", "respike_nm.train.balance",
                         "respike_nm.train.crossval"}, loaded
