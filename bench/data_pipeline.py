"""Data pipeline throughput against raw PyAV decoding of the same frames, on the real clips.

Pipeline: open + count frames + pick the clip's indices + decode (scaled to the short side) +
crop/resize, as a DataLoader worker does per clip, then normalise and decompose (done per batch
where the model runs; counted here per clip). Raw: open + decode up to the same last frame,
converting the same frames to RGB arrays, with the same decoder threading. Both are timed side
by side, interleaved clip by clip over several rounds, and reported as a ratio (clips/s of the
pipeline over clips/s of raw decoding), since absolute speeds on a shared machine are noisy.

Usage: python bench/data_pipeline.py [REALDATA_DIR]   (default: $RESPIKE_REALDATA or ../shared/realdata)
Writes bench/results/data_pipeline.json and .png.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

from respike_nm.data.datasets import VideoClipDataset
from respike_nm.data.decompose import decompose
from respike_nm.data.records import ClipSpec, VideoRecord
from respike_nm.data.transforms import normalize
from respike_nm.data.video import find_videos

ROUNDS = 3
RESULTS = Path(__file__).parent / "results"


def raw_decode(path: Path, indices: np.ndarray) -> list[np.ndarray]:
    wanted, last = set(indices.tolist()), int(indices.max())
    out = []
    with av.open(str(path), metadata_errors="ignore") as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, frame in enumerate(c.decode(s)):
            if i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= last:
                break
    return out


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else
                os.environ.get("RESPIKE_REALDATA") or Path(__file__).parents[1] / "../shared/realdata")
    files = find_videos([root]) if root.is_dir() else []
    if not files:
        print(f"data_pipeline: no real clips under {root}; pass a folder of videos", file=sys.stderr)
        return 1
    torch.set_num_threads(1)  # one DataLoader worker's view
    results = {}
    for mode, train in (("eval", False), ("train", True)):
        spec = ClipSpec(frames=16, stride=4, size=112)
        ds = RecordingDataset([VideoRecord(f, 0, "x") for f in files], spec, train=train, seed=0)
        t_pipe = t_raw = 0.0
        for r in range(ROUNDS):
            ds.set_epoch(r)
            for i, f in enumerate(files):
                t0 = time.perf_counter()
                sample = ds[i]
                decompose(normalize(sample.video), spec.stride)
                t1 = time.perf_counter()
                raw_decode(f, ds.last_indices.reshape(-1))
                t2 = time.perf_counter()
                t_pipe += t1 - t0
                t_raw += t2 - t1
        n = ROUNDS * len(files)
        results[mode] = {"clips": n, "pipeline_clips_per_s": n / t_pipe,
                         "raw_decode_clips_per_s": n / t_raw, "ratio": t_raw / t_pipe}
    out = {
        "benchmark": "data_pipeline",
        "clips": len(files),
        "rounds": ROUNDS,
        "clip": {"frames": 16, "stride": 4, "size": 112},
        "ratio_vs_raw_decode": round(results["eval"]["ratio"], 3),
        "ratio_vs_raw_decode_train": round(results["train"]["ratio"], 3),
        "modes": results,
        "torch_threads": 1,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_pipeline.json").write_text(json.dumps(out, indent=2) + "\n")
    _plot(results, RESULTS / "data_pipeline.png")
    print(json.dumps(out, indent=2))
    return 0


class RecordingDataset(VideoClipDataset):
    """Remembers the frame indices the sampler chose, so raw decoding takes the same frames."""

    def frames(self, i, choose):
        def record(n):
            self.last_indices = choose(n)
            return self.last_indices

        return super().frames(i, record)


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    modes = list(results)
    x = np.arange(len(modes))
    ax.bar(x - 0.2, [results[m]["raw_decode_clips_per_s"] for m in modes], 0.4, label="raw PyAV decode")
    ax.bar(x + 0.2, [results[m]["pipeline_clips_per_s"] for m in modes], 0.4, label="full pipeline")
    for k, m in enumerate(modes):
        ax.text(k + 0.2, results[m]["pipeline_clips_per_s"], f"{results[m]['ratio']:.2f}x",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, modes)
    ax.set_ylabel("clips / s (one core)")
    ax.set_title("16x112x112 clips from the real clips", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
