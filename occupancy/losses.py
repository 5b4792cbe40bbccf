"""Losses of the occupancy head over voxels (docs/occupancy.md, "Head and losses").

* :func:`weighted_cross_entropy`: class-weighted cross-entropy averaged over the selected voxels,
  ``sum_v w[y_v] * -log p_v(y_v) / sum_v w[y_v]`` (the weighted mean, as ``F.cross_entropy`` with
  ``weight=`` and ``reduction='mean'`` defines it).
* :func:`class_weights_from_frequencies`: the optional weights from per-class voxel counts,
  ``w_c = 1 / ln(1.02 + n_c / sum n)`` (rare classes weigh up to ``1 / ln 1.02`` = 50.5, the most
  common about 1.4).
* :func:`lovasz_softmax`: the Lovász extension of the per-class Jaccard loss evaluated at the
  per-voxel errors ``|[y = c] - p_c|``, averaged over the classes present in the labels
  (``classes='present'``) or over all classes (``'all'``).

All three take flat inputs: probabilities or logits (N, C) and labels (N,) of the voxels that count
(the caller applies the camera / LiDAR mask and drops ignored labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_weights_from_frequencies", "jaccard_loss_increments", "lovasz_softmax", "weighted_cross_entropy"]


def class_weights_from_frequencies(counts: Sequence[float] | Tensor, offset: float = 1.02) -> Tensor:
    """Per-class weights ``1 / ln(offset + f_c)`` from voxel counts, ``f_c = n_c / sum n``.

    A class with no voxels gets the largest weight ``1 / ln(offset)``; ``offset`` must exceed 1 so
    every weight stays positive and finite. The weights are computed on the CPU whatever the default
    device, because the counts are checked by value: a model built under ``torch.device("meta")`` still
    gets them."""
    if offset <= 1.0:
        raise ValueError(f"offset must be > 1 (weights 1 / ln(offset + f)), got {offset}")
    counts = torch.as_tensor(counts, dtype=torch.float64, device="cpu")
    if counts.dim() != 1 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError("class counts must be a 1-D sequence of non-negative numbers with a positive sum")
    freq = counts / counts.sum()
    return (1.0 / torch.log(offset + freq)).float()


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """Weighted mean cross-entropy of logits (N, C) against labels (N,) (see the module docstring).

    With no voxel (N = 0) or a zero total weight the loss is a zero that still depends on ``logits``,
    so a batch whose mask is empty backpropagates zeros instead of NaN."""
    if labels.numel() == 0:
        return logits.sum() * 0.0
    per_voxel = F.cross_entropy(logits.float(), labels.long(), reduction="none")
    if weight is None:
        return per_voxel.mean()
    w = weight.to(per_voxel)[labels.long()]
    total = w.sum()
    if float(total) <= 0:
        return logits.sum() * 0.0
    return (w * per_voxel).sum() / total


def jaccard_loss_increments(foreground_sorted: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Increments ``g_i = D(S_i) - D(S_{i-1})`` of the Jaccard loss ``D(M) = |M| / |F u M|`` along a
    sorted order, where ``S_i`` holds the first i elements and ``foreground_sorted`` (N,) is the 0/1
    indicator of F in that order. ``g`` is the gradient of the Lovász extension of D at any error
    vector sorted that way (descending).

    With ``k_i`` the foreground elements among the first i, ``|F u S_i| = |F| + i - k_i``, so
    ``D(S_i) = i / (|F| + i - k_i)`` (equivalently ``1 - |F \\ S_i| / |F u S_i|``, one minus the IoU
    when exactly the elements of ``S_i`` are wrong), and ``D(S_0) = D(empty) = 0``."""
    fg = foreground_sorted.to(dtype)
    total = fg.sum()
    k = fg.cumsum(0)
    i = torch.arange(1, fg.numel() + 1, device=fg.device, dtype=fg.dtype)
    loss_at = i / (total + i - k)  # the denominator is >= i >= 1
    return torch.cat([loss_at[:1], loss_at[1:] - loss_at[:-1]])


def lovasz_softmax(probs: Tensor, labels: Tensor, classes: str | Sequence[int] = "present") -> Tensor:
    """Lovász-softmax loss of class probabilities (N, C) against labels (N,).

    For each class c: errors ``e_i = |[y_i = c] - p_ic|``, sorted descending; the Lovász extension of
    the Jaccard loss at e is ``sum_i e_(i) g_i`` with ``g`` from :func:`jaccard_loss_increments` on the
    foreground indicator in the same order (a piecewise-linear function of ``p`` whose gradient is
    ``g`` placed back at the voxels). ``classes``: ``'present'`` (classes that occur in ``labels``),
    ``'all'`` (every class; for one absent from the labels D is 1 on every non-empty set, so it
    costs its largest probability), or an explicit list. Returns the mean over those classes (zero when there
    are none)."""
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}")
    num_classes = probs.shape[1]
    if labels.numel() == 0:
        return probs.sum() * 0.0
    if classes == "present":
        chosen = torch.unique(labels).tolist()
    elif classes == "all":
        chosen = list(range(num_classes))
    elif isinstance(classes, str):
        raise ValueError(f"classes must be 'present', 'all' or a list of class indices, got {classes!r}")
    else:
        chosen = list(classes)
    dtype = torch.promote_types(probs.dtype, torch.float32)  # half precision is summed in float32
    losses = []
    for c in chosen:
        foreground = (labels == c).to(dtype)
        errors = (foreground - probs[:, c].to(dtype)).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, jaccard_loss_increments(foreground[order], dtype)))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()
