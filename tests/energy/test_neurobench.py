"""Our SNN counts against NeuroBench's own metrics (neurobench 2.3: ``SynapticOperations``,
``ActivationSparsity``), run through its ``Benchmark`` on the same network and clips.

Where the definitions coincide they must agree exactly: effective MACs of the graded first layer and
effective accumulates of the binary layers (a nonzero input times the outputs it reaches, borders
included), and activation sparsity (zero outputs of every spiking neuron over all neuron-steps = 1 -
our spikes / neuron updates). Where they differ, the tests pin down how:

- NeuroBench counts a connection only through a nonzero weight (its binary copy of the layer); we
  count every connection, as the chip routes a spike to every synapse of its fan-out.
- NeuroBench's ``Dense`` runs an all-ones input, so zero padding adds nothing; our dense counts
  include the padded taps, as MAC counters (ptflops) do.
- NeuroBench's ``ActivationSparsity`` is over neuron outputs; our ``Totals.ActivationSparsity`` is
  over synapse inputs (the graded residual frames included), so the two are different numbers.
"""

from __future__ import annotations

import pytest
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import TorchModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from respike_nm.energy.counters import count_ops, totals
from respike_nm.models.neurons import CubaLIF
from respike_nm.models.snn import SNNSpec, SpikingConv

CLIPS = 4


class _Stage(nn.Module):
    """A stage network as the SNN branch builds one: graded first layer, binary after (one stride 2)."""

    def __init__(self):
        super().__init__()
        self.snn = nn.Sequential(SpikingConv(3, 8, 1, SNNSpec(), graded_input=True),
                                 SpikingConv(8, 16, 2, SNNSpec()), SpikingConv(16, 16, 1, SNNSpec()))

    def forward(self, x):
        return self.snn(x)


def _stage(seed: int) -> _Stage:
    torch.manual_seed(seed)
    net = _Stage().eval()
    with torch.no_grad():
        for layer in net.snn:
            layer.synapse.conv.weight.mul_(3.0)  # every layer spikes
    return net


def _ours(net: nn.Module, x: torch.Tensor):
    with torch.no_grad(), count_ops(net) as log:
        net(x)
    return list(log.layers.values())


def _neurobench(net: nn.Module, x: torch.Tensor) -> dict:
    model = TorchModel(net)
    model.add_activation_module(CubaLIF)  # our neuron, as NeuroBench's hooks should see it
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=len(x))
    bench = Benchmark(model, loader, [], [], [[], [SynapticOperations, ActivationSparsity]])
    return bench.run(quiet=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_effective_operations_and_sparsity_equal_neurobench(seed):
    net = _stage(seed)
    x = torch.randn(CLIPS, 3, 12, 12, 5, generator=torch.Generator().manual_seed(seed))
    ours = _ours(net, x)
    nb = _neurobench(net, x)
    assert [c.op for c in ours] == ["graded", "synop", "synop"]
    assert all(c.spikes_out > 0 for c in ours[:2])  # the layers feeding the binary ones fire
    assert all(c.effective_acs > 0 for c in ours[1:])
    t = totals(ours)
    ops = nb["SynapticOperations"]  # per sample
    assert ops["Effective_MACs"] == t.Effective_MACs / CLIPS > 0
    assert ops["Effective_ACs"] == t.Effective_ACs / CLIPS > 0
    assert nb["ActivationSparsity"] == pytest.approx(1 - t.spikes / t.neuron_updates, abs=1e-12)
    assert nb["ActivationSparsity"] != pytest.approx(t.ActivationSparsity, abs=1e-3)  # inputs, not outputs


def test_dense_operations_differ_by_the_padded_taps():
    """NeuroBench's dense count is every in-frame connection: our effective count on an all-ones
    input, which is below our dense count by exactly the taps that fall on padding."""
    net = _stage(0)
    x = torch.randn(CLIPS, 3, 12, 12, 5, generator=torch.Generator().manual_seed(0))
    nb = _neurobench(net, x)["SynapticOperations"]["Dense"]
    ours = totals(_ours(net, x))
    in_frame = 0.0
    for layer in net.snn:  # each synapse on all-ones input of its own shape
        c_in = layer.synapse.conv.in_channels
        h = 12 if c_in != 16 else 6
        ones = torch.ones(CLIPS, c_in, h, h, 5)
        c = _ours(nn.Sequential(layer.synapse), ones.permute(0, 4, 1, 2, 3).reshape(-1, c_in, h, h))[0]
        in_frame += c.effective_macs + c.effective_acs
    assert nb == in_frame / CLIPS
    assert nb < (ours.Dense_MACs + ours.Dense_ACs) / CLIPS


def test_neurobench_skips_zero_weights_and_we_do_not():
    """Zeroing 4 of the last layer's 16 output channels leaves its input spikes, and our count of its
    accumulates, unchanged; NeuroBench's drops by exactly that layer's 4/16."""
    net = _stage(0)
    x = torch.randn(CLIPS, 3, 12, 12, 5, generator=torch.Generator().manual_seed(0))
    before_ours, before_nb = _ours(net, x), _neurobench(net, x)["SynapticOperations"]["Effective_ACs"]
    with torch.no_grad():
        net.snn[2].synapse.conv.weight[:4] = 0
    after_ours, after_nb = _ours(net, x), _neurobench(net, x)["SynapticOperations"]["Effective_ACs"]
    assert [c.effective_acs for c in after_ours] == [c.effective_acs for c in before_ours]
    last = before_ours[2].effective_acs / CLIPS
    assert last > 0
    assert after_nb == before_nb - last * 4 / 16
