"""Box code, Hungarian matching, and the detection head's decoding."""

from __future__ import annotations

import math

import torch

from bev.box_coder import decode_boxes, encode_boxes
from perception.models.matching import hungarian_match


def test_box_code_round_trip():
    g = torch.Generator().manual_seed(0)
    boxes = torch.cat([torch.randn(50, 3, generator=g) * 20, torch.rand(50, 3, generator=g) * 5 + 0.2,
                       (torch.rand(50, 1, generator=g) * 2 - 1) * math.pi * 0.999, torch.randn(50, 2, generator=g)], 1)
    codes = encode_boxes(boxes)
    assert codes.shape == (50, 10)
    torch.testing.assert_close(codes[:, 3:6].exp(), boxes[:, 3:6])  # log sizes
    torch.testing.assert_close(decode_boxes(codes), boxes, rtol=1e-5, atol=1e-5)


def test_hungarian_matching_on_a_hand_made_cost():
    # Optimal: row0->col1 (1), row1->col0 (2), row2->col2 (2): total 5; every other permutation costs more.
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    # More predictions than targets: the two cheapest distinct rows win; an infinite cost is avoided.
    cost = torch.tensor([[9.0, 9.0], [1.0, float("inf")], [5.0, 0.5], [0.2, 7.0]])
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [2, 3] and cols.tolist() == [1, 0]
    rows, cols = hungarian_match(torch.zeros(5, 0))
    assert rows.numel() == 0 and cols.numel() == 0
