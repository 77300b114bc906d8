"""``respike-nm predict``: sliding windows over files, folders, pipes and live sources.

The reference for every window is computed independently of the streaming code: the frames of that
window decoded the evaluation way (``read_frames`` with the spec's short side, as the video dataset
does), ``ClipTransform(size, train=False)``, ``normalize``, the model on the whole clip, softmax.
Tolerance 1e-5 on probabilities: the same float32 arithmetic on the same pixels (the streaming path
crops frame by frame, the reference the whole clip at once; uint8 resizing is per frame either way).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
from conftest import SMALL_TRAIN, frame_pattern, liven_run

import conversion.lava_sim  # noqa: F401  Lava fixes the fork start method: before training sets a context
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.data.transforms import ClipTransform, normalize
from respike_nm.data.video import read_frames
from respike_nm.predict import predict_source, torch_classifier
from respike_nm.train.builder import clip_spec
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 1-epoch hybrid at 32x32, T = 8, s = 4 (seconds on a CPU)."""
    out = tmp_path_factory.mktemp("predict") / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1"]), "hybrid", out)
    return out


def _frames(n: int, h: int = 60, w: int = 80) -> np.ndarray:
    """Frames with structure and motion (a moving bright square on the pattern), larger than the crop
    so that decoding scales them (short side 60 -> 37 for a 32 crop)."""
    frames = frame_pattern(n, h, w).copy()
    for t in range(n):
        frames[t, 10:30, 3 * t % (w - 20):3 * t % (w - 20) + 20] = 250
    return frames


def _encode(frames: np.ndarray, target, fmt: str, codec: str = "mpeg4") -> None:
    with av.open(target, "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(stream.encode())


def _video(path: Path, n: int, fmt: str = "avi") -> Path:
    _encode(_frames(n), str(path), fmt)
    return path


def _reference(run: Path, path: Path, starts: list[int], quantize: bool | None = None) -> np.ndarray:
    """``[windows, classes]`` probabilities of the windows starting at ``starts``, the eval way."""
    model, cfg, _ = load_run(run, quantize=quantize)
    model.eval()
    spec = clip_spec(cfg)
    out = []
    for start in starts:
        frames, _ = read_frames(path, list(range(start, start + spec.frames)), spec.decode_short_side)
        clip = normalize(ClipTransform(spec.size, train=False)(frames))
        with torch.no_grad():
            out.append(model(clip[None])[0].softmax(-1).numpy())
    return np.stack(out)


def _probs(top: list[dict], classes: list[str]) -> np.ndarray:
    got = {c["name"]: c["prob"] for c in top}
    return np.array([got[c] for c in classes])


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _classes(run: Path) -> list[str]:
    return list(load_run(run)[2].classes)


@pytest.mark.parametrize("n", [8, 23, 24])
def test_file_windows_equal_the_model_on_eval_frames(run, tmp_path, capsys, n):
    path = _video(tmp_path / "clip.avi", n)
    classes = _classes(run)
    assert main(["predict", str(run), str(path), "--json", "--topk", str(len(classes)), "--quiet"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    windows, summary, whole = rows[:-2], rows[-2], rows[-1]
    assert whole["type"] == "video" and whole["source"] == str(path)  # a file: also as evaluated
    T, s = 8, 4
    assert len(windows) == (n - T) // s + 1  # windows start at 0, s, 2s, ...
    starts = [w * s for w in range(len(windows))]
    ref = _reference(run, path, starts)
    for w, (row, start) in enumerate(zip(windows, starts, strict=True)):
        assert (row["type"], row["window"], row["first_frame"], row["last_frame"]) == \
            ("window", w, start, start + T - 1)
        assert (row["start_s"], row["end_s"]) == pytest.approx((start / 25, (start + T - 1) / 25))
        assert row["latency_s"] >= 0
        np.testing.assert_allclose(_probs(row["top"], classes), ref[w], atol=TOL)
        assert [c["prob"] for c in row["top"]] == sorted((c["prob"] for c in row["top"]), reverse=True)
    assert summary["type"] == "summary" and summary["error"] is None
    assert (summary["frames"], summary["windows"]) == (n, len(windows))
    np.testing.assert_allclose(_probs(summary["top"], classes), ref.mean(0), atol=TOL)


@pytest.mark.parametrize("sampling", [["data.sampling=consecutive"],
                                      ["data.sampling=segments", "data.eval_clips=2"]],
                         ids=["consecutive", "segments"])
def test_whole_file_prediction_equals_eval(tmp_path, capsys, sampling):
    """Each file's ``video`` line is what evaluation computes for that video: the logits of the
    run's own evaluation clips averaged (eval's batched pass over its test set is the reference)."""
    from torch.utils.data import DataLoader

    from respike_nm.data.datasets import collate_clips
    from respike_nm.train.builder import build_datasets
    from respike_nm.train.evaluate import eval_totals

    root = tmp_path / "clips"
    for c, n in (("a", 20), ("b", 31)):
        (root / c).mkdir(parents=True)
        for i in range(4):
            _video(root / c / f"{c}{i}.avi", n + 3 * i)
    cfg = apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1", "data.dataset=folder",
                                                              f"data.data_root={root}", *sampling])
    train(cfg, "hybrid", tmp_path / "run")
    model, cfg, ck = load_run(tmp_path / "run")
    _, test, _, _ = build_datasets(cfg)
    t = eval_totals(model, DataLoader(test, batch_size=4, collate_fn=collate_clips), torch.device("cpu"),
                    activity=False)
    assert len(t.rows) == len(test) >= 2
    files = [test.source(v) for v in sorted(t.rows)]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), *files, "--json", "--quiet", "--topk", "2"]) == 0
    got = {r["source"]: r for r in _json_lines(capsys.readouterr().out) if r["type"] == "video"}
    for v, f in zip(sorted(t.rows), files, strict=True):
        want = (torch.stack(t.rows[v]).sum(0) / t.counts[v]).softmax(-1).numpy()
        assert got[f]["clips"] == t.counts[v] == (2 if "data.eval_clips=2" in sampling else 1)
        np.testing.assert_allclose(_probs(got[f]["top"], list(ck.classes)), want, atol=TOL)


