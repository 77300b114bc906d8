"""The one convolution-size formula against PyTorch's own convolution."""

from __future__ import annotations

import itertools

import torch

from respike_nm.layout import conv_out


def test_conv_out_is_the_size_torch_computes():
    for size, k, s, p, d in itertools.product((1, 5, 8, 13), (1, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        if size + 2 * p < d * (k - 1) + 1:
            continue  # no window fits: torch refuses the input
        y = torch.nn.functional.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                                       padding=(p, 0), dilation=(d, 1))
        assert conv_out(size, k, s, p, d) == y.shape[2], (size, k, s, p, d)
