"""FLOPs (MACs, InternImage convention) against the published numbers (reference §6.1)."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.flops import count_macs


@pytest.mark.slow
@pytest.mark.parametrize("variant,size,published_g", [("t", 224, 5), ("s", 224, 8), ("b", 224, 16),
                                                      ("l", 384, 108), ("xl", 384, 163)])
def test_flops_match_published(variant: str, size: int, published_g: int) -> None:
    with torch.device("meta"):
        model = backbones.create_model(f"internimage_{variant}")
    macs = count_macs(model, (1, 3, size, size))
    assert round(macs.gmacs) == published_g


def test_mac_counter_on_a_hand_computed_model() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5))
    macs = count_macs(model, (2, 3, 4, 4), device="cpu")
    assert macs.by_type == {"Conv2d": 2 * 8 * 16 * 3 * 9, "Linear": 2 * 5 * 128}


def test_dcn_term_is_5_hw_9_c() -> None:
    from ops import DCNv3

    layer = DCNv3(channels=16, group=1)
    macs = count_macs(layer, (1, 6, 7, 16), device="cpu")
    assert macs.by_type["DCNv3 core"] == 5 * 6 * 7 * 9 * 16
