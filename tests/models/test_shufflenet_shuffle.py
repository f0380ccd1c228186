"""The channel shuffle of the ShuffleNets: the CRD code's interleaving, in either memory layout."""

from __future__ import annotations

import pytest
import torch

from kdbench.models.shufflenetv1 import channel_shuffle


def crd_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    return x.view(batch, groups, channels // groups, height, width).transpose(1, 2).reshape(x.shape)


@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_shuffle_interleaves_like_the_crd_code_and_keeps_the_layout(groups: int, layout) -> None:
    x = torch.randn(2, 6 * groups, 5, 4).contiguous(memory_format=layout).requires_grad_()
    shuffled = channel_shuffle(x, groups)
    torch.testing.assert_close(shuffled, crd_shuffle(x.detach().contiguous(), groups), rtol=0, atol=0)
    assert shuffled.is_contiguous(memory_format=layout)
    # channel c of group g goes to position c * groups + g, and gradients flow back the same way
    assert torch.equal(shuffled[:, 1], x.detach()[:, 6])  # position 1 = channel 0 of group 1
    shuffled.backward(torch.arange(shuffled.numel(), dtype=x.dtype).view_as(shuffled))
    expected = torch.arange(shuffled.numel(), dtype=x.dtype).view_as(shuffled)
    inverse = crd_shuffle(expected, x.shape[1] // groups)  # shuffling by the group size undoes it
    torch.testing.assert_close(x.grad, inverse, rtol=0, atol=0)
