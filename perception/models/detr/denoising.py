"""Contrastive denoising (DINO's CDN): noised copies of the ground truth fed to the decoder next to the
matching queries, whose matches are known, so the decoder learns to repair boxes and to reject near misses.

Each denoising group holds ``2 * n`` queries for the batch's largest target count ``n``: ``n`` positives
(boxes moved by less than ``box_noise`` times their half-size; they must reconstruct their target) then
``n`` negatives (moved by between one and two times that; they must predict "no object"). Labels flip to
a random class with probability ``label_noise / 2``. Samples with fewer targets leave padding slots.

Query layout along the query axis: ``[group 0 | group 1 | ... | matching queries]``. The self-attention
mask (True = blocked, ``nn.MultiheadAttention``'s convention) keeps the ground truth from leaking:

* the matching queries see no denoising query (they must not read the answers);
* a denoising group sees no other denoising group (each is an independent noised copy);
* denoising queries may see the matching queries (these carry no ground truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from perception.structures.boxes2d import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

from .criterion import Match
from .groups import group_slices

__all__ = ["DenoisingQueries", "build_denoising_queries", "denoising_attention_mask"]


@dataclass(frozen=True)
class DenoisingQueries:
    """The denoising part of a batch: ``labels`` (B, D) noised class indices (``num_classes`` on padding
    slots), ``boxes`` (B, D, 4) noised normalised cxcywh boxes, ``groups`` and the ``attn_mask``
    (D + Q, D + Q) over denoising plus ``num_matching`` matching queries; ``matches`` pair each sample's
    positive rows (within each group) with its target indices, in :class:`SetCriterion`'s format."""

    labels: Tensor
    boxes: Tensor
    groups: int
    attn_mask: Tensor
    matches: list[Match]

    @property
    def num_queries(self) -> int:
        return self.labels.shape[1]


def denoising_attention_mask(num_denoising: int, groups: int, num_matching: int,
                             device: torch.device | str | None = None) -> Tensor:
    """Boolean (D + Q, D + Q) mask, True = blocked, for ``groups`` equal denoising groups over
    ``num_denoising`` queries followed by ``num_matching`` matching queries (see the module docstring)."""
    total = num_denoising + num_matching
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[num_denoising:, :num_denoising] = True
    for sl in group_slices(num_denoising, groups) if num_denoising else []:
        mask[sl, :num_denoising] = True
        mask[sl, sl] = False
    return mask


def _group_count(num_denoising_queries: int, max_targets: int) -> int:
    """As many groups as ``num_denoising_queries`` allows for the largest sample, at least one."""
    return max(1, num_denoising_queries // max_targets)


def build_denoising_queries(labels: Sequence[Tensor], boxes: Sequence[Tensor], num_classes: int,
                            num_matching: int, num_denoising_queries: int = 100, label_noise: float = 0.5,
                            box_noise: float = 1.0, generator: torch.Generator | None = None
                            ) -> DenoisingQueries | None:
    """Noised queries for targets ``labels[b]`` (N_b,) and normalised cxcywh ``boxes[b]`` (N_b, 4).

    ``num_denoising_queries`` bounds the positives per batch (``groups * max N_b``); returns None when the
    batch has no target (nothing to denoise).
    """
    max_targets = max((len(x) for x in labels), default=0)
    if max_targets == 0:
        return None
    device = boxes[0].device
    groups = _group_count(num_denoising_queries, max_targets)
    per_group = 2 * max_targets
    num_denoising = groups * per_group
    out_labels = torch.full((len(labels), num_denoising), num_classes, dtype=torch.long, device=device)
    out_boxes = torch.zeros(len(labels), num_denoising, 4, device=device, dtype=boxes[0].dtype)
    matches: list[Match] = []
    for b, (sample_labels, sample_boxes) in enumerate(zip(labels, boxes, strict=True)):
        n = len(sample_labels)
        for g, sl in enumerate(group_slices(num_denoising, groups)):
            matches.append((b, sl, torch.arange(n, device=device), torch.arange(n, device=device)))
            if n == 0:
                continue
            start = g * per_group
            for offset, negative in ((0, False), (max_targets, True)):
                rows = slice(start + offset, start + offset + n)
                out_labels[b, rows] = _noise_labels(sample_labels, num_classes, label_noise, generator)
                out_boxes[b, rows] = _noise_boxes(sample_boxes, box_noise, negative, generator)
    mask = denoising_attention_mask(num_denoising, groups, num_matching, device)
    return DenoisingQueries(out_labels, out_boxes, groups, mask, matches)


def _noise_labels(labels: Tensor, num_classes: int, label_noise: float, generator: torch.Generator | None) -> Tensor:
    """Each label replaced by a uniformly random class with probability ``label_noise / 2`` (DINO)."""
    flip = torch.rand(labels.shape, generator=generator, device=labels.device) < label_noise * 0.5
    random = torch.randint(0, num_classes, labels.shape, generator=generator, device=labels.device)
    return torch.where(flip, random, labels)


def _noise_boxes(boxes: Tensor, box_noise: float, negative: bool, generator: torch.Generator | None) -> Tensor:
    """Corners moved by a random sign times ``box_noise`` * half-size * u, u in [0, 1) for positives and
    [1, 2) for negatives, then clipped to the image; normalised cxcywh in and out."""
    if box_noise <= 0:
        return boxes.clone()
    half = boxes[:, 2:].repeat(1, 2) * 0.5
    magnitude = torch.rand(boxes.shape, generator=generator, device=boxes.device) + float(negative)
    sign = torch.randint(0, 2, boxes.shape, generator=generator, device=boxes.device) * 2 - 1
    corners = box_cxcywh_to_xyxy(boxes) + sign * magnitude * half * box_noise
    return box_xyxy_to_cxcywh(corners.clamp(0.0, 1.0))
