"""Hardware mapping: counts against an explicit connectivity matrix, placement against brute force and
hand arithmetic on profiles written here (not the shipped figures), and the CLI on a tiny export."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import SMALL_TRAIN

from conversion.mapping import (
    MappingError,
    conv_counts,
    distinct_weights,
    layer_map,
    map_export,
    map_target,
    place_layer,
    read_mapping,
    weight_bits_used,
)
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.hardware import load_profile
from respike_nm.train.loop import train

SRC = {"unit": "count", "source": "test", "kind": "derived"}


def profile(tmp_path, name="chip", **limits):
    """A neuromorphic profile file holding only ``limits`` (bit units for *_bits keys)."""
    units = {k: ("bit" if "bits" in k else "flag" if k == "conv_weight_sharing" else "count") for k in limits}
    raw = {"name": name, "target": "neuromorphic",
           "costs": {"synop": {"value": 1, "unit": "pJ", "source": "test", "kind": "derived"}},
           "limits": {k: {**SRC, "value": v, "unit": units[k]} for k, v in limits.items()}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_profile(path)


def connectivity(in_shape, cout, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """``[out neurons, in neurons]`` 0/1 matrix from torch's conv2d on one-hot inputs (ones weights)."""
    n_in = math.prod(in_shape)
    eye = torch.eye(n_in).reshape(n_in, *in_shape)
    out = torch.nn.functional.conv2d(eye, torch.ones(cout, in_shape[0], *kernel), stride=stride,
                                     padding=padding, dilation=dilation)
    return (out.reshape(n_in, -1).T > 0).numpy(), tuple(out.shape[1:])


def ones_layer(in_shape, cout, kernel, stride, padding, value=1, input_bits=1, weight=None):
    weight = np.full((cout, in_shape[0], *kernel), value) if weight is None else weight
    return layer_map(0, "L", "conv", in_shape, weight, kernel, stride, padding, (1, 1), input_bits)


