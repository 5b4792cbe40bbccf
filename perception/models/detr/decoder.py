"""DETR decoder with deformable cross-attention and iterative reference refinement.

Each layer attends from the queries to a flattened multi-level memory (a BEV map, image features) around a
per-query reference; after each layer a regression branch predicts a delta that refines the reference in
logit space (Deformable DETR's iterative box refinement). What a reference *is* - a 3D point, a 2D box, a
polyline - is a :class:`ReferenceKind`, so the same decoder serves the 3D-box, 2D-box and lane heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ops import MultiScaleDeformableAttention
from ops.export import level_table
from perception.models.layers import FFN

from .groups import merge_groups, split_groups

__all__ = ["BoxReference", "DETRDecoder", "DETRDecoderLayer", "DecoderStep", "Memory", "PointReference",
           "PolylineReference", "ReferenceKind", "inverse_sigmoid", "run_decoder"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit of ``x`` clamped into [0, 1]; ``eps`` keeps references on the border finite."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


# -- memory ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """What the cross-attention reads: ``value`` (B, S, C), the (H, W) of each level ``spatial_shapes``
    (L, 2) and each level's first row in ``value``, ``level_start_index`` (L,); ``padding_mask`` (B, S),
    True on padded pixels of a batch of differently sized images, keeps those rows out of the attention."""

    value: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    padding_mask: Tensor | None = None

    @property
    def num_levels(self) -> int:
        return self.spatial_shapes.shape[0]

    @classmethod
    def from_maps(cls, maps: Sequence[Tensor]) -> Memory:
        """Flatten (B, C, H, W) maps level by level. A single map stays a transposed view (no copy)."""
        device = maps[0].device
        flat = [m.flatten(2).transpose(1, 2) for m in maps]
        value = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
        shapes = level_table([m.shape[-2:] for m in maps], device)  # sizes stay static when exporting
        start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
        return cls(value, shapes, start)


# -- references ------------------------------------------------------------------------------------
class ReferenceKind:
    """How a query's reference is refined and where the cross-attention samples around it.

    References are normalised to [0, 1]. ``dims`` leading values of the regression delta refine the
    reference in logit space: ``sigmoid(delta + inverse_sigmoid(ref))``; the rest of the delta is the
    head's business (sizes, yaw, ...).
    """

    dims: int

    def refine(self, reference: Tensor, delta: Tensor) -> Tensor:
        """The refined reference (not detached; the decoder detaches it before the next layer)."""
        step = delta[..., : self.dims].reshape(reference.shape)
        return (step + inverse_sigmoid(reference)).sigmoid()

    def sampling_reference(self, reference: Tensor) -> Tensor:
        """(B, Q, 2) normalised (u, v) centres, or (B, Q, 4) (cx, cy, w, h) boxes, for the attention."""
        raise NotImplementedError


class PointReference(ReferenceKind):
    """A point of ``dims`` normalised coordinates (B, Q, dims); the attention samples at the coordinates
    ``uv`` (two indices), e.g. ``(1, 0)`` on a (B, C, Nx, Ny) BEV map whose u axis is y."""

    def __init__(self, dims: int = 3, uv: tuple[int, int] = (0, 1)) -> None:
        self.dims, self.uv = dims, list(uv)

    def sampling_reference(self, reference: Tensor) -> Tensor:
        return reference[..., self.uv]


class BoxReference(ReferenceKind):
    """A 2D box (cx, cy, w, h) normalised (B, Q, 4), all four refined in logit space.

    ``sample="box"`` passes the box to the attention so the sampling offsets scale with its size
    (Deformable DETR's two-stage setting); ``sample="centre"`` samples around (cx, cy) with offsets in
    feature-map pixels.
    """

    dims = 4

    def __init__(self, sample: str = "box") -> None:
        if sample not in ("box", "centre"):
            raise ValueError(f"sample must be 'box' or 'centre', got {sample!r}")
        self.sample = sample

    def sampling_reference(self, reference: Tensor) -> Tensor:
        return reference if self.sample == "box" else reference[..., :2]


class PolylineReference(ReferenceKind):
    """A polyline of ``num_points`` points with ``coords`` normalised coordinates (B, Q, P, coords); the
    first P * coords delta values refine every point in logit space.

    The attention samples around the *mean* point (coordinates ``uv``): the deformable attention takes one
    reference per query, and its learned offsets can reach along the line. Heads that want to sample at
    every point should make each point its own query (MapTR's point queries) with a PointReference.
    """

    def __init__(self, num_points: int, coords: int = 2, uv: tuple[int, int] = (0, 1)) -> None:
        self.num_points, self.coords, self.uv = num_points, coords, list(uv)
        self.dims = num_points * coords

    def sampling_reference(self, reference: Tensor) -> Tensor:
        return reference[..., self.uv].mean(-2)


# -- layers ----------------------------------------------------------------------------------------
class DETRDecoderLayer(nn.Module):
    """Self-attention (within each query group) -> deformable cross-attention on the memory -> FFN,
    each followed by a LayerNorm (post-norm, as Deformable DETR)."""

    def __init__(self, dims: int, heads: int, ffn_dims: int, num_points: int = 4, dropout: float = 0.1,
                 num_levels: int = 1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dims, heads, dropout=dropout, batch_first=True)
        self.cross_attn = MultiScaleDeformableAttention(dims, heads, num_levels=num_levels, num_points=num_points,
                                                        dropout=dropout)
        self.ffn = FFN(dims, ffn_dims, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dims) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, query_pos: Tensor, memory: Memory, reference: Tensor, groups: int = 1,
                attn_mask: Tensor | None = None) -> Tensor:
        """query, query_pos (B, Q, C); ``reference`` (B, Q, 2 | 4) normalised, shared by all levels.

        ``groups`` equal Group-DETR groups are folded into the batch so they cannot attend to each other;
        ``attn_mask`` (boolean, True = blocked) further restricts attention inside a group, shaped
        (Q / groups, Q / groups) or (B * groups * heads, Q / groups, Q / groups).
        """
        query = self.norms[0](query + self.dropout(self._self_attention(query, query_pos, groups, attn_mask)))
        ref = reference[:, :, None].expand(-1, -1, memory.num_levels, -1)
        query = self.norms[1](self.cross_attn(query, value=memory.value, query_pos=query_pos, reference_points=ref,
                                              spatial_shapes=memory.spatial_shapes,
                                              level_start_index=memory.level_start_index,
                                              key_padding_mask=memory.padding_mask))
        return self.norms[2](self.ffn(query))

    def _self_attention(self, query: Tensor, query_pos: Tensor, groups: int, attn_mask: Tensor | None) -> Tensor:
        key = split_groups(query + query_pos, groups)
        attn = self.self_attn(key, key, split_groups(query, groups), attn_mask=attn_mask, need_weights=False)[0]
        return merge_groups(attn, query.shape[0])


class DecoderStep(NamedTuple):
    """One layer's result: its output ``query``, the regression ``delta`` and the refined ``reference``
    (with gradient; the prediction of this layer is relative to it)."""

    query: Tensor
    delta: Tensor
    reference: Tensor


QueryPos = Tensor | Callable[[Tensor], Tensor]


def run_decoder(layers: Iterable[nn.Module], reg_branches: Iterable[nn.Module], query: Tensor, query_pos: QueryPos,
                memory: Memory, reference: Tensor, kind: ReferenceKind, groups: int = 1,
                attn_mask: Tensor | None = None) -> Iterator[DecoderStep]:
    """Run the layers with iterative refinement: layer i samples around the reference refined by layer
    i - 1, detached so each layer learns its own correction (Deformable DETR).

    ``query_pos`` is a fixed (B, Q, C) embedding, or a function of each layer's input reference that
    computes it anew (DINO's positional queries from the current box, docs/pretraining_2d.md).

    A generator: each step is yielded before the next layer runs, so a head's per-layer prediction
    branches run interleaved with the layers, exactly as in a hand-written loop (same autograd graph
    order, hence bit-identical gradients). ``list(run_decoder(...))`` collects all steps.
    """
    for layer, branch in zip(layers, reg_branches, strict=True):
        pos = query_pos(reference) if callable(query_pos) else query_pos
        query = layer(query, pos, memory, kind.sampling_reference(reference), groups, attn_mask)
        delta = branch(query)
        refined = kind.refine(reference, delta)
        yield DecoderStep(query, delta, refined)
        reference = refined.detach()


class DETRDecoder(nn.Module):
    """The layers and their regression branches as one module, for heads that do not need
    checkpoint-compatible parameter names (``decoder.layers.*``, ``decoder.reg_branches.*``)."""

    def __init__(self, layers: Iterable[nn.Module], reg_branches: Iterable[nn.Module], kind: ReferenceKind) -> None:
        super().__init__()
        self.layers, self.reg_branches, self.kind = nn.ModuleList(layers), nn.ModuleList(reg_branches), kind
        if len(self.layers) != len(self.reg_branches):
            raise ValueError(f"{len(self.layers)} layers but {len(self.reg_branches)} regression branches")

    def forward(self, query: Tensor, query_pos: QueryPos, memory: Memory, reference: Tensor, groups: int = 1,
                attn_mask: Tensor | None = None) -> list[DecoderStep]:
        return list(run_decoder(self.layers, self.reg_branches, query, query_pos, memory, reference, self.kind,
                                groups, attn_mask))
