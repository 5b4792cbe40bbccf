"""Layer-wise LR decay: the official classification map and the detection ids (docs/backbones.md)."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.layer_decay import classification_lr_ratios, detection_layer_id


def test_classification_ratios_for_t() -> None:
    d = 0.9
    ratios = classification_lr_ratios((4, 4, 18, 4), d)
    # counted by hand from the last block of stage 4 backwards: stage3 blocks 3..0 -> 0..3,
    # stage2 blocks 17..0 -> 4..21, stage1 blocks 3..0 -> 22..25, stage0 blocks 3..0 -> 26..29
    assert ratios["levels.3.blocks.3."] == 1.0
    assert ratios["levels.3.blocks.0."] == pytest.approx(d ** 3)
    assert ratios["levels.2.blocks.17."] == pytest.approx(d ** 4)
    assert ratios["levels.2.blocks.0."] == pytest.approx(d ** 21)
    assert ratios["levels.0.blocks.0."] == pytest.approx(d ** 29)
    assert ratios["patch_embed"] == pytest.approx(d ** 29)
    assert ratios["levels.0.downsample"] == ratios["levels.0.norm"] == pytest.approx(d ** 25)
    assert ratios["levels.2.downsample"] == pytest.approx(d ** 3)
    assert "levels.3.norm" not in ratios and len(ratios) == 30 + 1 + 6


def test_classification_param_groups(tiny_arch) -> None:
    model = backbones.create_model("internimage_t", num_classes=5, **tiny_arch)
    d, lr = 0.5, 1.0
    groups = backbones.classification_param_groups(model, lr, 0.05, layer_decay=d, dcn_lr_mul=0.1)
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    # tiny depths (1, 1, 2, 1): order levels.3.b0 -> 0, levels.2.b1 -> 1, b0 -> 2, levels.1.b0 -> 3, levels.0.b0 -> 4
    assert by_name["levels.3.blocks.0.mlp.fc1.weight"] == (1.0, 0.05)
    assert by_name["levels.2.blocks.0.mlp.fc1.weight"] == (0.25, 0.05)
    assert by_name["levels.0.blocks.0.mlp.fc1.bias"] == (0.0625, 0.0)
    assert by_name["patch_embed.conv1.weight"] == (0.0625, 0.05)
    assert by_name["levels.1.downsample.conv.weight"] == (0.25, 0.05)
    assert by_name["levels.3.norm.0.weight"] == (1.0, 0.0)
    assert by_name["head.weight"] == (1.0, 0.05)
    assert by_name["levels.2.blocks.1.dcn.offset.weight"][0] == pytest.approx(0.5 * 0.1)
    assert by_name["levels.2.blocks.1.dcn.mask.weight"][0] == 0.5  # mask is not in the DCN_LR_MUL list
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # without layer decay dcn_lr_mul is inert (as upstream)
    plain = backbones.classification_param_groups(model, lr, 0.05, dcn_lr_mul=0.1)
    assert {g["lr"] for g in plain} == {1.0}


def test_detection_layer_ids_for_t() -> None:
    depths, n = (4, 4, 18, 4), 30
    assert detection_layer_id("backbone.patch_embed.conv1.weight", depths, n) == 0
    assert detection_layer_id("backbone.levels.0.blocks.0.dcn.offset.weight", depths, n) == 1
    assert detection_layer_id("backbone.levels.1.blocks.2.norm1.0.weight", depths, n) == 1 + 2 + 4
    assert detection_layer_id("backbone.levels.3.blocks.3.mlp.fc2.weight", depths, n) == 30
    assert detection_layer_id("backbone.levels.0.downsample.conv.weight", depths, n) == 5
    assert detection_layer_id("backbone.levels.2.norm.0.weight", depths, n) == 27
    assert detection_layer_id("backbone.levels.3.norm.0.weight", depths, n) == 27
    assert detection_layer_id("neck.fpn.0.weight", depths, n) == 31


def test_detection_param_groups_scales() -> None:
    class Detector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbones.create_backbone("internimage_t", channels=32, depths=(1, 1, 2, 1),
                                                      groups=(2, 4, 8, 16))
            self.neck = torch.nn.Linear(3, 3)

    groups = backbones.detection_param_groups(Detector(), 1.0, 0.05, 0.5, depths=(1, 1, 2, 1))
    by_name = {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    # num_layers 5: scale = 0.5 ** (5 + 2 - id - 1)
    assert by_name["backbone.patch_embed.conv1.weight"] == (0.5 ** 6, 0.05)
    assert by_name["backbone.levels.3.blocks.0.mlp.fc1.weight"] == (0.5, 0.05)
    assert by_name["neck.weight"] == (1.0, 0.05)
    assert by_name["backbone.levels.0.blocks.0.norm1.0.weight"][1] == 0.0
