"""Decomposition into key and residual frames (docs/method.md)."""

from __future__ import annotations

import pytest
import torch

from respike_nm.data.decompose import decompose, recompose
from respike_nm.data.errors import DecompositionError


@pytest.mark.parametrize("t, s", [(16, 4), (16, 2), (8, 8), (6, 3)])
def test_shapes_and_definition(t, s):
    video = torch.randn(2, t, 3, 5, 7)
    key, res = decompose(video, s)
    assert key.shape == (2, t // s, 3, 5, 7)
    assert res.shape == (2, t // s, s - 1, 3, 5, 7)
    for k in range(t // s):
        torch.testing.assert_close(key[:, k], video[:, k * s], rtol=0, atol=0)
        for j in range(1, s):
            # difference to the group's key frame, not to the previous frame
            expected = video[:, k * s + j] - video[:, k * s]
            torch.testing.assert_close(res[:, k, j - 1], expected, rtol=0, atol=0)


def test_key_plus_residual_reproduces_the_clip_exactly():
    video = torch.randint(-300, 300, (3, 16, 3, 8, 8)).float()  # integers: float sums are exact
    assert torch.equal(recompose(decompose(video, 4)), video)


def test_static_clip_has_zero_residuals():
    frame = torch.randn(1, 1, 3, 4, 4)
    _, res = decompose(frame.expand(1, 8, 3, 4, 4), 4)
    assert torch.count_nonzero(res) == 0


@pytest.mark.parametrize("t, s", [(15, 4), (16, 1), (3, 4)])
def test_bad_stride_is_a_clear_error(t, s):
    with pytest.raises(DecompositionError, match=f"s={s}"):
        decompose(torch.zeros(1, t, 3, 2, 2), s)


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        decompose(torch.zeros(16, 3, 2, 2), 4)
