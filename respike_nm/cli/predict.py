"""``respike-nm predict``: class predictions over sliding windows of videos and live streams."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from respike_nm.cli import positive_int
from respike_nm.errors import UsageError

SIGPIPE_EXIT = 141  # 128 + SIGPIPE, the status of a shell tool whose output pipe closed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict actions over sliding windows of videos, folders and live streams",
        description="Decode each input frame by frame as evaluation does (short side scaled while decoding, "
                    "centre crop), keep the last T frames and, from the T-th frame on, predict every s new "
                    "frames (T, s and the crop from the run's config). Inputs: video files, folders "
                    "(every video inside, recursively), '-' (stdin), a named pipe, a device (/dev/video0 or "
                    "FORMAT:TARGET, e.g. v4l2:/dev/video0), a URL (rtsp://, http://). Prints one line per "
                    "window and a summary per source (the mean of its windows' probabilities), then, for a "
                    "file, its prediction made as 'eval' makes it (the run's own clips of the whole file: "
                    "its sampling, clip count and crop; logits averaged); --json: one JSON object per line "
                    "instead. Exit 2 when any input could not be opened, stopped "
                    "early or was shorter than one window; the others are still processed.")
    p.add_argument("run_dir", type=Path, help="a training run folder (respike-nm train --out)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, folder, '-', pipe, device or URL")
    p.add_argument("--topk", type=positive_int, default=3, help="classes shown per window (default 3)")
    p.add_argument("--json", action="store_true", help="JSON lines: one object per window and per source")
    p.add_argument("--lava", type=Path, metavar="EXPORT_DIR",
                   help="run the SNN branch in Lava from this export (respike-nm export RUN_DIR --out DIR); "
                        "the predictions are then the quantized model's; the stage networks start with the "
                        "first window and keep running until the last")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_predict)


def run_predict(args) -> int:
    from respike_nm.data.errors import DataError
    from respike_nm.predict import (
        SourceSummary,
        expand_inputs,
        predict_source,
        predict_video,
        torch_classifier,
    )
    from respike_nm.records import to_data
    from respike_nm.train.builder import clip_spec
    from respike_nm.train.evaluate import default_device
    from respike_nm.train.run import load_run

    if args.lava is not None:
        model, cfg, ck, classify = _lava_classifier(args.run_dir, args.lava)
    else:
        model, cfg, ck = load_run(args.run_dir, device=default_device())
        classify = torch_classifier(model)
    spec = clip_spec(cfg)
    if spec.sampling != "consecutive":
        spread = (f"{spec.frames // spec.stride} groups of {spec.stride} consecutive frames"
                  if spec.sampling == "snippets" else f"{spec.frames} frames")
        print(f"respike-nm: note: this run was trained on {spread} spread over each whole clip "
              f"(data.sampling={spec.sampling}); a window is {spec.frames} consecutive frames, a shorter "
              "span than it learnt from; each file's last line is its prediction made as evaluation makes it",
              file=sys.stderr)
    failed = 0
    try:
        for source in expand_inputs(args.inputs):
            try:
                for item in predict_source(source, classify, ck.classes, spec, args.topk,
                                           _progress(args.quiet)):
                    _emit(json.dumps(to_data(item)) if args.json else _describe(item))
                    if isinstance(item, SourceSummary) and item.error:
                        failed += 1
                        kept = f" ({item.windows} window(s) before it stand)" if item.windows else ""
                        print(f"respike-nm: error: {item.source}: {item.error}{kept}", file=sys.stderr)
                if os.path.isfile(source):  # a file: also as evaluation sees it
                    whole = predict_video(source, classify, ck.classes, spec, args.topk)
                    _emit(json.dumps(to_data(whole)) if args.json else _describe(whole))
            except DataError as exc:  # could not be opened: one line, then the next input
                failed += 1
                print(f"respike-nm: error: {exc}", file=sys.stderr)
                if args.json:
                    _emit(json.dumps(to_data(SourceSummary(source, 0, 0, (), exc.problem))))
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop, as a shell tool would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        print("respike-nm: stdout closed; stopped", file=sys.stderr)
        return SIGPIPE_EXIT
    finally:
        if hasattr(classify, "close"):  # the Lava path's running stage networks
            classify.close()
    return 2 if failed else 0


def _lava_classifier(run_dir: Path, export_dir: Path):
    """``(model, cfg, checkpoint, classifier)`` with the SNN of ``export_dir`` in Lava; the export must
    hold this run's integers (the hybrid mixes the run's ANN with the export's SNN): a difference is
    refused, another checkpoint file with the same integers a warning
    (:func:`conversion.pipeline.checkpoint_warning`)."""
    from conversion.hybrid import HybridClassifier
    from conversion.manifest import MANIFEST_NAME
    from conversion.netx_check import check_export
    from conversion.pipeline import checkpoint_warning
    from conversion.verify import check_model_fits, compare_export
    from respike_nm.train.run import load_run

    manifest = check_export(export_dir)
    model, cfg, ck = load_run(run_dir, quantize=True)
    if warning := checkpoint_warning(run_dir, manifest):
        print(f"respike-nm: warning: {warning}", file=sys.stderr)
    model.eval()
    check_model_fits(model, manifest, (cfg.data.size, cfg.data.size), export_dir / MANIFEST_NAME)
    if differences := compare_export(model, manifest, export_dir):
        raise UsageError(f"{export_dir}: the export does not hold this run's integers "
                         f"({'; '.join(differences)}); export the run again")
    return model, cfg, ck, HybridClassifier(model, manifest, export_dir)


def _progress(quiet: bool):
    def bar(it, desc="", total=0):
        return tqdm(it, desc=desc, total=total or None, unit="frame", file=sys.stderr, leave=False,
                    disable=quiet)

    return bar


def _emit(line: str) -> None:
    """A line on stdout at once (a live stream's consumer reads it while the stream goes on)."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _describe(item) -> str:
    from respike_nm.predict import VideoPrediction, WindowPrediction

    if isinstance(item, VideoPrediction):
        if item.error:
            return f"{item.source}: as evaluated: no prediction ({item.error})"
        return f"{item.source}: as evaluated ({item.clips} clip(s) of the whole file): {_scores(item.top)}"
    if isinstance(item, WindowPrediction):
        when = f" ({item.start_s:.2f}-{item.end_s:.2f} s)" if item.start_s is not None \
            and item.end_s is not None else ""
        return (f"{item.source} window {item.window}: frames {item.first_frame}-{item.last_frame}{when}: "
                f"{_scores(item.top)} [{item.latency_s * 1e3:.0f} ms]")
    if not item.windows:
        return f"{item.source}: no window over {item.frames} frame(s)"
    return f"{item.source}: {item.windows} window(s) over {item.frames} frame(s): {_scores(item.top)}"


def _scores(top) -> str:
    return ", ".join(f"{c.name} {c.prob:.3f}" for c in top)
