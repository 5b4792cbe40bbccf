"""Batch-level mixup / cutmix with label smoothing (timm ``Mixup`` semantics, batch mode).

With probability ``prob`` a batch is mixed with its reverse: cutmix (chance ``switch_prob`` when
both are enabled) pastes a box whose area fraction is 1 - lam (lam ~ Beta(cutmix_alpha)), then
corrects lam to the clipped box; mixup blends images with lam ~ Beta(mixup_alpha). Targets are
label-smoothed one-hots (off = smoothing / K, on = 1 - smoothing + off) mixed with the same lam.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["MixupCutmix", "smooth_one_hot"]


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1).long(), on)


class MixupCutmix:
    """Callable ``(images, labels) -> (mixed images, soft targets)``."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1) -> None:
        if num_classes <= 0:
            raise ValueError(f"MixupCutmix needs num_classes > 0, got {num_classes}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing

    def _cutmix_box(self, height: int, width: int, lam: float) -> tuple[int, int, int, int, float]:
        cut = np.sqrt(1.0 - lam)
        ch, cw = int(height * cut), int(width * cut)
        cy, cx = np.random.randint(height), np.random.randint(width)
        y0, y1 = np.clip(cy - ch // 2, 0, height), np.clip(cy + ch // 2, 0, height)
        x0, x1 = np.clip(cx - cw // 2, 0, width), np.clip(cx + cw // 2, 0, width)
        corrected = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        return int(y0), int(y1), int(x0), int(x1), corrected

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        lam, use_cutmix = 1.0, False
        if np.random.rand() < self.prob and (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = np.random.rand() < self.switch_prob
            else:
                use_cutmix = self.cutmix_alpha > 0
            alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            lam = float(np.random.beta(alpha, alpha))
        if lam < 1.0:
            flipped = images.flip(0)
            if use_cutmix:
                y0, y1, x0, x1, lam = self._cutmix_box(images.shape[-2], images.shape[-1], lam)
                images = images.clone()
                images[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            else:
                images = images * lam + flipped * (1.0 - lam)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        targets = targets * lam + targets.flip(0) * (1.0 - lam)
        return images, targets
