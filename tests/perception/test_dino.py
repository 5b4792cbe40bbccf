"""DINO-4scale: contrastive denoising queries and their attention mask on a hand-checked 2-object example,
look-forward-twice gradients, top-k decoding against hand-computed boxes, and overfitting one image."""

from __future__ import annotations

import pytest
import torch

from perception.models.detection2d import DINO
from perception.models.detr import DETRDecoderLayer, Memory
from perception.models.detr.denoising import build_denoising_queries, denoising_attention_mask
from perception.structures.boxes2d import box_cxcywh_to_xyxy, box_iou

TINY_BACKBONE = dict(type="InternImage", variant="t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8),
                     out_indices=(1, 2, 3), drop_path_rate=0.0)


def _tiny_dino(**overrides) -> DINO:
    args = dict(backbone=TINY_BACKBONE, embed_dims=32, num_queries=30, encoder_layers=1, decoder_layers=2,
                num_heads=4, ffn_dims=64, num_points=2, gn_groups=8, num_denoising_queries=10, max_detections=10)
    return DINO(**{**args, **overrides})


# -- denoising queries ---------------------------------------------------------------------------------
def test_denoising_mask_blocks_other_groups_and_hides_groups_from_matching_queries():
    # 2 groups of 4 denoising queries, then 3 matching queries; True = blocked. Written out by hand.
    o, x = False, True
    expected = torch.tensor([
        # g0 g0 g0 g0 g1 g1 g1 g1 m  m  m
        [o, o, o, o, x, x, x, x, o, o, o],
        [o, o, o, o, x, x, x, x, o, o, o],
        [o, o, o, o, x, x, x, x, o, o, o],
        [o, o, o, o, x, x, x, x, o, o, o],
        [x, x, x, x, o, o, o, o, o, o, o],
        [x, x, x, x, o, o, o, o, o, o, o],
        [x, x, x, x, o, o, o, o, o, o, o],
        [x, x, x, x, o, o, o, o, o, o, o],
        [x, x, x, x, x, x, x, x, o, o, o],
        [x, x, x, x, x, x, x, x, o, o, o],
        [x, x, x, x, x, x, x, x, o, o, o],
    ])
    assert torch.equal(denoising_attention_mask(8, 2, 3), expected)


def _two_object_batch():
    labels = [torch.tensor([3, 7]), torch.tensor([1])]
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.2]]), torch.tensor([[0.5, 0.4, 0.2, 0.1]])]
    return labels, boxes


def test_denoising_groups_layout_labels_and_matches():
    labels, boxes = _two_object_batch()
    # 5 denoising queries for at most 2 objects per image -> 5 // 2 = 2 groups of 2 * 2 queries
    dn = build_denoising_queries(labels, boxes, num_classes=10, num_matching=3, num_denoising_queries=5,
                                 label_noise=0.0, box_noise=0.0)
    assert dn.groups == 2 and dn.num_queries == 8 and dn.attn_mask.shape == (11, 11)
    # per group: positives (rows 0-1), negatives (rows 2-3); padding slots get the "no class" label 10
    assert dn.labels.tolist() == [[3, 7, 3, 7, 3, 7, 3, 7], [1, 10, 1, 10, 1, 10, 1, 10]]
    assert torch.equal(dn.boxes[0, 4:6], boxes[0]) and torch.equal(dn.boxes[1, 2], boxes[1][0])
    assert torch.equal(dn.boxes[1, 1], torch.zeros(4))
    # known matches: in every group, positive row i <-> target i; nothing for the negatives
    got = [(b, sl.start, sl.stop, rows.tolist(), cols.tolist()) for b, sl, rows, cols in dn.matches]
    assert got == [(0, 0, 4, [0, 1], [0, 1]), (0, 4, 8, [0, 1], [0, 1]), (1, 0, 4, [0], [0]), (1, 4, 8, [0], [0])]


def test_denoising_box_noise_bounds_positives_and_negatives():
    labels, boxes = _two_object_batch()
    gen = torch.Generator().manual_seed(0)
    dn = build_denoising_queries(labels, boxes, num_classes=10, num_matching=3, num_denoising_queries=200,
                                 box_noise=1.0, generator=gen)
    # each corner moves by u * half-size, u in [0, 1) (positive) or [1, 2) (negative); no clipping here
    target = box_cxcywh_to_xyxy(boxes[0])
    half = boxes[0][:, 2:].repeat(1, 2) / 2
    per_group = 4
    for g in range(dn.groups):
        positive = box_cxcywh_to_xyxy(dn.boxes[0, g * per_group: g * per_group + 2])
        negative = box_cxcywh_to_xyxy(dn.boxes[0, g * per_group + 2: g * per_group + 4])
        assert ((positive - target).abs() < half + 1e-6).all()
        moved = (negative - target).abs()
        assert ((moved >= half - 1e-6) & (moved < 2 * half + 1e-6)).all()


def test_denoising_label_noise_flips_about_a_quarter():
    labels = [torch.zeros(1000, dtype=torch.long)]
    boxes = [torch.full((1000, 4), 0.5)]
    gen = torch.Generator().manual_seed(0)
    dn = build_denoising_queries(labels, boxes, num_classes=1000, num_matching=1, num_denoising_queries=1000,
                                 label_noise=0.5, generator=gen)
    flipped = (dn.labels[0, :1000] != 0).float().mean()  # p = 0.5 / 2, random class rarely 0 again
    assert 0.2 < flipped < 0.3


def test_no_targets_means_no_denoising():
    assert build_denoising_queries([torch.zeros(0, dtype=torch.long)], [torch.zeros(0, 4)], 10, 3) is None


