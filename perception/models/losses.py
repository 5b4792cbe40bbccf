"""Losses shared by the heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sigmoid_focal_loss", "weighted_smooth_l1"]


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise sigmoid focal loss (RetinaNet) for one-hot ``targets`` of the logits' shape."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t).pow(gamma) * ce


def weighted_smooth_l1(pred: Tensor, target: Tensor, weights: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth-L1 (beta=0 gives plain L1) with per-dimension weights; non-finite targets are ignored."""
    finite = torch.isfinite(target)
    target = torch.where(finite, target, pred.detach())
    diff = (pred - target).abs()
    loss = diff if beta <= 0 else torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return loss * weights * finite
