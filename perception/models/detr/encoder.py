"""Deformable DETR encoder: every pixel of a multi-level image memory attends, through multi-scale
deformable attention, to a few sampled points around itself on every level; plus the sine position
embeddings of pixels and of boxes that the encoder and a DINO-style decoder feed their attention with.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ops import MultiScaleDeformableAttention
from perception.models.layers import FFN

from .decoder import Memory

__all__ = ["DeformableEncoder", "DeformableEncoderLayer", "coordinate_sine_embedding", "level_pixel_centres",
           "pixel_sine_embedding"]


def coordinate_sine_embedding(coords: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """Sine embedding of normalised coordinates (..., D) -> (..., D * num_feats): each coordinate times
    2*pi is divided by ``temperature ** (2i / num_feats)`` and given as interleaved sin / cos (DETR).
    The first two coordinates are emitted swapped (y before x), as DETR orders its pixel embedding."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = (coords.float() * 2 * math.pi)[..., None] / dim_t
    pos = torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], dim=-1).flatten(-2)
    order = [1, 0, *range(2, coords.shape[-1])]
    return pos[..., order, :].flatten(-2).to(coords.dtype)


def level_pixel_centres(spatial_shapes: Tensor) -> Tensor:
    """(S, 2) normalised (x, y) centres of the pixels of all levels, level by level, row-major."""
    centres = []
    for h, w in spatial_shapes.tolist():
        ys, xs = torch.meshgrid(torch.arange(h, device=spatial_shapes.device, dtype=torch.float32),
                                torch.arange(w, device=spatial_shapes.device, dtype=torch.float32), indexing="ij")
        centres.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], dim=-1))
    return torch.cat(centres)


def pixel_sine_embedding(height: int, width: int, dims: int, temperature: float = 20.0,
                         device: torch.device | str | None = None) -> Tensor:
    """(dims, height, width) sine embedding of each pixel's normalised centre (DINO's temperature 20)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    coords = torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], dim=-1)
    return coordinate_sine_embedding(coords, dims // 2, temperature).permute(2, 0, 1)


class DeformableEncoderLayer(nn.Module):
    """Multi-scale deformable self-attention of the memory -> FFN, each followed by a LayerNorm (post-norm)."""

    def __init__(self, dims: int, heads: int, ffn_dims: int, num_levels: int, num_points: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dims, heads, num_levels=num_levels, num_points=num_points,
                                                       dropout=dropout)
        self.ffn = FFN(dims, ffn_dims, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dims) for _ in range(2))

    def forward(self, memory: Memory, pos: Tensor, reference: Tensor) -> Tensor:
        """New memory values (B, S, C) from ``memory``, its position embedding ``pos`` (B, S, C) and each
        pixel's normalised centre ``reference`` (S, 2)."""
        value = memory.value
        ref = reference[None, :, None].expand(value.shape[0], -1, memory.num_levels, -1)
        value = self.norms[0](self.self_attn(value, value=value, query_pos=pos, reference_points=ref,
                                             spatial_shapes=memory.spatial_shapes,
                                             level_start_index=memory.level_start_index,
                                             key_padding_mask=memory.padding_mask))
        return self.norms[1](self.ffn(value))


class DeformableEncoder(nn.Module):
    """A stack of :class:`DeformableEncoderLayer` over a :class:`Memory`; returns the encoded memory."""

    def __init__(self, num_layers: int, dims: int, heads: int, ffn_dims: int, num_levels: int, num_points: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(dims, heads, ffn_dims, num_levels, num_points, dropout)
                                    for _ in range(num_layers))

    def forward(self, memory: Memory, pos: Tensor) -> Memory:
        reference = level_pixel_centres(memory.spatial_shapes)
        value = memory.value
        for layer in self.layers:
            value = layer(Memory(value, memory.spatial_shapes, memory.level_start_index, memory.padding_mask), pos,
                          reference)
        return Memory(value, memory.spatial_shapes, memory.level_start_index, memory.padding_mask)
