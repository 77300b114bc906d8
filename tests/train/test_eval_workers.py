"""``eval --workers``: the test set's whole batches split over forked processes; merged, the result
equals one process's (accuracies, loss, firing rates), and the merge itself is exact."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SMALL_TRAIN
from torch.utils.data import DataLoader, Subset

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.data.datasets import collate_clips
from respike_nm.train.builder import build_datasets
from respike_nm.train.evaluate import eval_result, eval_totals, merge_eval_totals
from respike_nm.train.loop import train
from respike_nm.train.run import load_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalw") / "run"
    # 4 classes x 5 test videos = 20 items, batches of 4: shards of 3 + 2 batches with 2 workers
    cfg = apply_overrides(load_config("tiny"), SMALL_TRAIN + ["train.epochs=1", "data.test_per_class=5"])
    train(cfg, "hybrid", out)
    return out


def test_cli_eval_with_two_workers_equals_one(run, capsys):
    results = {}
    for workers in (1, 2):
        assert main(["eval", str(run), "--workers", str(workers), "--json"]) == 0
        results[workers] = json.loads(capsys.readouterr().out)
    assert results[2] == results[1]
    assert results[1]["clips"] == 20 and any(results[1]["firing_rates"].values())  # activity was merged


def test_merged_totals_equal_one_pass(run):
    """Totals of the first 3 batches and of the last 2, merged, give one pass's result field for field;
    either part alone does not."""
    model, cfg, _ = load_run(run)
    _, test, _, _ = build_datasets(cfg)
    cpu = torch.device("cpu")

    def totals(items):
        loader = DataLoader(Subset(test, items), batch_size=4, collate_fn=collate_clips)
        return eval_totals(model, loader, cpu)

    whole = eval_result(totals(range(20)))
    first, second = totals(range(12)), totals(range(12, 20))
    assert eval_result(merge_eval_totals([first, second])) == whole
    assert eval_result(first) != whole and whole.clips == first.clips + second.clips
