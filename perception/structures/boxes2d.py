"""2D image boxes: format conversions, areas, pairwise IoU / GIoU and clipping, the one implementation every
2D consumer uses (the DETR matcher and criteria, the perspective head, traffic elements, the 2D detectors).

Formats (the last dimension holds the 4 numbers; any leading dimensions are kept):

* ``xyxy`` -- (x1, y1, x2, y2), the top-left and bottom-right corners; the format of IoU, GIoU and clipping;
* ``cxcywh`` -- (cx, cy, w, h), the centre and size: the normalised box DETR-style heads regress;
* ``xywh`` -- (x, y, w, h), the top-left corner and size: the COCO ``bbox`` field.

Degenerate boxes (x2 <= x1 or y2 <= y1) have area 0, never a negative one. A pair whose union is empty
(two zero-area boxes) has IoU 0, and GIoU 0 when the enclosing box is empty too, rather than NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_area", "box_cxcywh_to_xyxy", "box_iou", "box_xywh_to_xyxy", "box_xyxy_to_cxcywh",
           "box_xyxy_to_xywh", "clip_boxes", "flip_boxes_horizontal", "generalized_box_iou"]


def _check_boxes(boxes: Tensor, name: str) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name}: expected boxes with 4 numbers in the last dimension, got shape {tuple(boxes.shape)}")


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    _check_boxes(boxes, "box_cxcywh_to_xyxy")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    _check_boxes(boxes, "box_xyxy_to_cxcywh")
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO (x, y, w, h) -> (x1, y1, x2, y2)."""
    _check_boxes(boxes, "box_xywh_to_xyxy")
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(x1, y1, x2, y2) -> COCO (x, y, w, h)."""
    _check_boxes(boxes, "box_xyxy_to_xywh")
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes (...,), 0 for degenerate ones."""
    _check_boxes(boxes, "box_area")
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _pairwise_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(a[:, None], b[None]) broadcast, with their intersection and union areas (M, N)."""
    _check_boxes(a, "boxes a")
    _check_boxes(b, "boxes b")
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"pairwise IoU needs (M, 4) and (N, 4) boxes, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a[:, None], b[None]
    inter = box_area(torch.cat([torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])], -1))
    union = box_area(a) + box_area(b) - inter
    return a, b, inter, union


def box_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU (M, N) of xyxy boxes a (M, 4) and b (N, 4); 0 where the union is empty."""
    _, _, inter, union = _pairwise_union(a, b)
    return inter / union.clamp(min=eps)


def generalized_box_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise GIoU (M, N) of xyxy boxes a (M, 4) and b (N, 4): IoU - (enclosing - union) / enclosing,
    in [-1, 1]; disjoint boxes go below 0 the further apart they are."""
    a, b, inter, union = _pairwise_union(a, b)
    enclosing = box_area(torch.cat([torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])], -1))
    return inter / union.clamp(min=eps) - (enclosing - union) / enclosing.clamp(min=eps)


def clip_boxes(boxes: Tensor, hw: tuple[int | float, int | float]) -> Tensor:
    """xyxy boxes clipped to an image of size ``hw`` = (height, width): x into [0, width], y into [0, height].

    A box wholly outside the image collapses onto its border with zero area; callers drop those by
    :func:`box_area`. Returns a new tensor.
    """
    _check_boxes(boxes, "clip_boxes")
    height, width = hw
    if height <= 0 or width <= 0:
        raise ValueError(f"clip_boxes: image size (height, width) must be positive, got {tuple(hw)}")
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def flip_boxes_horizontal(boxes: Tensor, width: int | float) -> Tensor:
    """xyxy boxes mirrored about the vertical axis of an image ``width`` wide (x -> width - x); the corners
    swap so that x1 <= x2 stays true."""
    _check_boxes(boxes, "flip_boxes_horizontal")
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([width - x2, y1, width - x1, y2], dim=-1)
