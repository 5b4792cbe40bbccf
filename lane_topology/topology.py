"""Topology from pairs of decoded queries (docs/lanes.md, "Heads"): lane -> lane connectivity and
lane <-> traffic-element assignment, each a sigmoid confidence per pair, trained with a focal loss on
the pairs of matched queries.

* :class:`LaneLaneTopology`: ``logit(i -> j) = MLP(relu(out(q_i) + in(q_j) + geo(end_i - start_j)))``.
  Separate "outgoing" and "incoming" projections keep the relation directed, and the metric gap
  between the end of lane i and the start of lane j (in metres, divided by ``geometry_scale``) lets the
  head read connectivity off the geometry it predicted.
* :class:`LaneElementTopology`: ``logit(i, k) = MLP(relu(lane(q_i) + element(t_k)))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from perception.models.losses import sigmoid_focal_loss

__all__ = ["LaneElementTopology", "LaneLaneTopology", "matched_pair_focal_loss"]


def _mlp(dims: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class LaneLaneTopology(nn.Module):
    """(B, Q, C) lane queries and their (B, Q, P, 3) metric polylines -> (B, Q, Q) logits of i -> j."""

    def __init__(self, dims: int, hidden: int = 128, geometry_scale: float = 10.0) -> None:
        super().__init__()
        self.outgoing, self.incoming = _mlp(dims, hidden, hidden), _mlp(dims, hidden, hidden)
        self.gap = nn.Linear(3, hidden)
        self.classifier = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        self.geometry_scale = geometry_scale

    def forward(self, queries: Tensor, polylines: Tensor) -> Tensor:
        gap = (polylines[:, None, :, 0] - polylines[:, :, None, -1]) / self.geometry_scale  # [b, i, j]: start_j - end_i
        pair = self.outgoing(queries)[:, :, None] + self.incoming(queries)[:, None] + self.gap(gap)
        return self.classifier(pair).squeeze(-1)


class LaneElementTopology(nn.Module):
    """(B, Q, C) lane queries and (B, K, C) traffic-element queries -> (B, Q, K) logits."""

    def __init__(self, dims: int, hidden: int = 128) -> None:
        super().__init__()
        self.lane, self.element = _mlp(dims, hidden, hidden), _mlp(dims, hidden, hidden)
        self.classifier = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, lanes: Tensor, elements: Tensor) -> Tensor:
        return self.classifier(self.lane(lanes)[:, :, None] + self.element(elements)[:, None]).squeeze(-1)


def matched_pair_focal_loss(logits: Tensor, targets: Sequence[Tensor], row_matches: Sequence[tuple[Tensor, Tensor]],
                            col_matches: Sequence[tuple[Tensor, Tensor]], alpha: float = 0.25,
                            gamma: float = 2.0) -> Tensor:
    """Focal loss of the pair logits (B, R, C) between matched queries only.

    For sample b, ``row_matches[b] = (query rows, GT rows)`` and ``col_matches[b]`` likewise: the logits
    of the matched query pairs are compared with the GT relation of their GT pair, ``targets[b]``
    (N_rows, N_cols) 0/1. Summed over the pairs and divided by the number of positive pairs (at least
    one), as the set criterion normalises by positives. A batch without matched pairs gives a zero that
    still depends on ``logits``."""
    losses, positives = [], 0.0
    for b, ((q_rows, gt_rows), (q_cols, gt_cols)) in enumerate(zip(row_matches, col_matches)):
        if len(q_rows) == 0 or len(q_cols) == 0:
            continue
        pair_logits = logits[b][q_rows][:, q_cols]
        target = targets[b].to(pair_logits)[gt_rows][:, gt_cols]
        losses.append(sigmoid_focal_loss(pair_logits, target, alpha, gamma).sum())
        positives += float(target.sum())
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).sum() / max(positives, 1.0)
