"""FLOPs (MACs, InternImage convention) against the published numbers (docs/backbones.md)."""

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


@pytest.mark.slow
def test_model_info_tool_prints_published_numbers() -> None:
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(repo / "tools" / "model_info.py"), "internimage_t"],
                            capture_output=True, text=True, timeout=300, cwd=repo)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("internimage_t"))
    assert line.split()[1:4] == ["29,918,424", "224", "4.89"]
