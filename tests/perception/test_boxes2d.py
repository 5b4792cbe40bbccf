"""2D boxes (perception/structures/boxes2d.py) against hand-computed values, degenerate cases included."""

from __future__ import annotations

import pytest
import torch

from perception.structures.boxes2d import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    clip_boxes,
    flip_boxes_horizontal,
    generalized_box_iou,
)


def _t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_conversions_hand_computed() -> None:
    xyxy = _t((1, 2, 5, 8), (0, 0, 0, 0))
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), _t((3, 5, 4, 6), (0, 0, 0, 0)))
    torch.testing.assert_close(box_cxcywh_to_xyxy(_t((3, 5, 4, 6))), _t((1, 2, 5, 8)))
    torch.testing.assert_close(box_xyxy_to_xywh(xyxy), _t((1, 2, 4, 6), (0, 0, 0, 0)))
    torch.testing.assert_close(box_xywh_to_xyxy(_t((1, 2, 4, 6))), _t((1, 2, 5, 8)))


def test_conversions_keep_leading_dimensions() -> None:
    boxes = torch.rand(2, 3, 4, dtype=torch.float64)
    assert box_xyxy_to_cxcywh(boxes).shape == (2, 3, 4)
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)
    torch.testing.assert_close(box_xywh_to_xyxy(box_xyxy_to_xywh(boxes)), boxes)


def test_area_zero_for_degenerate_boxes() -> None:
    areas = box_area(_t((0, 0, 2, 3), (1, 1, 1, 5), (4, 4, 2, 2)))  # normal, zero width, inverted
    torch.testing.assert_close(areas, _t((6, 0, 0))[0])


def test_iou_and_giou_hand_computed() -> None:
    a = _t((0, 0, 2, 2))
    b = _t(
        (0, 0, 2, 2),  # identical: IoU 1, GIoU 1
        (1, 1, 3, 3),  # overlap 1, union 7, enclosing 9
        (3, 0, 4, 1),  # disjoint: union 5, enclosing 4 x 2 = 8
        (0.5, 0.5, 1.5, 1.5),  # contained: 1 / 4, enclosing = a
        (2, 0, 4, 2),  # touching edges: IoU 0, enclosing = union
    )
    expected_iou = _t((1, 1 / 7, 0, 1 / 4, 0))
    expected_giou = _t((1, 1 / 7 - 2 / 9, -3 / 8, 1 / 4, 0))
    torch.testing.assert_close(box_iou(a, b), expected_iou)
    torch.testing.assert_close(generalized_box_iou(a, b), expected_giou)
    # symmetric: the transpose of the swapped arguments
    torch.testing.assert_close(generalized_box_iou(b, a), expected_giou.T)


def test_iou_of_zero_area_boxes_is_zero_not_nan() -> None:
    point = _t((1, 1, 1, 1))
    line = _t((0, 1, 2, 1))  # zero height, enclosing the point
    iou = box_iou(point, torch.cat([point, line]))
    giou = generalized_box_iou(point, torch.cat([point, line]))
    assert torch.isfinite(iou).all() and torch.isfinite(giou).all()
    torch.testing.assert_close(iou, _t((0, 0)))
    torch.testing.assert_close(giou, _t((0, 0)))
    # a zero-area box against a real one: IoU 0; GIoU = -(enclosing - union) / enclosing
    giou = generalized_box_iou(_t((3, 3, 3, 3)), _t((0, 0, 1, 1)))
    torch.testing.assert_close(giou, _t((-(9 - 1) / 9,)))


def test_giou_is_differentiable() -> None:
    a = _t((0, 0, 2, 2)).requires_grad_()
    generalized_box_iou(a, _t((1, 1, 3, 3))).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_clip_boxes_hand_computed() -> None:
    boxes = _t((-5, -1, 3, 4), (8, 2, 20, 30), (12, 12, 15, 15))  # left/top out, right/bottom out, all outside
    clipped = clip_boxes(boxes, (10, 10))
    torch.testing.assert_close(clipped, _t((0, 0, 3, 4), (8, 2, 10, 10), (10, 10, 10, 10)))
    torch.testing.assert_close(box_area(clipped), _t((12, 16, 0))[0])
    assert boxes[0, 0] == -5  # not in place


def test_clip_boxes_uses_height_then_width() -> None:
    clipped = clip_boxes(_t((0, 0, 100, 100)), (20, 50))  # (height, width)
    torch.testing.assert_close(clipped, _t((0, 0, 50, 20)))


def test_flip_horizontal_hand_computed() -> None:
    flipped = flip_boxes_horizontal(_t((1, 2, 4, 6)), 10)
    torch.testing.assert_close(flipped, _t((6, 2, 9, 6)))
    torch.testing.assert_close(flip_boxes_horizontal(flipped, 10), _t((1, 2, 4, 6)))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="box_area.*shape"):
        box_area(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\(M, 4\) and \(N, 4\)"):
        box_iou(torch.zeros(2, 3, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="positive"):
        clip_boxes(torch.zeros(1, 4), (0, 10))


def test_detr_toolkit_reexports_the_one_implementation() -> None:
    from perception.models import detr

    assert detr.generalized_box_iou is generalized_box_iou
    assert detr.box_cxcywh_to_xyxy is box_cxcywh_to_xyxy
