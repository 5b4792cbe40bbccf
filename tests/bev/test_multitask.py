"""The meta-architecture with two named heads on one spine: detection plus a small head defined here.
Losses carry both prefixes, predictions file each head's result under its name, and targets are
checked against what the heads declare."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbones import InternImage
from bev.detection_head import BEVDetectionHead
from bev.encoder import BEVEncoder
from bev.heads import Detection3DHead, TaskHead
from bev.model import BEVFormerV2
from bev.perspective_head import PerspectiveHead
from perception.engine import MODELS
from perception.structures.targets import MissingTargetError, UnusedTargetError
from tests.bev.rig import IMAGE_H, IMAGE_W, rig_ego2img, small_grid


class BEVMaskHead(TaskHead):
    """A one-layer BEV segmentation head: logit per BEV cell, trained on a (Nx, Ny) 0/1 mask."""

    required_targets = ("bev_mask",)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 1)

    def forward(self, spine):
        return self.conv(spine.bev)[:, 0]

    def loss(self, outputs, targets):
        target = torch.stack([m.float() for m in targets["bev_mask"]])
        return {"loss_mask": F.binary_cross_entropy_with_logits(outputs, target)}

    def predict(self, outputs, meta):
        return [dict(mask=o.sigmoid() > 0.5) for o in outputs]


def two_head_model(**kwargs) -> BEVFormerV2:
    torch.manual_seed(0)
    grid, dims = small_grid(), 32
    detection = Detection3DHead(
        decoder=BEVDetectionHead(grid, embed_dims=dims, num_queries=16, num_layers=2, num_heads=4, ffn_dims=64,
                                 dropout=0.0),
        perspective=PerspectiveHead(in_channels=dims, strides=(8, 16, 32, 64), size_ranges=(-1, 16, 32, 64, 1e8)),
        hybrid_queries=4)
    return BEVFormerV2(
        backbone=InternImage("t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8)),
        neck=dict(type="FPN", out_channels=dims, num_outs=4, start_level=1),  # in_channels from the backbone
        encoder=BEVEncoder(grid, embed_dims=dims, num_layers=1, num_heads=4, num_levels=3, ffn_dims=64,
                           dropout=0.0),
        heads=dict(detection=detection, bev_mask=BEVMaskHead(dims)), bev_levels=3, **kwargs)


def _batch():
    g = torch.Generator().manual_seed(0)
    grid = small_grid()
    mask = torch.zeros(grid.shape, dtype=torch.bool)
    mask[5:9, 10:12] = True
    return dict(img=torch.randn(1, 1, 6, 3, IMAGE_H, IMAGE_W, generator=g), cams=dict(ego2img=rig_ego2img(1, 1)),
                ego=dict(prev2curr=torch.eye(4)[None, None], history_valid=torch.ones(1, 1, dtype=torch.bool)),
                meta=[dict(sample_token="s0")],
                gt_boxes=[torch.tensor([[8.0, 1.0, 0.8, 1.9, 4.5, 1.6, 0.3, 2.0, 0.0]])],
                gt_labels=[torch.tensor([0])], bev_mask=[mask])


def test_neck_channels_come_from_the_backbone():
    model = two_head_model()
    assert [c.in_channels for c in model.spine.neck.lateral_convs] == model.spine.backbone.out_channels[1:]


def test_two_heads_train_one_step_and_predict():
    model = two_head_model().train()
    batch = _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mask_weight = model.heads["bev_mask"].conv.weight.detach().clone()
    decoder_weight = model.heads["detection"].decoder.reference_points.weight.detach().clone()
    losses = model(**batch, mode="loss")
    assert {"detection.loss_cls", "detection.loss_bbox", "detection.d0.loss_cls", "detection.loss_cls_persp",
            "bev_mask.loss_mask"} <= set(losses)
    assert all(k.startswith(("detection.", "bev_mask.")) for k in losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert not torch.equal(model.heads["bev_mask"].conv.weight, mask_weight)
    assert not torch.equal(model.heads["detection"].decoder.reference_points.weight, decoder_weight)
    model.eval()
    with torch.no_grad():
        (pred,) = model(**batch, mode="predict")
    assert pred["sample_token"] == "s0"
    assert pred["detection"]["boxes"].shape[1] == 9
    assert pred["bev_mask"]["mask"].shape == small_grid().shape


def test_a_missing_target_names_the_head_and_the_key():
    model = two_head_model().train()
    batch = _batch()
    del batch["bev_mask"]
    with pytest.raises(MissingTargetError, match=r"head 'bev_mask' needs targets \['bev_mask'\]"):
        model(**batch, mode="loss")
    batch = _batch()
    del batch["gt_labels"]
    with pytest.raises(MissingTargetError, match=r"head 'detection' needs targets \['gt_labels'\]"):
        model(**batch, mode="loss")


def test_a_target_no_head_uses_is_an_error_unless_the_config_ignores_it():
    batch = dict(_batch(), occ_semantics=torch.zeros(1, 4, 4, 2, dtype=torch.uint8))
    with pytest.raises(UnusedTargetError, match="occ_semantics"):
        two_head_model().train()(**batch, mode="loss")
    losses = two_head_model(ignore_targets=["occ_semantics"]).train()(**batch, mode="loss")
    assert torch.isfinite(sum(losses.values()))
    with torch.no_grad():  # predictions read no targets, so the ground truth of val batches is harmless
        two_head_model().eval()(**batch, mode="predict")


def test_heads_config_builds_registered_heads_with_the_spine_grid():
    MODELS.register_module(name="TestBEVMaskHead", module=BEVMaskHead, force=True)
    dims = 32
    model = MODELS.build(dict(
        type="BEVFormerV2", bev_grid=dict(x_range=(-20.0, 20.0), y_range=(-20.0, 20.0), z_range=(-3.0, 5.0),
                                          resolution=4.0),
        backbone=dict(type="InternImage", variant="t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8),
                      out_indices=(1, 2, 3)),
        neck=dict(type="FPN", out_channels=dims, num_outs=4),
        encoder=dict(type="BEVEncoder", embed_dims=dims, num_layers=1, num_heads=4, num_levels=3, ffn_dims=64),
        bev_levels=3,
        heads=dict(detection=dict(type="Detection3DHead",
                                  decoder=dict(type="BEVDetectionHead", embed_dims=dims, num_queries=8, num_layers=1,
                                               num_heads=4, ffn_dims=64)),
                   bev_mask=dict(type="TestBEVMaskHead", in_channels=dims))))
    assert model.heads["detection"].decoder.grid is model.spine.grid
    assert model.spine.grid.shape == (10, 10)
    assert model.spine.neck.lateral_convs[0].in_channels == 32  # InternImage-t/16 stage 1


def test_heads_and_the_detection_shorthand_are_exclusive():
    with pytest.raises(ValueError, match="either heads"):
        two_head_model(head=dict(type="BEVDetectionHead"))


def test_loss_weights_scale_one_heads_losses():
    batch = _batch()
    plain = two_head_model().train()(**batch, mode="loss")
    weighted = two_head_model(loss_weights=dict(bev_mask=0.25)).train()(**batch, mode="loss")
    assert set(plain) == set(weighted)
    for key, value in plain.items():
        factor = 0.25 if key.startswith("bev_mask.") else 1.0
        torch.testing.assert_close(weighted[key], value * factor)
    with pytest.raises(ValueError, match="lanes"):
        two_head_model(loss_weights=dict(lanes=0.5))
