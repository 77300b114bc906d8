"""``predict --lava`` keeps its stage networks running between windows: the same logits as building
and stopping every network per window, and as the quantized PyTorch model."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_TRAIN, liven_run

from conversion.hybrid import HybridClassifier
from conversion.netx_check import check_export
from conversion.pipeline import export_run
from respike_nm.config import apply_overrides, load_config
from respike_nm.train import builder
from respike_nm.train.loop import train
from respike_nm.train.run import load_run


@pytest.mark.lava
def test_live_networks_give_the_per_window_logits(tmp_path):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1"]), "hybrid", run)
    liven_run(run)  # every SNN layer spikes
    export_run(run, tmp_path / "export")
    manifest = check_export(tmp_path / "export")
    model, cfg, _ = load_run(run, quantize=True)
    model.eval()
    video, _ = builder.test_clips(cfg, 3)
    windows = [video[i:i + 1] for i in range(3)]
    with torch.no_grad():
        expected = [model(w) for w in windows]
    per_window = HybridClassifier(model, manifest, tmp_path / "export", live=False)
    with HybridClassifier(model, manifest, tmp_path / "export") as live:
        got = []
        for w in windows:
            got.append(live(w))
            if len(got) == 1:
                first = dict(live.networks)
        assert live.networks == first  # built once, kept for every window
        assert live.calls == 3 and live.setup_seconds > 0
        groups = cfg.data.frames // cfg.data.stride  # key-frame groups (stage clips) per window
        assert live.lava_steps == 3 * sum((groups + net.tail) * net.time_steps for net in first.values())
    assert live.networks is None and not any(net._open for net in first.values())  # stopped
    for w, g, e in zip(windows, got, expected, strict=True):
        assert torch.equal(g, per_window(w))
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
    assert not torch.equal(got[0], got[1])  # the windows differ
