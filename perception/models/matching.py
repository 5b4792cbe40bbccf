"""Bipartite matching for set-prediction heads (DETR-style), shared by every task."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["focal_classification_cost", "hungarian_match"]


def hungarian_match(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one assignment of predictions (rows) to targets (columns).

    Returns (prediction indices, target indices), each of length min(rows, cols), sorted by
    prediction index. Non-finite costs are treated as prohibitively expensive, not as errors.
    """
    if cost.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=cost.device)
        return empty, empty
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


def focal_classification_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                              eps: float = 1e-12) -> Tensor:
    """Focal-loss matching cost (Q, N) of each prediction's logits (Q, K) for each target label (N,)."""
    prob = logits.sigmoid()
    positive = alpha * (1 - prob).pow(gamma) * -(prob + eps).log()
    negative = (1 - alpha) * prob.pow(gamma) * -(1 - prob + eps).log()
    return (positive - negative)[:, labels]
