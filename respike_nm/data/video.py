"""Video decoding with PyAV.

Any container/codec FFmpeg reads (GIF included). Files are opened with
``metadata_errors="ignore"`` so a broken metadata tag (non-UTF-8 text) does not stop decoding.
Frames come out as ``uint8 [N, H, W, 3]`` RGB in decode order, indexed by decoded frame number,
so variable frame rates need no special case: sampling works on frame indices, not timestamps.

Padding policy: when a requested frame index lies past the last frame that decodes (short clip,
truncated file, container over-stating its length), the last decoded frame is repeated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from respike_nm.data.errors import VideoDecodeError
from respike_nm.data.records import VideoMeta

VIDEO_EXTENSIONS = frozenset(
    ".avi .mp4 .m4v .mkv .webm .mov .mpg .mpeg .gif .flv .wmv .3gp .ogv .ts".split()
)


def _open(path: Path) -> av.container.InputContainer:
    # torchvision.io turns PyAV's Python log callback on when imported; with threaded decoding a
    # decoder thread that logs then waits for the GIL while closing the codec holds it: deadlock
    # (PyAV issues #751, #909). Keep FFmpeg's messages off; errors still carry their codes.
    av.logging.set_level(None)
    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty")
    return open_container(path, str(path))


def open_container(name, target: str, unreadable: str = "not a readable video container",
                   **options) -> av.container.InputContainer:
    """``av.open(target, **options)`` with a video stream, or :class:`VideoDecodeError` naming
    ``name``: ``unreadable`` when FFmpeg refuses it, "cannot open" for other errors."""
    try:
        container = av.open(target, metadata_errors="ignore", **options)
    except av.FFmpegError as exc:
        raise VideoDecodeError(name, f"{unreadable} ({exc.strerror or exc})") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(name, f"cannot open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(name, "has no video stream")
    return container


def _meta(path: Path, container: av.container.InputContainer, num_frames: int) -> VideoMeta:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    return VideoMeta(
        path=str(path),
        num_frames=num_frames,
        fps=float(rate) if rate else 0.0,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=stream.codec_context.name,
        duration_s=duration,
        header_frames=max(int(stream.frames), 0),
    )


def probe_video(path: str | Path) -> VideoMeta:
    """Read a video's metadata; the frame count is the container's, or counted packets."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        num_frames = stream.frames
        if num_frames <= 0:
            num_frames = sum(1 for p in container.demux(stream) if p.size)
        return _meta(path, container, num_frames)
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"cannot read packets ({exc.strerror or exc})") from None
    finally:
        container.close()


def read_frames(
    path: str | Path, indices: Sequence[int] | None = None, short_side: int | None = None
) -> tuple[np.ndarray, VideoMeta]:
    """Decode frames ``indices`` (all frames when None) of ``path``.

    Returns ``uint8 [len(indices), H, W, 3]`` and the metadata, whose ``num_frames`` is the number
    of frames actually decoded when all were asked for. Decoding stops after the largest index.
    Indices past the end get the last decoded frame (the padding policy above). ``short_side``
    scales frames (aspect kept) while converting to RGB, in FFmpeg's swscale (area filter).
    """
    path = Path(path)
    return _decode(path, _open(path), indices, short_side)


def read_sampled(
    path: str | Path, choose: Callable[[int], np.ndarray], short_side: int | None = None
) -> tuple[np.ndarray, VideoMeta]:
    """Decode the frames that ``choose(num_frames)`` picks, opening the file once.

    ``choose`` gets the container's frame count (or counted packets when the container does not
    say) and returns an integer index array of any shape ``S``; the result is ``uint8 [*S, H, W, 3]``.
    ``short_side`` as in :func:`read_frames`.
    """
    path = Path(path)
    container = _open(path)
    num_frames = container.streams.video[0].frames
    if num_frames <= 0:
        try:
            num_frames = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
            container.seek(0)  # back to the first packet: cheaper than opening the file again
        except av.FFmpegError as exc:
            container.close()
            raise VideoDecodeError(path, f"cannot read packets ({exc.strerror or exc})") from None
    indices = np.asarray(choose(max(num_frames, 1)), dtype=np.int64)
    frames, meta = _decode(path, container, indices.reshape(-1).tolist(), short_side)
    return frames.reshape(*indices.shape, *frames.shape[1:]), meta


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(H, W)`` with the shorter side scaled to ``short_side`` (unchanged when None)."""
    if short_side is None:
        return height, width
    k = short_side / min(height, width)
    return max(1, round(height * k)), max(1, round(width * k))


def _rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    if short_side is None or min(frame.height, frame.width) == short_side:
        return frame.to_ndarray(format="rgb24")
    h, w = scaled_size(frame.height, frame.width, short_side)
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()


def _decode(
    path: Path, container: av.container.InputContainer, indices: Sequence[int] | None,
    short_side: int | None = None,
) -> tuple[np.ndarray, VideoMeta]:
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    if wanted is not None and (not wanted or wanted[0] < 0):
        container.close()
        raise ValueError(f"{path}: frame indices must be non-negative and non-empty")
    last = None if wanted is None else wanted[-1]
    want_set = None if wanted is None else set(wanted)
    kept: dict[int, np.ndarray] = {}
    frames: list[np.ndarray] = []
    count = 0
    last_frame = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if want_set is None:
                frames.append(_rgb(frame, short_side))
            elif count in want_set:
                kept[count] = _rgb(frame, short_side)
            last_frame = frame
            count += 1
            if last is not None and count > last:
                break
        meta = _meta(path, container, count if wanted is None else stream.frames or count)
    except av.FFmpegError as exc:
        # A truncated or damaged stream: keep what decoded before the damage.
        if count == 0:
            raise VideoDecodeError(path, f"no frame decodes ({exc.strerror or exc})") from None
        meta = _meta(path, container, count)
    finally:
        container.close()
    if count == 0:
        raise VideoDecodeError(path, "contains no decodable video frames")
    if wanted is None:
        return np.stack(frames), meta
    pad = None
    out = []
    for i in indices:  # type: ignore[union-attr]
        if i in kept:
            out.append(kept[i])
        else:  # past the end: repeat the last decoded frame
            if pad is None:
                pad = _rgb(last_frame, short_side)
            out.append(pad)
    return np.stack(out), meta


def find_videos(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, by video extension) into a sorted file list.

    Files named explicitly are kept whatever their extension; missing paths are kept too, so that
    the caller reports them as failures rather than losing them.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
            )
        else:
            out.append(p)
    return out
