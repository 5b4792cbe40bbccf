"""The DETR set criterion: match every decoder layer's predictions to the targets, then a focal
classification loss on all queries plus regression losses on the matched pairs.

Normalisation: the losses are sums over the batch divided by the number of positives *per group*,
``num_pos = max(matched / groups, 1)``, and by ``groups`` again, so neither the batch content nor the
Group-DETR group count changes the loss scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from perception.models.losses import sigmoid_focal_loss, weighted_smooth_l1

from .groups import group_slices
from .matcher import HungarianMatcher, weights_like

__all__ = ["Match", "MatchedLoss", "SetCriterion", "SmoothL1"]

Match = tuple[int, slice, Tensor, Tensor]  # sample, group slice, prediction rows (within group), target cols


class SmoothL1:
    """Element-wise smooth-L1 with per-dimension ``weights`` (beta=0: weighted L1); non-finite targets
    are ignored (see :func:`perception.models.losses.weighted_smooth_l1`)."""

    def __init__(self, weights: Sequence[float] | Tensor, beta: float = 1.0) -> None:
        self.weights, self.beta = torch.as_tensor(weights, dtype=torch.float32), beta

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        self.weights = weights_like(self.weights, pred)
        return weighted_smooth_l1(pred, target, self.weights.to(pred.dtype), self.beta)


@dataclass(frozen=True)
class MatchedLoss:
    """A regression loss on the matched pairs: ``fn(pred, target)`` (any shape; it is summed) on
    ``pred[pred_key]`` (B, Q, ...) rows and ``target[target_key]`` (N, ...) rows, reported as ``name``."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    weight: float = 1.0
    pred_key: str = "codes"
    target_key: str = "codes"


class SetCriterion:
    """Losses of per-layer predictions ``[{"logits": (B, Q, K), ...}, ...]`` against per-sample targets
    ``[{"labels": (N,), ...}, ...]``, queries laid out in ``groups`` equal Group-DETR groups.

    Every layer but the last is an auxiliary output and gets the key prefix ``d{layer}.``.
    """

    def __init__(self, matcher: HungarianMatcher, losses: Sequence[MatchedLoss] = (), cls_weight: float = 1.0,
                 alpha: float = 0.25, gamma: float = 2.0, cls_name: str = "loss_cls", logits_key: str = "logits",
                 labels_key: str = "labels") -> None:
        self.matcher, self.losses, self.cls_weight = matcher, list(losses), cls_weight
        self.alpha, self.gamma, self.cls_name = alpha, gamma, cls_name
        self.logits_key, self.labels_key = logits_key, labels_key

    def __call__(self, outputs: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]],
                 groups: int = 1) -> dict[str, Tensor]:
        losses = {}
        last = len(outputs) - 1
        for layer, pred in enumerate(outputs):
            prefix = "" if layer == last else f"d{layer}."
            losses.update({prefix + name: value for name, value in self.layer_loss(pred, targets, groups).items()})
        return losses

    def layer_loss(self, pred: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], groups: int = 1
                   ) -> dict[str, Tensor]:
        """The losses of one layer, keyed by name without prefix."""
        return self.matched_loss(pred, targets, self.match(pred, targets, groups), groups)

    def matched_loss(self, pred: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]],
                     matches: Sequence[Match], groups: int = 1) -> dict[str, Tensor]:
        """The losses of one layer for given ``matches`` (from :meth:`match`, or known in advance, as for
        denoising queries built from the targets), keyed by name without prefix."""
        num_pos = max(sum(len(rows) for _, _, rows, _ in matches) / groups, 1.0)
        cls = sigmoid_focal_loss(pred[self.logits_key], self._class_targets(pred, targets, matches),
                                 self.alpha, self.gamma)
        out = {self.cls_name: cls.sum() / num_pos / groups * self.cls_weight}
        for loss in self.losses:
            matched_pred = torch.cat([pred[loss.pred_key][i, sl][rows] for i, sl, rows, _ in matches])
            matched_target = torch.cat([targets[i][loss.target_key][cols] for i, _, _, cols in matches])
            out[loss.name] = loss.fn(matched_pred, matched_target).sum() / num_pos / groups * loss.weight
        return out

    @torch.no_grad()
    def match(self, pred: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], groups: int = 1
              ) -> list[Match]:
        """Match each sample's each group on its own (one-to-one within a group, one-to-many overall)."""
        matches = []
        num_queries = pred[self.logits_key].shape[1]
        for i, target in enumerate(targets):
            for sl in group_slices(num_queries, groups):
                rows, cols = self.matcher({key: value[i, sl] for key, value in pred.items()}, target)
                matches.append((i, sl, rows, cols))
        return matches

    def _class_targets(self, pred: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]],
                       matches: Sequence[Match]) -> Tensor:
        """One-hot (B, Q, K) targets: 1 at (matched query, its target's class), 0 elsewhere (background)."""
        onehot = torch.zeros_like(pred[self.logits_key])
        for i, sl, rows, cols in matches:
            onehot[i, sl][rows, targets[i][self.labels_key][cols]] = 1.0
        return onehot