GEOMETRIES = [
    ((2, 7, 9), 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    ((1, 5, 6), 2, (3, 2), (1, 2), (0, 1), (1, 1)),
    ((3, 6, 6), 2, (3, 3), (1, 1), (2, 2), (2, 2)),
    ((4, 3, 2), 5, (3, 2), (1, 1), (0, 0), (1, 1)),  # dense: the kernel covers the input
]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_counts_match_the_connectivity_matrix(geom):
    m, out = connectivity(*geom)
    shape, synapses, fan_in, fan_out = conv_counts(*geom)
    assert shape == out
    assert synapses == m.sum() and fan_in == m.sum(1).max() and fan_out == m.sum(0).max()


def test_weight_bits_and_distinct_weights_by_hand():
    assert weight_bits_used(np.array([-256, 254, 2])) == 8  # shift 1: [-128, 127, 1]
    assert weight_bits_used(np.array([4, -8, 12])) == 3  # shift 2: [1, -2, 3] fits [-4, 3]
    assert weight_bits_used(np.array([3, -4])) == 3 and weight_bits_used(np.array([4, 0])) == 2
    assert weight_bits_used(np.zeros(3)) == 1 and weight_bits_used(np.array([-4, -12])) == 3
    with pytest.raises(MappingError, match="not integers"):
        weight_bits_used(np.array([0.5]))
    w = np.array([[[[1, 1], [2, 0]]], [[[5, 6], [7, -5]]]])
    assert distinct_weights(w) == 4


def brute_force_cores(geom, limits):
    """Fewest cores over every tiling (any channel group, any tile size), loads read off the matrix."""
    m, (c, h, w) = connectivity(*geom)
    idx = np.arange(c * h * w).reshape(c, h, w)
    best = None
    for g, th, tw in itertools.product(range(1, c + 1), range(1, h + 1), range(1, w + 1)):
        tiles = [idx[a:a + g, b:b + th, d:d + tw].ravel() for a in range(0, c, g)
                 for b in range(0, h, th) for d in range(0, w, tw)]
        loads = [(len(t), int(m[t].any(0).sum()), int(m[t].sum())) for t in tiles]
        if all(n <= limits[0] and ax <= limits[1] and syn <= limits[2] for n, ax, syn in loads):
            best = len(tiles) if best is None else min(best, len(tiles))
    return best


@pytest.mark.parametrize("limits", [(4, 12, 40), (4, 20, 40), (9, 30, 1000), (2, 100, 18), (27, 1000, 10**6)])
def test_cores_match_brute_force(tmp_path, limits):
    geom = ((2, 6, 5), 3, (3, 3), (2, 2), (1, 1), (1, 1))
    prof = profile(tmp_path, neurons_per_core=limits[0], fan_in=limits[1], synapses_per_core=limits[2])
    placement, _ = place_layer(ones_layer(*geom[:5]), prof)
    assert placement.cores == brute_force_cores(geom, limits)
    fits = placement.core_neurons <= limits[0] and placement.core_axons <= limits[1]
    assert placement.cores is None or fits


def test_dense_cores_and_chips_by_hand(tmp_path):
    # 100 -> 300 dense, weights 5 (4 bits): 400 bits per neuron; 4000 bits per core -> 10 neurons/core
    dense = ones_layer((100, 1, 1), 300, (1, 1), (1, 1), (0, 0), value=5)
    counts = (dense.neurons, dense.synapses, dense.fan_in, dense.fan_out, dense.weight_bits)
    assert counts == (300, 30000, 100, 300, 4)
    prof = profile(tmp_path, neurons_per_core=64, synaptic_memory_bits_per_core=4000, cores_per_chip=8)
    t = map_target((dense,), prof)
    assert t.cores == 30 and t.chips == 4 and t.fits  # ceil(300 / 10); ceil(30 / 8)
    split = {(e.limit, e.value, e.limit_value, e.effect) for e in t.exceeded}
    assert split == {("neurons_per_core", 300, 64, "split"),
                     ("synaptic_memory_bits_per_core", 120000, 4000, "split"),
                     ("cores_per_chip", 30, 8, "split")}
    t = map_target((dense,), profile(tmp_path, neurons_per_core=64, bits_per_synapse=20,
                                     synaptic_memory_bits_per_core=4000))
    assert t.cores == 150  # 2000 bits per neuron -> 2 neurons per core


def test_shared_kernels_store_each_kernel_once_per_core(tmp_path):
    # conv 8 -> 16 channels, 3x3, 4-bit weights: one output channel's kernel is 8*9*4 = 288 bits
    conv = ones_layer((8, 10, 10), 16, (3, 3), (1, 1), (1, 1), value=5)
    prof = profile(tmp_path, synaptic_memory_bits_per_core=1000, conv_weight_sharing=1)
    placement, _ = place_layer(conv, prof)
    assert placement.cores == 6  # 3 channels (864 bits) per core: ceil(16 / 3) = 6, pixels free
    assert placement.core_memory_bits == 3 * 288


def test_limits_no_placement_meets_are_listed_with_values(tmp_path):
    weight = np.full((4, 300, 1, 1), -128)
    weight[:, 0] = 1  # odd weights: no common shift, so -128 needs 8 bits
    dense = ones_layer((300, 1, 1), 4, (1, 1), (1, 1), (0, 0), input_bits=16, weight=weight)
    prof = profile(tmp_path, neurons_per_core=256, fan_in=256, weight_bits=6, fan_out=2)
    t = map_target((dense,), prof)
    assert t.cores is None and t.chips is None and not t.fits
    got = {(e.limit, e.value, e.limit_value, e.effect) for e in t.exceeded}
    assert got == {("fan_in", 300, 256, "unmappable"), ("weight_bits", 8, 6, "unmappable"),
                   ("fan_out", 4, 2, "unmappable"), ("graded_spike_bits", 16, None, "unmappable")}
    ok = map_target((dense,), profile(tmp_path, graded_spike_bits=16))
    assert ok.fits and ok.cores == 1 and ok.exceeded == ()


def test_bad_profiles_are_refused_naming_the_file(tmp_path):
    layer = ones_layer((1, 3, 3), 1, (1, 1), (1, 1), (0, 0))
    with pytest.raises(MappingError, match=r"chip\.yaml: limits\.conv_weight_sharing"):
        map_target((layer,), profile(tmp_path, conv_weight_sharing=2))
    with pytest.raises(MappingError, match="not neuromorphic"):
        map_target((layer,), load_profile("h100"))


def test_map_refuses_a_folder_without_manifest(tmp_path, capsys):
    assert main(["map", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_export_writes_mapping_json_and_map_agrees(tmp_path, capsys):
    run = tmp_path / "run"
    train(apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1"]), "hybrid", run)
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "loihi2" in capsys.readouterr().out
    written = json.loads((out / "mapping.json").read_text())
    assert main(["map", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == written
    report = read_mapping(out / "mapping.json")  # read back as the record the mapper made
    assert report == map_export(out) and report.export_dir == str(out)
    for edit, words in ((lambda d: d["layers"][0].update(neurons="many"), "layers[0].neurons: expected int"),
                        (lambda d: d.update(format_version=7), "format_version: this reader knows 1"),
                        (lambda d: d["targets"][0].pop("fits"), "missing field(s) fits")):
        bad = json.loads(json.dumps(written))
        edit(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(MappingError, match=re.escape(words)) as e:
            read_mapping(tmp_path / "bad.json")
        assert str(tmp_path / "bad.json") in str(e.value)
    manifest = json.loads((out / "manifest.json").read_text())
    shapes = [tuple(s) for st in manifest["stages"] for s in st["layer_shapes"]]
    assert [tuple(la["output_shape"]) for la in written["layers"]] == shapes
    for la in written["layers"]:  # 3x3 convs, padding 1, even sizes: stride 2 clips 1 tap, stride 1 clips 2
        (c, h, w), s = la["output_shape"], la["stride"][0]
        taps = [3 * n - (1 if s == 2 else 2) for n in (h, w)]
        assert la["synapses"] == c * la["input_shape"][0] * taps[0] * taps[1]
        assert la["neurons"] == c * h * w and la["unique_weights"] == c * la["input_shape"][0] * 9
    one_core = profile(tmp_path, neurons_per_core=10**6, graded_spike_bits=16)
    assert main(["map", str(out), "--targets", str(tmp_path / "chip.yaml"), "--json"]) == 0
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert target["profile"] == one_core.name and target["cores"] == len(shapes) and target["fits"]
    assert map_export(out, [one_core]).targets[0].chips == 1
