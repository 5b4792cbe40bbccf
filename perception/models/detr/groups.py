"""Group-DETR helpers (Chen et al., 2023): in training the learned queries are replicated into ``groups``
independent groups, each matched one-to-one against the targets, so the decoder gets ``groups`` times the
positive samples while inference keeps one group. Queries of different groups must never interact, which
the self-attention enforces either by folding the groups into the batch or with a block-diagonal mask.

Layout convention everywhere: the query axis (dim 1) is group-major, ``[group 0 | group 1 | ...]``, each
block of equal length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["active_groups", "append_to_groups", "group_attention_mask", "group_slices", "merge_groups",
           "split_groups"]


def active_groups(groups: int, training: bool) -> int:
    """Groups in use: all of them while training, one at inference (the extra groups only add supervision)."""
    return groups if training else 1


def _per_group(num_queries: int, groups: int) -> int:
    if groups < 1 or num_queries % groups:
        raise ValueError(f"{num_queries} queries cannot be split into {groups} equal groups")
    return num_queries // groups


def group_slices(num_queries: int, groups: int) -> list[slice]:
    """The query-axis slice of each group, for per-group matching."""
    per_group = _per_group(num_queries, groups)
    return [slice(g * per_group, (g + 1) * per_group) for g in range(groups)]


def split_groups(x: Tensor, groups: int) -> Tensor:
    """(B, Q, C) -> (B * groups, Q / groups, C): each group becomes its own batch row, so attention cannot
    cross groups and no mask is needed."""
    b, q, c = x.shape
    return x.reshape(b * groups, _per_group(q, groups), c)


def merge_groups(x: Tensor, batch: int) -> Tensor:
    """Inverse of :func:`split_groups`."""
    return x.reshape(batch, -1, x.shape[-1])


def append_to_groups(learned: Tensor, extra: Tensor, groups: int) -> Tensor:
    """Append per-sample queries ``extra`` (B, E, C) to every group of ``learned`` (B, Q, C).

    Used for two-stage / hybrid proposals: each group must see the same proposals so that every group is
    a complete, independently matchable query set. Returns (B, Q + groups * E, C), still group-major.
    """
    b, q, c = learned.shape
    per_group = learned.reshape(b, groups, _per_group(q, groups), c)
    extra = extra.unsqueeze(1).expand(b, groups, *extra.shape[1:])
    return torch.cat([per_group, extra], dim=2).reshape(b, -1, c)


def group_attention_mask(group_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Boolean (Q, Q) self-attention mask, True where attention is blocked (``nn.MultiheadAttention``'s
    convention): query i may attend to key j only inside its own group.

    Prefer :func:`split_groups` for equal groups (cheaper); the mask covers groups of unequal size, e.g.
    denoising queries next to the matching queries.
    """
    sizes = torch.as_tensor(list(group_sizes), dtype=torch.long, device=device)
    group_of = torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)
    return group_of[:, None] != group_of[None, :]