def test_matching_queries_cannot_read_the_denoising_queries():
    """Behavioural leakage check: changing a denoising query changes neither the matching queries' outputs
    nor another denoising group's, through a real decoder layer with the mask."""
    torch.manual_seed(0)
    layer = DETRDecoderLayer(16, 2, 32, num_points=2, dropout=0.0).eval()
    memory = Memory.from_maps([torch.randn(1, 16, 4, 4)])
    mask = denoising_attention_mask(4, 2, 3)
    query, pos, ref = torch.randn(1, 7, 16), torch.randn(1, 7, 16), torch.rand(1, 7, 4) * 0.5 + 0.25
    changed = query.clone()
    changed[0, 0] += 5.0  # a query of denoising group 0
    with torch.no_grad():
        before = layer(query, pos, memory, ref, attn_mask=mask)
        after = layer(changed, pos, memory, ref, attn_mask=mask)
    assert torch.allclose(before[0, 2:], after[0, 2:], atol=1e-6)  # group 1 and the matching queries
    assert not torch.allclose(before[0, 1], after[0, 1])  # its own group does see it


# -- model -----------------------------------------------------------------------------------------------
def test_look_forward_twice_sends_the_next_layers_box_loss_into_the_previous_layer():
    torch.manual_seed(0)
    model = _tiny_dino(num_denoising_queries=0)
    for branch in model.reg_branches:  # non-zero deltas so gradients flow through the refinement
        torch.nn.init.normal_(branch.layers[-1].weight, std=0.1)
    inputs = torch.randn(1, 3, 64, 64)
    memory = model.encode(inputs, [{"img_shape": (64, 64)}])
    _, reference = model.select_queries(memory)
    outputs = model.decode(memory, reference, None)
    outputs[1]["boxes"].sum().backward()  # the last layer's boxes only
    assert model.reg_branches[0].layers[-1].weight.grad.abs().sum() > 0


def test_topk_decoding_without_nms_by_hand():
    model = _tiny_dino(num_classes=3, max_detections=2)
    logits = torch.full((1, 2, 3), -10.0)
    logits[0, 1, 2], logits[0, 0, 0] = 3.0, 1.0  # best: query 1 class 2, then query 0 class 0
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.5, 1.0, 0.5]]])
    # canvas 100 (h) x 200 (w); the image fills 100 x 150 of it and was resized by 0.5 from 300 x 200
    sample = {"img_shape": (100, 150), "scale_factor": (0.5, 0.5), "image_id": 7}
    pred = model.decode_predictions(logits, boxes, (100, 200), [sample])[0]
    assert pred["image_id"] == 7 and pred["labels"].tolist() == [2, 0]
    assert torch.allclose(pred["scores"], torch.sigmoid(torch.tensor([3.0, 1.0])))
    # query 1: x 0.25 +- 0.5 -> [-50, 150] px clipped to [0, 150]; y 0.5 +- 0.25 -> [25, 75]; / 0.5
    # query 0: x [50, 150], y [25, 75]; / 0.5
    assert torch.allclose(pred["boxes"], torch.tensor([[0.0, 50.0, 300.0, 150.0], [100.0, 50.0, 300.0, 150.0]]))


def test_padding_is_masked_and_never_proposes():
    torch.manual_seed(0)
    model = _tiny_dino().eval()
    inputs = torch.randn(1, 3, 64, 64)
    memory = model.encode(inputs, [{"img_shape": (32, 64)}])  # bottom half padding
    assert memory.padding_mask is not None and memory.padding_mask.any() and not memory.padding_mask.all()
    _, boxes = model.select_queries(memory)
    assert (boxes[0, :, 1] < 0.5 + 0.1).all()  # proposals centred in the real (top) half


@pytest.mark.slow
def test_head_overfits_one_image():
    torch.manual_seed(0)
    model = _tiny_dino()
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 8:30, 10:40] = 2.0
    image[0, 1, 36:60, 30:54] = 2.0
    gt = torch.tensor([[10.0, 8, 40, 30], [30, 36, 54, 60]])
    samples = [{"img_shape": (64, 64), "boxes": gt, "labels": torch.tensor([2, 5])}]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    first = None
    for _ in range(120):
        losses = model(image, samples, mode="loss")
        total = sum(losses.values())
        first = float(total.detach()) if first is None else first
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    assert float(losses["loss_cls"]) + float(losses["loss_iou"]) < 0.25
    assert float(total.detach()) < 0.4 * first
    model.eval()
    with torch.no_grad():
        pred = model(image, samples, mode="predict")[0]
    top = pred["boxes"][:2]
    iou = box_iou(top, gt)
    # the two best detections are the two objects, with their classes
    best = iou.argmax(1)
    assert sorted(best.tolist()) == [0, 1] and (iou.max(1).values > 0.8).all()
    assert pred["labels"][:2].tolist() == [[2, 5][i] for i in best.tolist()]


def test_channel_mapper_adds_a_stride_64_level_with_group_norm():
    from perception.models.necks import ChannelMapper

    neck = ChannelMapper([8, 16, 32], 64, extra_levels=1, num_groups=32)
    features = [torch.randn(2, 8, 32, 32), torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]
    outs = neck(features)
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)]
    # GroupNorm(32) without activation: each group of 2 channels has zero mean and unit variance
    grouped = outs[3].reshape(2, 32, -1)
    assert torch.allclose(grouped.mean(-1), torch.zeros(2, 32), atol=1e-5)
    assert torch.allclose(grouped.var(-1, unbiased=False), torch.ones(2, 32), atol=1e-3)
    with pytest.raises(ValueError, match="divisible by num_groups"):
        ChannelMapper([8], 48, num_groups=32)
