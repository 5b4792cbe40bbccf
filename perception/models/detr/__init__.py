"""DETR toolkit shared by the set-prediction heads (3D boxes on the BEV, lanes, traffic elements, 2D boxes).

- :mod:`.decoder`: :class:`DETRDecoderLayer` (grouped self-attention, deformable cross-attention on a
  multi-level :class:`Memory`, FFN, post-norm) and :func:`run_decoder` / :class:`DETRDecoder` with iterative
  reference refinement through a :class:`ReferenceKind` (point, 2D box, polyline).
- :mod:`.groups`: Group-DETR query-group helpers.
- :mod:`.matcher`: :class:`HungarianMatcher` over weighted cost terms.
- :mod:`.criterion`: :class:`SetCriterion`, the per-layer, per-group, positive-normalised set loss.
"""

from .criterion import MatchedLoss, SetCriterion, SmoothL1
from .decoder import (
    BoxReference,
    DecoderStep,
    DETRDecoder,
    DETRDecoderLayer,
    Memory,
    PointReference,
    PolylineReference,
    ReferenceKind,
    inverse_sigmoid,
    run_decoder,
)
from .groups import (
    active_groups,
    append_to_groups,
    group_attention_mask,
    group_slices,
    merge_groups,
    split_groups,
)
from .matcher import (
    CostTerm,
    FocalClassCost,
    GIoUCost,
    HungarianMatcher,
    L1Cost,
    PolylineCost,
    box_cxcywh_to_xyxy,
    focal_classification_cost,
    generalized_box_iou,
    hungarian_match,
)

__all__ = [
    "BoxReference",
    "CostTerm",
    "DETRDecoder",
    "DETRDecoderLayer",
    "DecoderStep",
    "FocalClassCost",
    "GIoUCost",
    "HungarianMatcher",
    "L1Cost",
    "MatchedLoss",
    "Memory",
    "PointReference",
    "PolylineCost",
    "PolylineReference",
    "ReferenceKind",
    "SetCriterion",
    "SmoothL1",
    "active_groups",
    "append_to_groups",
    "box_cxcywh_to_xyxy",
    "focal_classification_cost",
    "generalized_box_iou",
    "group_attention_mask",
    "group_slices",
    "hungarian_match",
    "inverse_sigmoid",
    "merge_groups",
    "run_decoder",
    "split_groups",
]
