"""Hungarian matching of set predictions to targets, with the matching cost built from weighted terms.

A cost term maps one prediction tensor (Q, ...) and one target tensor (N, ...) to a (Q, N) cost; it names
the keys it reads from the prediction and target dicts (``pred_key``, ``target_key``), so a matcher can
mix classification, box and polyline terms of different heads without knowing the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

# the 2D box helpers live in perception/structures/boxes2d.py; re-exported here for the DETR toolkit's users
from perception.structures.boxes2d import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["CostTerm", "FocalClassCost", "GIoUCost", "HungarianMatcher", "L1Cost", "PolylineCost",
           "box_cxcywh_to_xyxy", "focal_classification_cost", "generalized_box_iou", "hungarian_match",
           "weights_like"]


def hungarian_match(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of predictions (rows) to targets (columns).

    Returns (prediction indices, target indices), each of length min(rows, cols), sorted by
    prediction index. Non-finite costs are treated as prohibitively expensive, not as errors.
    """
    if cost.numel() == 0:
        return _empty_match(cost.device)
    values = cost.detach().float().cpu().numpy()
    finite = np.isfinite(values)
    if not finite.all():
        big = np.abs(values[finite]).max() * 10 + 1e6 if finite.any() else 1e6
        values = np.where(finite, values, big)
    rows, cols = linear_sum_assignment(values)
    order = np.argsort(rows)
    device = cost.device
    return (torch.as_tensor(rows[order], dtype=torch.long, device=device),
            torch.as_tensor(cols[order], dtype=torch.long, device=device))


def _empty_match(device: torch.device) -> tuple[Tensor, Tensor]:
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return empty, empty


def focal_classification_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                              eps: float = 1e-12) -> Tensor:
    """Focal-loss matching cost (Q, N) of each prediction's logits (Q, K) for each target label (N,):
    the focal loss of calling the target's class positive minus that of calling it negative."""
    prob = logits.sigmoid()
    positive = alpha * (1 - prob).pow(gamma) * -(prob + eps).log()
    negative = (1 - alpha) * prob.pow(gamma) * -(1 - prob + eps).log()
    return (positive - negative)[:, labels]


def weights_like(weights: Tensor, like: Tensor) -> Tensor:
    """``weights`` on ``like``'s device. Terms are plain objects, not modules, so ``module.to()`` does not
    move them; they store the result back and copy their weights to an accelerator once, not every call."""
    return weights if weights.device == like.device else weights.to(like.device)


class CostTerm(Protocol):
    """(Q, ...) predictions x (N, ...) targets -> (Q, N) cost, reading ``pred[pred_key]``, ``target[target_key]``."""

    pred_key: str
    target_key: str

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor: ...


class FocalClassCost:
    """:func:`focal_classification_cost` of logits (Q, K) for integer labels (N,), computed in float32."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, pred_key: str = "logits",
                 target_key: str = "labels") -> None:
        self.alpha, self.gamma, self.pred_key, self.target_key = alpha, gamma, pred_key, target_key

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return focal_classification_cost(pred.float(), target, self.alpha, self.gamma)


class L1Cost:
    """L1 distance ``cdist(p=1)`` between weighted regression codes (Q, D) and (N, D).

    ``columns`` (a slice or indices) selects the code dimensions that take part, e.g. leaving velocity out
    of the 3D box cost; ``weights`` has one value per selected column.
    """

    def __init__(self, weights: Sequence[float] | Tensor | None = None, columns: slice | Sequence[int] | None = None,
                 pred_key: str = "codes", target_key: str = "codes") -> None:
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.columns = slice(None) if columns is None else columns if isinstance(columns, slice) else list(columns)
        self.pred_key, self.target_key = pred_key, target_key

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        pred, target = pred[:, self.columns], target[:, self.columns]
        if self.weights is not None:
            self.weights = weights_like(self.weights, pred)
            weights = self.weights.to(pred.dtype)
            pred, target = pred * weights, target * weights
        return torch.cdist(pred, target, p=1)


class GIoUCost:
    """Negative GIoU of 2D boxes, ``box_format`` "cxcywh" (the normalised DETR box) or "xyxy"."""

    def __init__(self, box_format: str = "cxcywh", pred_key: str = "boxes", target_key: str = "boxes") -> None:
        if box_format not in ("cxcywh", "xyxy"):
            raise ValueError(f"box_format must be 'cxcywh' or 'xyxy', got {box_format!r}")
        self.box_format, self.pred_key, self.target_key = box_format, pred_key, target_key

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.box_format == "cxcywh":
            pred, target = box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target)
        return -generalized_box_iou(pred.float(), target.float())


class PolylineCost:
    """Mean point distance between polylines (Q, P, D) and (N, P, D): the L1 (``p=1``) or Euclidean
    (``p=2``) distance of corresponding points, averaged over the P points.

    ``undirected=True`` takes the smaller of the costs against the target and against its reversed point
    order, for lines without a direction (lane dividers, road edges).
    """

    def __init__(self, p: int = 1, undirected: bool = False, pred_key: str = "polylines",
                 target_key: str = "polylines") -> None:
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        self.p, self.undirected, self.pred_key, self.target_key = p, undirected, pred_key, target_key

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        cost = self._mean_distance(pred, target)
        if self.undirected:
            cost = torch.minimum(cost, self._mean_distance(pred, target.flip(-2)))
        return cost

    def _mean_distance(self, pred: Tensor, target: Tensor) -> Tensor:
        diff = pred[:, None] - target[None]
        point = diff.abs().sum(-1) if self.p == 1 else diff.norm(dim=-1)
        return point.mean(-1)


class HungarianMatcher:
    """One-to-one matching on ``sum(weight * term(pred, target))`` over the weighted ``terms``."""

    def __init__(self, terms: Sequence[tuple[CostTerm, float]]) -> None:
        if not terms:
            raise ValueError("HungarianMatcher needs at least one cost term")
        self.terms = list(terms)

    def cost(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        """The (Q, N) total matching cost."""
        total = None
        for term, weight in self.terms:
            cost = term(pred[term.pred_key], target[term.target_key]) * weight
            total = cost if total is None else total + cost
        return total

    @torch.no_grad()
    def __call__(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(prediction indices, target indices) of the optimal assignment; empty when there are no targets."""
        if any(len(target[term.target_key]) == 0 for term, _ in self.terms):
            return _empty_match(pred[self.terms[0][0].pred_key].device)
        return hungarian_match(self.cost(pred, target))
