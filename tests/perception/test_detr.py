"""The DETR toolkit (perception.models.detr) against hand-computed values: cost terms, matcher,
set criterion normalisation, Group-DETR isolation and reference refinement."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from perception.models import matching
from perception.models.detr import (
    BoxReference,
    DETRDecoder,
    DETRDecoderLayer,
    FocalClassCost,
    GIoUCost,
    HungarianMatcher,
    L1Cost,
    MatchedLoss,
    Memory,
    PointReference,
    PolylineCost,
    PolylineReference,
    SetCriterion,
    SmoothL1,
    active_groups,
    append_to_groups,
    group_attention_mask,
    group_slices,
    inverse_sigmoid,
    run_decoder,
)

LN2, LN3, LN4, LN4_3 = math.log(2), math.log(3), math.log(4), math.log(4 / 3)
# Logits with probabilities [[0.5, 0.75], [0.25, 0.5]].
LOGITS = torch.tensor([[0.0, LN3], [-LN3, 0.0]])


def focal_cost_by_hand(p: float) -> float:
    """alpha (1-p)^2 (-ln p) - (1 - alpha) p^2 (-ln(1-p)), alpha = 0.25."""
    return 0.25 * (1 - p) ** 2 * -math.log(p) - 0.75 * p**2 * -math.log(1 - p)


# -- cost terms --------------------------------------------------------------------------------------
def test_focal_class_cost_by_hand():
    # p = 0.5: 0.25*0.25*ln2 - 0.75*0.25*ln2; p = 0.75: 0.25*0.0625*ln(4/3) - 0.75*0.5625*ln4;
    # p = 0.25: 0.25*0.5625*ln4 - 0.75*0.0625*ln(4/3).
    c50, c75, c25 = -0.125 * LN2, 0.015625 * LN4_3 - 0.421875 * LN4, 0.140625 * LN4 - 0.046875 * LN4_3
    assert c75 == pytest.approx(focal_cost_by_hand(0.75))
    labels = torch.tensor([1, 0])  # column n reads class labels[n]
    expected = torch.tensor([[c75, c50], [c50, c25]])
    torch.testing.assert_close(FocalClassCost()(LOGITS, labels), expected, atol=1e-6, rtol=0)
    # The old import path still works and is the same function.
    torch.testing.assert_close(matching.focal_classification_cost(LOGITS, labels), expected, atol=1e-6, rtol=0)


def test_l1_cost_with_weights_and_a_column_subset():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 5.0], [2.0, 2.0, 2.0]])
    # Columns 0 and 2 with weights 2 and 0.5; column 1 does not count.
    cost = L1Cost(weights=(2.0, 0.5), columns=[0, 2])(pred, target)
    expected = torch.tensor([[2 * 0 + 0.5 * 2, 2 * 1 + 0.5 * 1], [2 * 1 + 0.5 * 5, 2 * 2 + 0.5 * 2]])
    torch.testing.assert_close(cost, expected)
    plain = L1Cost()(pred, target)
    torch.testing.assert_close(plain, torch.tensor([[0 + 2 + 2, 1 + 0 + 1], [1 + 0 + 5, 2 + 2 + 2.0]]))
    torch.testing.assert_close(L1Cost(columns=slice(0, 1))(pred, target), torch.tensor([[0.0, 1.0], [1.0, 2.0]]))


def test_giou_cost_by_hand_in_both_formats():
    a, b, c = [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]
    # a-b: inter 1, union 4 + 4 - 1 = 7, enclosing 3x3 = 9. c-b: inter 0, union 1 + 4, enclosing [1,5]x[0,3] = 12.
    # c-a: inter 0, union 5, enclosing [0,5]x[0,2] = 10.
    giou_ab, giou_cb, giou_ca = 1 / 7 - 2 / 9, 0 - 7 / 12, 0 - 5 / 10
    expected = -torch.tensor([[giou_ab, 1.0], [giou_cb, giou_ca]])
    cost = GIoUCost("xyxy")(torch.tensor([a, c]), torch.tensor([b, a]))
    torch.testing.assert_close(cost, expected)
    to_cxcywh = [[1.0, 1.0, 2.0, 2.0], [4.5, 0.5, 1.0, 1.0]], [[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    cost = GIoUCost("cxcywh")(torch.tensor(to_cxcywh[0]), torch.tensor(to_cxcywh[1]))
    torch.testing.assert_close(cost, expected)


def test_polyline_cost_mean_point_distance_and_reversed_order():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [3.0, 4.0]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
    # pred0 vs target0 (its reverse): points 1 and 1 apart; vs target1: 1 and 1 (reversed: 2 and 2 in L1).
    # pred1 vs target0: L1 1 and 7, L2 1 and 5; reversed target0 = [[0,0],[1,0]]: L1 0 and 6, L2 0 and sqrt(20).
    # pred1 vs target1: L1 1 and 5, L2 1 and sqrt(13); reversed [[1,1],[0,1]]: L1 2 and 6, L2 sqrt(2) and sqrt(18).
    directed_l1 = torch.tensor([[1.0, 1.0], [4.0, 3.0]])
    undirected_l1 = torch.tensor([[0.0, 1.0], [3.0, 3.0]])
    directed_l2 = torch.tensor([[1.0, 1.0], [3.0, (1 + math.sqrt(13)) / 2]])
    undirected_l2 = torch.tensor([[0.0, 1.0], [math.sqrt(20) / 2, (1 + math.sqrt(13)) / 2]])
    torch.testing.assert_close(PolylineCost(p=1)(pred, target), directed_l1)
    torch.testing.assert_close(PolylineCost(p=1, undirected=True)(pred, target), undirected_l1)
    torch.testing.assert_close(PolylineCost(p=2)(pred, target), directed_l2)
    torch.testing.assert_close(PolylineCost(p=2, undirected=True)(pred, target), undirected_l2)


# -- matcher -----------------------------------------------------------------------------------------
def test_hungarian_matcher_sums_weighted_terms():
    # Term "a" alone prefers the identity (cost [[0,1],[1,0]]), term "b" the swap ([[1,0],[0,1]]).
    pred = dict(a=torch.tensor([[0.0], [1.0]]), b=torch.tensor([[0.0], [1.0]]))
    target = dict(a=torch.tensor([[0.0], [1.0]]), b=torch.tensor([[1.0], [0.0]]))
    terms = (L1Cost(pred_key="a", target_key="a"), L1Cost(pred_key="b", target_key="b"))
    swap = HungarianMatcher([(terms[0], 1.0), (terms[1], 2.0)])
    torch.testing.assert_close(swap.cost(pred, target), torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
    rows, cols = swap(pred, target)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    rows, cols = HungarianMatcher([(terms[0], 2.0), (terms[1], 1.0)])(pred, target)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]
    rows, cols = swap(pred, dict(a=torch.zeros(0, 1), b=torch.zeros(0, 1)))
    assert rows.numel() == 0 and cols.numel() == 0 and rows.dtype == torch.long


def test_matcher_with_more_predictions_than_targets():
    # Three predictions, one target: the cheapest prediction (cost 0.5) wins.
    pred = dict(codes=torch.tensor([[3.0], [0.5], [-2.0]]))
    rows, cols = HungarianMatcher([(L1Cost(), 1.0)])(pred, dict(codes=torch.tensor([[0.0]])))
    assert rows.tolist() == [1] and cols.tolist() == [0]


# -- criterion ---------------------------------------------------------------------------------------
def focal_by_hand(p: float, positive: bool) -> float:
    return 0.25 * (1 - p) ** 2 * -math.log(p) if positive else 0.75 * p**2 * -math.log(1 - p)


def criterion() -> SetCriterion:
    matcher = HungarianMatcher([(FocalClassCost(), 1.0), (L1Cost(), 1.0)])
    loss = MatchedLoss("loss_bbox", SmoothL1(weights=(1.0, 0.25), beta=0.0), weight=0.75)
    return SetCriterion(matcher, [loss], cls_weight=2.0)


def test_criterion_normalisation_and_auxiliary_keys():
    # Two queries (probabilities [[0.5, 0.75], [0.25, 0.5]]), codes [1, 2] and [0, 0]; one target of
    # class 1 at [1.5, 4]. Matching cost: query 0: c(0.75) + 0.5 + 2 = 1.92; query 1: c(0.5) + 5.5 -> query 0.
    pred = dict(logits=LOGITS[None], codes=torch.tensor([[[1.0, 2.0], [0.0, 0.0]]]))
    targets = [dict(labels=torch.tensor([1]), codes=torch.tensor([[1.5, 4.0]]))]
    cls_sum = (focal_by_hand(0.5, False) + focal_by_hand(0.75, True) + focal_by_hand(0.25, False)
               + focal_by_hand(0.5, False))
    bbox = 1.0 * 0.5 + 0.25 * 2.0  # weighted L1 of the matched pair
    expected = dict(loss_cls=cls_sum / 1 * 2.0, loss_bbox=bbox / 1 * 0.75)
    losses = criterion()([pred, pred], targets)
    assert list(losses) == ["d0.loss_cls", "d0.loss_bbox", "loss_cls", "loss_bbox"]
    for key, value in losses.items():
        assert value.item() == pytest.approx(expected[key.split(".")[-1]], rel=1e-6)

    # Group-DETR, two identical groups: each group matches its own query 0, 2 positives over 2 groups
    # -> num_pos = 1; the summed losses (twice as large) are divided by groups = 2: unchanged.
    grouped = {key: torch.cat([value, value], dim=1) for key, value in pred.items()}
    losses = criterion()([grouped], targets, groups=2)
    assert losses["loss_cls"].item() == pytest.approx(expected["loss_cls"], rel=1e-6)
    assert losses["loss_bbox"].item() == pytest.approx(expected["loss_bbox"], rel=1e-6)


def test_criterion_without_targets_clamps_num_pos_to_one():
    pred = dict(logits=LOGITS[None], codes=torch.zeros(1, 2, 2, requires_grad=True))
    targets = [dict(labels=torch.zeros(0, dtype=torch.long), codes=torch.zeros(0, 2))]
    everything_negative = (2 * focal_by_hand(0.5, False) + focal_by_hand(0.75, False) + focal_by_hand(0.25, False))
    losses = criterion()([pred], targets, groups=2)
    # num_pos = max(0 / 2, 1) = 1, then / groups: the two one-query groups share the sum.
    assert losses["loss_cls"].item() == pytest.approx(everything_negative / 1 / 2 * 2.0, rel=1e-6)
    assert losses["loss_bbox"].item() == 0.0


def test_criterion_matches_without_gradient():
    seen = []

    class Recording(L1Cost):
        def __call__(self, pred, target):
            seen.append(torch.is_grad_enabled())
            return super().__call__(pred, target)

    crit = SetCriterion(HungarianMatcher([(Recording(), 1.0)]))
    pred = dict(logits=torch.zeros(1, 2, 3, requires_grad=True), codes=torch.zeros(1, 2, 2, requires_grad=True))
    crit([pred], [dict(labels=torch.tensor([2]), codes=torch.ones(1, 2))])
    assert seen == [False]


# -- groups ------------------------------------------------------------------------------------------
def test_group_helpers_by_hand():
    assert active_groups(3, training=True) == 3 and active_groups(3, training=False) == 1
    assert group_slices(6, 3) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    learned = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1)
    appended = append_to_groups(learned, torch.tensor([[[9.0]]]), groups=2)
    assert appended.flatten().tolist() == [0.0, 1.0, 9.0, 2.0, 3.0, 9.0]
    mask = group_attention_mask([1, 2])
    assert mask.tolist() == [[False, True, True], [True, False, False], [True, False, False]]
    with pytest.raises(ValueError):
        group_slices(5, 2)


def _layer_and_memory():
    torch.manual_seed(0)
    layer = DETRDecoderLayer(8, 2, 16, num_points=2, dropout=0.0).eval()
    memory = Memory.from_maps([torch.randn(1, 8, 4, 4)])
    query, pos, ref = torch.randn(1, 4, 8), torch.randn(1, 4, 8), torch.rand(1, 4, 2)
    return layer, memory, query, pos, ref


@pytest.mark.parametrize("how", ["groups", "mask"])
def test_a_group_is_unaffected_by_another_group(how):
    layer, memory, query, pos, ref = _layer_and_memory()
    kwargs = dict(groups=2) if how == "groups" else dict(attn_mask=group_attention_mask([2, 2]))
    changed = query.clone()
    changed[:, 3] += 5.0  # a query of group 1
    with torch.no_grad():
        before, after = layer(query, pos, memory, ref, **kwargs), layer(changed, pos, memory, ref, **kwargs)
        ungrouped = layer(changed, pos, memory, ref)
    torch.testing.assert_close(after[:, :2], before[:, :2], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 2:], before[:, 2:])
    assert not torch.allclose(ungrouped[:, :2], before[:, :2])  # without groups the change leaks


def test_memory_from_maps_flattens_levels():
    maps = [torch.randn(2, 3, 2, 3), torch.randn(2, 3, 1, 2)]
    memory = Memory.from_maps(maps)
    assert memory.value.shape == (2, 8, 3) and memory.num_levels == 2
    assert memory.spatial_shapes.tolist() == [[2, 3], [1, 2]] and memory.level_start_index.tolist() == [0, 6]
    torch.testing.assert_close(memory.value[:, 6 + 1], maps[1][:, :, 0, 1])
    torch.testing.assert_close(memory.value[:, 1 * 3 + 2], maps[0][:, :, 1, 2])


# -- references --------------------------------------------------------------------------------------
def refined_by_hand(p: float, d: float) -> float:
    """sigmoid(logit(p) + d) = p e^d / (p e^d + 1 - p)."""
    return p * math.exp(d) / (p * math.exp(d) + 1 - p)


def test_point_reference_refinement_by_hand():
    kind = PointReference(dims=3, uv=(1, 0))
    ref = torch.tensor([[[0.5, 0.25, 0.8]]])
    delta = torch.tensor([[[1.0, -0.5, 0.0, 7.0]]])  # the 4th value is not the reference's
    expected = [1 / (1 + math.exp(-1)), 0.25 * math.exp(-0.5) / (0.25 * math.exp(-0.5) + 0.75), 0.8]
    assert expected[1] == pytest.approx(refined_by_hand(0.25, -0.5))
    torch.testing.assert_close(kind.refine(ref, delta), torch.tensor([[expected]]))
    assert kind.sampling_reference(ref).tolist() == [[[0.25, 0.5]]]
    assert inverse_sigmoid(torch.tensor([0.0, 1.0, 2.0])).tolist() == pytest.approx(
        [math.log(1e-5), -math.log(1e-5), -math.log(1e-5)])


def test_box_and_polyline_references():
    box = torch.tensor([[[0.5, 0.2, 0.1, 0.4]]])
    delta = torch.tensor([[[0.0, 1.0, -1.0, 0.5]]])
    expected = [0.5, refined_by_hand(0.2, 1.0), refined_by_hand(0.1, -1.0), refined_by_hand(0.4, 0.5)]
    torch.testing.assert_close(BoxReference().refine(box, delta), torch.tensor([[expected]]))
    assert torch.equal(BoxReference("box").sampling_reference(box), box)
    assert torch.equal(BoxReference("centre").sampling_reference(box), box[..., :2])

    kind = PolylineReference(num_points=2, coords=3, uv=(0, 1))
    line = torch.tensor([[[[0.2, 0.4, 0.5], [0.6, 0.8, 0.5]]]])  # (B, Q, P, 3)
    delta = torch.tensor([[[1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 9.0]]])
    expected = [[refined_by_hand(0.2, 1.0), 0.4, 0.5], [0.6, refined_by_hand(0.8, -1.0), 0.5]]
    torch.testing.assert_close(kind.refine(line, delta), torch.tensor([[expected]]))
    torch.testing.assert_close(kind.sampling_reference(line), torch.tensor([[[0.4, 0.6]]]))  # mean (u, v)


class _RecordingLayer(nn.Module):
    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, query, query_pos, memory, reference, groups, attn_mask):
        self.seen.append(reference)
        return query


class _ConstantDelta(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.ones(1))

    def forward(self, query):
        return self.delta.expand(*query.shape[:-1], 3)


def test_iterative_refinement_detaches_between_layers():
    seen = []
    query, ref = torch.zeros(1, 1, 4), torch.full((1, 1, 3), 0.5)  # logit 0; each layer adds delta 1
    steps = list(run_decoder([_RecordingLayer(seen)] * 2, [_ConstantDelta(), _ConstantDelta()], query, query,
                             None, ref, PointReference(dims=3)))
    sig = [1 / (1 + math.exp(-k)) for k in (1, 2)]
    for step, s in zip(steps, sig):
        torch.testing.assert_close(step.reference, torch.full((1, 1, 3), s))
        assert step.reference.requires_grad
    torch.testing.assert_close(seen[1], torch.full((1, 1, 2), sig[0]))
    assert not seen[1].requires_grad  # layer 2 samples around a detached reference
    decoder = DETRDecoder([_RecordingLayer([])] * 2, [_ConstantDelta(), _ConstantDelta()], PointReference(dims=3))
    assert [s.reference.tolist() for s in decoder(query, query, None, ref)] == [s.reference.tolist() for s in steps]
