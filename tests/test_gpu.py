"""CUDA checks, run where a GPU is present (marker ``gpu``; skipped with the reason elsewhere):
an AMP training step of the tiny hybrid, and SLAYER's CUDA neuron against its CPU neuron."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_TRAIN

from respike_nm.config import apply_overrides, load_config
from respike_nm.models.neurons import CubaLIF, paper_lif
from respike_nm.train.builder import build_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def test_amp_training_step_on_cuda_lowers_the_loss_on_its_batch():
    cfg = apply_overrides(load_config("tiny"), SMALL_TRAIN)
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", num_classes=4).cuda().train()
    video = torch.randn(4, cfg.data.frames, 3, cfg.data.size, cfg.data.size, device="cuda")
    labels = torch.arange(4, device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    scaler = torch.cuda.amp.GradScaler()
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(video), labels)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_slayer_cuda_neuron_spikes_equal_the_cpu_ones():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 8, 6, 6, 12, generator=g) * 1.2
    cpu = CubaLIF(paper_lif(), "slayer")(x)
    gpu = CubaLIF(paper_lif(), "slayer").cuda()(x.cuda()).cpu()
    assert 0 < cpu.mean() < 1 and torch.equal(gpu, cpu)