def test_topk_and_text_output(run, tmp_path, capsys):
    path = _video(tmp_path / "clip.avi", 12)
    classes = _classes(run)
    ref = _reference(run, path, [0, 4])
    assert main(["predict", str(run), str(path), "--topk", "2", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # two windows, one summary, the file as evaluated
    best = [classes[i] for i in np.argsort(-ref[0])[:2]]
    assert lines[0].startswith(f"{path} window 0: frames 0-7 (0.00-0.28 s): {best[0]} ")
    assert f", {best[1]} " in lines[0] and lines[0].count(",") == 1
    assert lines[2].startswith(f"{path}: 2 window(s) over 12 frame(s): {classes[int(ref.mean(0).argmax())]} ")
    assert lines[3].startswith(f"{path}: as evaluated (1 clip(s) of the whole file): ")


def test_folder_of_two_files_is_sorted_and_recursive(run, tmp_path, capsys):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    b = _video(root / "b.avi", 16)
    a = _video(root / "sub" / "a.mkv", 12, fmt="matroska")
    (root / "notes.txt").write_text("not a video")
    classes = _classes(run)
    assert main(["predict", str(run), str(root), "--json", "--topk", str(len(classes)), "--quiet"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [(r["source"], r["type"]) for r in rows] == \
        [(str(b), "window")] * 3 + [(str(b), "summary"), (str(b), "video")] + [(str(a), "window")] * 2 \
        + [(str(a), "summary"), (str(a), "video")]
    for path, got in ((b, rows[:3]), (a, rows[5:7])):
        ref = _reference(run, path, [4 * r["window"] for r in got])
        np.testing.assert_allclose([_probs(r["top"], classes) for r in got], ref, atol=TOL)


def test_stream_through_a_fifo_is_predicted_while_it_is_written(run, tmp_path):
    """A writer thread feeds a NUT stream into a named pipe and holds back its last frames until a
    window has come out (a condition, not a pace: the test passes on a busy machine): windows come out
    before the stream ends, and they equal the windows of the same bytes read from a file."""
    buf = io.BytesIO()
    _encode(_frames(24), buf, "nut")
    data = buf.getvalue()
    (tmp_path / "same.nut").write_bytes(data)
    fifo = tmp_path / "live"
    os.mkfifo(fifo)
    finished, first_window = {}, threading.Event()
    piece = len(data) // 24 + 1  # about a frame's bytes

    def writer():
        with open(fifo, "wb") as f:
            for i in range(0, len(data), piece):
                if i >= len(data) - 4 * piece:  # the last 4 frames wait for the first window
                    first_window.wait(timeout=600)
                f.write(data[i:i + piece])
                f.flush()
        finished["t"] = time.perf_counter()

    model, cfg, ck = load_run(run)
    spec, classify = clip_spec(cfg), torch_classifier(model)
    classify(torch.zeros(1, 8, 3, 32, 32))  # the first forward's one-off cost is not the stream's
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    streamed = []
    for item in predict_source(str(fifo), classify, ck.classes, spec, topk=len(ck.classes)):
        streamed.append((time.perf_counter(), item))
        if item.type == "window":
            first_window.set()
    thread.join(timeout=600)
    windows = [i for _, i in streamed if i.type == "window"]
    assert len(windows) == (24 - 8) // 4 + 1
    assert streamed[0][0] < finished["t"]  # the first window came before the writer finished
    from_file = list(predict_source(str(tmp_path / "same.nut"), classify, ck.classes, spec,
                                    topk=len(ck.classes)))
    for got, want in zip(windows, from_file[:-1], strict=True):
        assert (got.first_frame, got.last_frame, got.start_s) == \
            (want.first_frame, want.last_frame, want.start_s)
        assert {c.name: c.prob for c in got.top} == pytest.approx({c.name: c.prob for c in want.top}, abs=TOL)
    assert streamed[-1][1].error is None and streamed[-1][1].windows == len(windows)


def test_stdin_stream_in_a_subprocess(run, tmp_path):
    """``-`` reads stdin; a Matroska stream piped into the command gives the file's windows."""
    path = _video(tmp_path / "clip.mkv", 16, fmt="matroska")
    classes = _classes(run)
    proc = subprocess.run([sys.executable, "-m", "respike_nm.cli.main", "predict", str(run), "-", "--json",
                           "--quiet", "--topk", str(len(classes))], input=path.read_bytes(),
                          capture_output=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = _json_lines(proc.stdout.decode())
    assert [r["source"] for r in rows] == ["-"] * 4 and rows[-1]["windows"] == 3
    ref = _reference(run, path, [0, 4, 8])
    np.testing.assert_allclose([_probs(r["top"], classes) for r in rows[:3]], ref, atol=TOL)


def test_live_lavfi_source(run, capsys):
    """A generated live source (FFmpeg's lavfi ``testsrc``, 1 s at 25 fps) through FORMAT:TARGET."""
    if "lavfi" not in av.formats_available:
        pytest.skip("this FFmpeg build has no lavfi input")
    live = "lavfi:testsrc=size=64x48:rate=25:duration=1"
    assert main(["predict", str(run), live, "--json", "--quiet"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert rows[-1]["frames"] == 25 and rows[-1]["windows"] == (25 - 8) // 4 + 1 == len(rows) - 1
    assert [r["end_s"] for r in rows[:-1]] == pytest.approx([(4 * w + 7) / 25 for w in range(5)])


def test_truncated_file_keeps_its_windows_and_reports_where_it_stopped(run, tmp_path, capsys):
    full = _video(tmp_path / "full.avi", 40)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 4 // 5])  # the key frame is large: keep enough for 2+ windows
    classes = _classes(run)
    assert main(["predict", str(run), str(cut), "--json", "--topk", str(len(classes)), "--quiet"]) == 2
    out, err = capsys.readouterr()
    rows = _json_lines(out)
    windows, summary = rows[:-2], rows[-2]
    decoded = len(read_frames(cut)[0])
    assert 8 <= decoded < 40
    assert len(windows) == (decoded - 8) // 4 + 1 and summary["frames"] == decoded
    assert f"stopped after {decoded} of the 40 frames" in summary["error"]
    assert str(cut) in err and "truncated" in err
    # the intact file's windows, up to the last decoded frame (which may be damaged and concealed)
    whole = [r for r in windows if r["last_frame"] < decoded - 1]
    assert len(whole) >= 2
    ref = _reference(run, full, [r["first_frame"] for r in whole])
    np.testing.assert_allclose([_probs(r["top"], classes) for r in whole], ref, atol=TOL)


def test_unopenable_and_short_inputs_are_reported_and_the_others_processed(run, tmp_path, capsys):
    good = _video(tmp_path / "good.avi", 8)
    short = _video(tmp_path / "short.avi", 5)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all")
    missing = tmp_path / "missing.mp4"
    url = "http://127.0.0.1:9/none.mp4"  # the discard port: connection refused at once
    device = "/dev/null"  # a character device, opened as a camera would be
    rc = main(["predict", str(run), str(missing), str(fake), url, device, str(short), str(good), "--quiet"])
    assert rc == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("respike-nm: error:")]
    assert len(errors) == 5, err
    for line, name in zip(errors, (missing, fake, url, device, short), strict=True):
        assert line.startswith(f"respike-nm: error: {name}: ")
    assert errors[4].endswith(f"{short}: 5 frame(s), fewer than one window of T=8: no prediction")
    assert out.splitlines()[-3].startswith(f"{good} window 0: frames 0-7")
    assert out.splitlines()[-2].startswith(f"{good}: 1 window(s) over 8 frame(s)")
    assert out.splitlines()[-1].startswith(f"{good}: as evaluated (1 clip(s) of the whole file)")


def test_run_dir_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    video = _video(tmp_path / "clip.avi", 8)
    assert main(["predict", str(tmp_path / "norun"), str(video)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: no such checkpoint" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def export(run) -> Path:
    out = run.parent / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def live(run) -> tuple[Path, Path]:
    """``(run, export)``: a copy of the run with every SNN layer firing (:func:`liven_run`), exported."""
    live_run, out = run.parent / "live_run", run.parent / "live_export"
    shutil.copytree(run, live_run)
    liven_run(live_run, gain=1.5)  # at the default gain, this test's video saturates the deep layers
    assert main(["export", str(live_run), "--out", str(out)]) == 0
    return live_run, out


@pytest.mark.lava
def test_lava_path_gives_the_quantized_model_predictions(live, tmp_path, capsys):
    """--lava: the hybrid with its SNN stages in Lava equals the quantized PyTorch model (bit-exact SNN),
    on a network whose every layer fires, so that each layer's spikes shape the logits. The export's
    manifest names another checkpoint file: the integers agree, so that is a warning (as in simulate)."""
    run, live_export = live
    export = tmp_path / "export"
    shutil.copytree(live_export, export)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["checkpoint_sha256"] = "0" * 64
    (export / "manifest.json").write_text(json.dumps(manifest))
    path = _video(tmp_path / "clip.avi", 12)
    classes = _classes(run)
    capsys.readouterr()
    assert main(["predict", str(run), str(path), "--lava", str(export), "--json", "--quiet",
                 "--topk", str(len(classes))]) == 0
    out, err = capsys.readouterr()
    assert "warning" in err and "is not the checkpoint this export was made from" in err
    rows = _json_lines(out)
    assert [r["type"] for r in rows] == ["window", "window", "summary", "video"]
    ref = _reference(run, path, [0, 4], quantize=True)
    np.testing.assert_allclose([_probs(r["top"], classes) for r in rows[:2]], ref, atol=TOL)
    rates = [s.sum().item() / s.numel() for s in _snn_spikes(run, path)]  # neither silent nor saturated
    assert len(rates) == 9 and all(0.01 < r < 0.9 for r in rates), rates


def _snn_spikes(run: Path, path: Path) -> list[torch.Tensor]:
    """Output spikes of every SNN layer of the quantized model on the first window of ``path``."""
    from respike_nm.models.snn import SpikingConv

    model, cfg, _ = load_run(run, quantize=True)
    model.eval()
    spec = clip_spec(cfg)
    frames, _ = read_frames(path, list(range(spec.frames)), spec.decode_short_side)
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out))
             for m in model.snn.modules() if isinstance(m, SpikingConv)]
    try:
        with torch.no_grad():
            model(normalize(ClipTransform(spec.size, train=False)(frames))[None])
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_lava_export_holding_other_integers_is_refused(run, export, tmp_path, capsys):
    """Checked before Lava runs: the export's integers against the run's (one weight changed, the
    file's digest in the manifest updated, so that every structural check passes)."""
    other = tmp_path / "other"
    shutil.copytree(export, other)
    manifest = json.loads((other / "manifest.json").read_text())
    path = other / manifest["stages"][0]["hdf5"]
    with h5py.File(path, "r+") as f:
        ds = f["layer/1/weight"]
        w = ds[()]
        w.flat[0] = w.flat[0] - 2 if w.flat[0] > 0 else w.flat[0] + 2  # another even integer in range
        ds[...] = w
    manifest["stages"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest))
    video = _video(tmp_path / "clip.avi", 8)
    capsys.readouterr()
    rc = main(["predict", str(run), str(video), "--lava", str(other)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not hold this run's integers" in err and "weight" in err, err


REALDATA = os.environ.get("RESPIKE_REALDATA")


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA or not Path(REALDATA, "weizmann4").is_dir(),
                    reason="RESPIKE_REALDATA does not name the real-clip folder with weizmann4/")
def test_predict_on_a_real_clip(run, capsys):
    clip = sorted(Path(REALDATA, "weizmann4", "wave1").glob("*.mkv"))[0]
    classes = _classes(run)
    assert main(["predict", str(run), str(clip), "--json", "--quiet", "--topk", str(len(classes))]) == 0
    rows = _json_lines(capsys.readouterr().out)
    n = len(read_frames(clip)[0])
    rows = rows[:-1]  # the last line is the file as evaluated
    assert rows[-1]["frames"] == n and len(rows) - 1 == (n - 8) // 4 + 1
    ref = _reference(run, clip, [0, 4 * (len(rows) - 2)])
    np.testing.assert_allclose([_probs(rows[i]["top"], classes) for i in (0, len(rows) - 2)], ref, atol=TOL)
