"""Predictions over a stream of frames: a ring buffer of the last T frames, a window every s new ones.

Sources (:func:`open_source`): video files, and live inputs PyAV opens: a device (``/dev/video0``,
or ``FORMAT:TARGET`` with an FFmpeg input format such as ``v4l2:/dev/video0`` or ``lavfi:testsrc``),
a network URL (``rtsp://``, ``http://``, ...), a pipe (``-`` for stdin, or a named FIFO). Frames are
decoded one by one as they arrive (:func:`decode_frames`).

Pixels are those of evaluation: each frame is scaled to the clip spec's short side by FFmpeg while
it is converted to RGB (as :func:`respike_nm.data.video.read_frames` does), then centre-cropped and
resized by ``ClipTransform(size, train=False)`` (the run's eval crop) and normalised, so a window
of a file gets the tensor the evaluation pipeline makes of those frames.

Windows (:func:`predict_frames`): after the first T frames, one every s frames over the last T, so
window ``w`` covers frames ``w*s .. w*s + T - 1`` and N frames give ``floor((N - T) / s) + 1``
windows. Each window's probabilities are the softmax of the classifier's logits; a source's summary
is the mean of its windows' probabilities.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import av
import numpy as np
import torch

from respike_nm.data.errors import DataError, VideoDecodeError
from respike_nm.data.records import ClipSpec
from respike_nm.data.transforms import ClipTransform
from respike_nm.data.video import VIDEO_EXTENSIONS, _open, _rgb, find_videos, open_container
from respike_nm.progress import Progress, no_progress

Classifier = Callable[[torch.Tensor], torch.Tensor]  # uint8 [1, T, 3, S, S] -> logits [1, classes]
STDIN = "-"
URL_TIMEOUT_S = 10.0  # open and read timeout of a network source: a stalled stream becomes an error
_FORMAT_PREFIX = re.compile(r"([A-Za-z0-9_]+):(.+)")


class StreamStopped(DataError):
    """A source that stopped before its end (decode error, truncated file); ``frames`` decoded."""

    def __init__(self, source: str, frames: int, problem: str):
        self.frames = frames
        super().__init__(source, problem)


@dataclass(frozen=True)
class ClassScore:
    name: str
    prob: float


@dataclass(frozen=True)
class WindowPrediction:
    """One window: frames ``first_frame .. last_frame`` (decode order, from 0); ``start_s`` / ``end_s``
    their timestamps in seconds (None when the stream has none); ``top`` the k most probable classes;
    ``latency_s`` seconds from the decoder handing over the last frame to the prediction."""

    source: str
    window: int
    first_frame: int
    last_frame: int
    start_s: float | None
    end_s: float | None
    top: tuple[ClassScore, ...]
    latency_s: float
    type: Literal["window"] = "window"


@dataclass(frozen=True)
class SourceSummary:
    """A source's end: ``frames`` decoded, ``windows`` predicted, ``top`` of the windows' mean
    probabilities (empty without a window), ``error`` why it stopped early or gave no window."""

    source: str
    frames: int
    windows: int
    top: tuple[ClassScore, ...]
    error: str | None = None
    type: Literal["summary"] = "summary"


@dataclass(frozen=True)
class VideoPrediction:
    """A whole file as evaluation sees it (:func:`predict_video`): the run's own clips of it
    (``clips``: its sampling, clip count and centre crop), logits averaged over them, ``top`` of the
    softmax of that mean; ``error`` when the file could not be read that way."""

    source: str
    clips: int
    top: tuple[ClassScore, ...]
    error: str | None = None
    type: Literal["video"] = "video"


class Frame(NamedTuple):
    index: int
    rgb: np.ndarray  # uint8 [H, W, 3], scaled to the spec's short side
    time_s: float | None
    arrived: float  # time.perf_counter() when the decoder returned it


@dataclass
class OpenedSource:
    """An open container; ``live``: a device, URL or pipe (no length known in advance);
    ``header_frames``: the frame count a file's header announces (0: none)."""

    name: str
    container: av.container.InputContainer
    live: bool
    header_frames: int = 0


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Folders become their video files (recursively, by extension, sorted); anything else stays as
    given (files, devices, URLs, ``-``). An empty folder stays, so that opening it reports it."""
    out: list[str] = []
    for text in inputs:
        if text != STDIN and os.path.isdir(text):
            found = find_videos([text])
            out.extend(str(p) for p in found) if found else out.append(text)
        else:
            out.append(text)
    return out


def open_source(text: str) -> OpenedSource:
    """Open ``text`` as described in the module docstring; :class:`VideoDecodeError` names it if not."""
    av.logging.set_level(None)  # as respike_nm.data.video._open: FFmpeg logging from threads can deadlock
    if text == STDIN:
        return _open_live(text, "pipe:0")
    if "://" in text:
        return _open_live(text, text, timeout=URL_TIMEOUT_S)
    if os.path.exists(text):
        mode = os.stat(text).st_mode
        if stat.S_ISDIR(mode):
            raise VideoDecodeError(text, "folder holds no video files "
                                         f"({' '.join(sorted(VIDEO_EXTENSIONS))})")
        if stat.S_ISFIFO(mode):
            return _open_live(text, text)
        if stat.S_ISCHR(mode):
            return _open_live(text, text, fmt=_device_format(text))
        container = _open(Path(text))
        return OpenedSource(text, container, live=False,
                            header_frames=max(int(container.streams.video[0].frames), 0))
    m = _FORMAT_PREFIX.fullmatch(text)
    if m and m[1] in av.formats_available:
        return _open_live(text, m[2], fmt=m[1])
    raise VideoDecodeError(text, "no such file, folder or device, and not a URL or FORMAT:TARGET")


def _device_format(text: str) -> str:
    if "v4l2" not in av.formats_available:
        raise VideoDecodeError(text, "is a device, but this FFmpeg build has no v4l2 input")
    return "v4l2"


def _open_live(name: str, target: str, fmt: str | None = None, timeout: float | None = None) -> OpenedSource:
    container = open_container(name, target, "cannot open", format=fmt, timeout=timeout)
    return OpenedSource(name, container, live=True)


def decode_frames(source: OpenedSource, short_side: int | None) -> Iterator[Frame]:
    """The source's frames as they decode; closes the container at the end.

    Raises :class:`StreamStopped` on a decode or read error, and at the end of a file whose header
    announces more frames than decoded (truncated or damaged).
    """
    count = 0
    try:
        stream = source.container.streams.video[0]
        if not source.live:
            stream.thread_type = "AUTO"  # throughput; live sources keep the low-latency default
        try:
            for frame in source.container.decode(stream):
                arrived = time.perf_counter()
                yield Frame(count, _rgb(frame, short_side), frame.time, arrived)
                count += 1
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise StreamStopped(source.name, count, f"stopped after {count} frame(s): {reason}") from None
        if source.header_frames > count:
            raise StreamStopped(source.name, count, f"stopped after {count} of the {source.header_frames} "
                                "frames its header announces (truncated or damaged)")
    finally:
        source.container.close()


def top_classes(probs: torch.Tensor, classes: Sequence[str], k: int) -> tuple[ClassScore, ...]:
    """The ``k`` most probable of ``probs [classes]``, most probable first."""
    values, indices = probs.topk(min(k, len(classes)))
    return tuple(ClassScore(classes[int(i)], float(v)) for v, i in zip(values, indices, strict=True))


@torch.no_grad()
def predict_frames(frames: Iterable[Frame], source: str, classify: Classifier, classes: Sequence[str],
                   spec: ClipSpec, topk: int = 5) -> Iterator[WindowPrediction | SourceSummary]:
    """One :class:`WindowPrediction` per window of ``frames`` (as they come), then a :class:`SourceSummary`.

    A :class:`StreamStopped` from ``frames`` ends the source: the windows until then stand and the
    summary carries the error; fewer than T frames give a summary with an error and no window.
    """
    T, s = spec.frames, spec.stride
    transform = ClipTransform(spec.size, train=False, crop_fraction=spec.eval_crop_fraction)
    ring: deque[tuple[int, torch.Tensor, float | None]] = deque(maxlen=T)
    total: torch.Tensor | None = None
    windows = count = 0
    error = None
    try:
        for f in frames:
            ring.append((f.index, transform(f.rgb[None])[0], f.time_s))
            count += 1
            if count < T or (count - T) % s:
                continue
            clip = torch.stack([r[1] for r in ring])[None]  # uint8 [1, T, 3, S, S]: the model normalises
            probs = classify(clip)[0].float().cpu().softmax(-1)
            total = probs if total is None else total + probs
            latency = time.perf_counter() - f.arrived
            yield WindowPrediction(source, windows, ring[0][0], ring[-1][0], ring[0][2], ring[-1][2],
                                   top_classes(probs, classes, topk), latency)
            windows += 1
    except StreamStopped as exc:
        error = exc.problem
    if count < T:
        short = f"{count} frame(s), fewer than one window of T={T}: no prediction"
        error = f"{error}; {short}" if error else short
    top = () if total is None else top_classes(total / windows, classes, topk)
    yield SourceSummary(source, count, windows, top, error)


def predict_source(text: str, classify: Classifier, classes: Sequence[str], spec: ClipSpec, topk: int = 5,
                   progress: Progress = no_progress) -> Iterator[WindowPrediction | SourceSummary]:
    """:func:`open_source`, :func:`decode_frames` and :func:`predict_frames` on one input.

    Raises :class:`VideoDecodeError` (on the first ``next``) when the source cannot be opened.
    ``progress(frames, name, total)`` wraps the frame iterator (total 0: unknown).
    """
    opened = open_source(text)
    frames = decode_frames(opened, spec.decode_short_side)
    try:
        yield from predict_frames(progress(frames, text, opened.header_frames), text, classify, classes,
                                  spec, topk)
    finally:
        frames.close()


@torch.no_grad()
def video_logits(path: str | Path, classify: Classifier, spec: ClipSpec) -> tuple[torch.Tensor, int]:
    """The logits evaluation gives a video file: its evaluation clips (``eval_indices`` of the
    spec's sampling and ``eval_clips``, or every window with ``eval_protocol=all``), centre-cropped
    and normalised exactly as the test set's, classified one by one, averaged -> ``([classes], clips)``.
    A file that cannot be decoded raises :class:`VideoDecodeError`."""
    from respike_nm.data.datasets import VideoClipDataset, with_clip_protocol
    from respike_nm.data.records import VideoRecord

    clips = with_clip_protocol(VideoClipDataset([VideoRecord(Path(path), 0, "")], spec, train=False))
    total, n = None, 0
    for j in range(len(clips)):
        sample = clips[j]
        if sample is None:
            raise VideoDecodeError(str(path), clips.failures[-1].problem)
        for clip in sample.video:  # uint8 [K, T, 3, S, S]: each of the sample's clips
            logits = classify(clip[None])[0].float().cpu()
            total = logits if total is None else total + logits
            n += 1
    if total is None:
        raise VideoDecodeError(str(path), "no evaluation clip")
    return total / n, n


def predict_video(path: str | Path, classify: Classifier, classes: Sequence[str], spec: ClipSpec,
                  topk: int = 5) -> VideoPrediction:
    """:func:`video_logits` of a file as a :class:`VideoPrediction` (the error instead of raising)."""
    try:
        logits, clips = video_logits(path, classify, spec)
    except DataError as exc:
        return VideoPrediction(str(path), 0, (), exc.problem)
    return VideoPrediction(str(path), clips, top_classes(logits.softmax(-1), classes, topk))


def torch_classifier(model: torch.nn.Module) -> Classifier:
    """The PyTorch model in eval mode as a :data:`Classifier`, on the model's device."""
    model.eval()
    device = next(model.parameters()).device

    def classify(video: torch.Tensor) -> torch.Tensor:
        return model(video.to(device))

    return classify
