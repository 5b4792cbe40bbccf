"""BEVFormer-style BEV encoder: learned BEV queries that look at the cameras through spatial
cross-attention and at each other through deformable self-attention.

Every step is per sample: visibility masks, reference points and camera selection come from each
sample's own ``ego2img``, so a batch of N gives each sample the result it would get alone
(upstream took the visible-query index set from batch element 0 only).

Geometry: BEV cell (ix, iy) is the cell of the grid's x (forward) index ix and y (left) index iy;
the map is (B, C, Nx, Ny), flattened as ix·Ny + iy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ops import MultiScaleDeformableAttention, ms_deform_attn
from ops.export import is_exportable, level_table
from ops.modules import init_deformable_attention, sampling_locations
from perception.models.layers import FFN
from perception.structures.cameras import project_points

__all__ = ["BEVEncoder", "SpatialCrossAttention", "pillar_points", "project_to_cameras"]

_EPS = 1e-5


def pillar_points(grid, heights: int, device: torch.device | None = None) -> Tensor:
    """(Nx·Ny, heights, 3) metric ego-frame points: each cell centre at ``heights`` evenly spaced
    heights over the grid's z range (the pillar anchors of spatial cross-attention)."""
    cells = grid.cell_centers(device=device).reshape(-1, 1, 2).expand(-1, heights, 2)
    z0, z1 = grid.z_range
    z = z0 + (torch.arange(heights, device=device, dtype=torch.float32) + 0.5) / heights * (z1 - z0)
    return torch.cat([cells, z.view(1, heights, 1).expand(cells.shape[0], heights, 1)], dim=-1)


def project_to_cameras(points: Tensor, ego2img: Tensor, image_size: tuple[int, int],
                       valid_region: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Project ego-frame points into every camera of every sample.

    points (P, 3) or (..., 3) metric; ego2img (B, Ncam, 4, 4); image_size (H, W) of the (padded)
    network input; valid_region (B, Ncam, 4) optional pixel box (u0, v0, u1, v1) of each camera's
    real image inside the padded input. Returns normalised (u, v) in [0, 1]
    (B, Ncam, *points.shape[:-1], 2) and a visibility mask: in front of the camera and inside the
    image (inside its real region, so padding is never sampled). Computed in float32.
    """
    shape = points.shape[:-1]
    uv, depth = project_points(ego2img.float(), points.reshape(-1, 3).float(), eps=_EPS)
    height, width = image_size
    b, n = ego2img.shape[:2]
    visible = (depth > _EPS) & torch.isfinite(uv).all(-1)  # uv, depth: (B, Ncam, P, ...)
    if valid_region is not None:
        region = valid_region.float()[:, :, None]  # (B, Ncam, 1, 4)
        visible = visible & (uv > region[..., :2]).all(-1) & (uv < region[..., 2:]).all(-1)
    uv = uv / uv.new_tensor([width, height])
    visible = visible & (uv > 0).all(-1) & (uv < 1).all(-1)
    return uv.reshape(b, n, *shape, 2), visible.reshape(b, n, *shape)


class SpatialCrossAttention(nn.Module):
    """Each BEV query samples every camera that sees one of its pillar anchors, around the anchor's
    projection, and averages over those cameras. Queries are gathered per (sample, camera) so only
    visible ones are computed (memory), then scattered back."""

    def __init__(self, dims: int, heads: int, levels: int, pillar_heights: int, points_per_height: int,
                 dropout: float) -> None:
        super().__init__()
        self.heads, self.levels = heads, levels
        self.pillar_heights, self.points_per_height = pillar_heights, points_per_height
        points = pillar_heights * points_per_height
        self.sampling_offsets = nn.Linear(dims, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dims, heads * levels * points)
        self.value_proj = nn.Linear(dims, dims)
        self.output_proj = nn.Linear(dims, dims)
        self.dropout = nn.Dropout(dropout)
        init_deformable_attention(self.sampling_offsets, self.attention_weights, self.value_proj,
                                  self.output_proj, heads, levels, points)

    def forward(self, query: Tensor, query_pos: Tensor, value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, reference_uv: Tensor, visible: Tensor) -> Tensor:
        """query (B, Q, C); value (B·Ncam, S, C) camera features; reference_uv (B, Ncam, Q, D, 2);
        visible (B, Ncam, Q, D)."""
        b, q, c = query.shape
        n_cam = reference_uv.shape[1]
        seen = visible.any(-1).flatten(0, 1)  # (B·Ncam, Q)
        if is_exportable():
            total = self._attend_all(query + query_pos, reference_uv, value, spatial_shapes, level_start_index, seen)
            return self._average_cameras(query, total, seen, b, n_cam)
        counts = seen.sum(-1)
        length = int(counts.max()) if counts.numel() else 0
        total = query.new_zeros(b * n_cam, q, c)
        if length > 0:
            order = torch.argsort((~seen).to(torch.int8), dim=1, stable=True)[:, :length]
            valid = torch.arange(length, device=query.device)[None] < counts[:, None]
            queries = (query + query_pos).repeat_interleave(n_cam, dim=0)
            gathered = torch.gather(queries, 1, order[..., None].expand(-1, -1, c))
            ref = torch.gather(reference_uv.flatten(0, 1), 1,
                               order[..., None, None].expand(-1, -1, self.pillar_heights, 2))
            sampled = self._attend(gathered, ref, value, spatial_shapes, level_start_index)
            sampled = sampled * valid[..., None].to(sampled.dtype)
            total = total.scatter_add(1, order[..., None].expand(-1, -1, c), sampled.to(total.dtype))
        return self._average_cameras(query, total, seen, b, n_cam)

    def _attend_all(self, queries: Tensor, reference_uv: Tensor, value: Tensor, spatial_shapes: Tensor,
                    level_start_index: Tensor, seen: Tensor) -> Tensor:
        """Export mode (ops/export.py): every query of every camera, unseen ones zeroed, so no shape
        depends on the data. Each query's attention is independent of the others, so the seen ones
        get what the gathered path gives them."""
        n_cam = reference_uv.shape[1]
        sampled = self._attend(queries.repeat_interleave(n_cam, dim=0), reference_uv.flatten(0, 1), value,
                               spatial_shapes, level_start_index)
        return sampled * seen[..., None].to(sampled.dtype)

    def _average_cameras(self, query: Tensor, total: Tensor, seen: Tensor, b: int, n_cam: int) -> Tensor:
        """The mean over the cameras that see each query, projected and added back to the query."""
        q, c = query.shape[1:]
        per_query = total.view(b, n_cam, q, c).sum(1) / seen.view(b, n_cam, q).sum(1).clamp(min=1)[..., None]
        return query + self.dropout(self.output_proj(per_query.to(query.dtype)))

    def _attend(self, query: Tensor, ref: Tensor, value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor) -> Tensor:
        bn, length, _ = query.shape
        heads, levels, d, pph = self.heads, self.levels, self.pillar_heights, self.points_per_height
        offsets = self.sampling_offsets(query).view(bn, length, heads, levels, d * pph, 2)
        # Each anchor's points_per_height points sample around that anchor's projection.
        anchors = ref[:, :, None, None, :, None, :].expand(-1, -1, 1, 1, d, pph, 2)
        anchors = anchors.reshape(bn, length, 1, 1, d * pph, 2)
        locations = sampling_locations(anchors, offsets, spatial_shapes)
        weights = self.attention_weights(query).view(bn, length, heads, levels * d * pph).softmax(-1)
        value = self.value_proj(value).view(bn, value.shape[1], heads, -1)
        out = ms_deform_attn(value, spatial_shapes, level_start_index, locations,
                             weights.view(bn, length, heads, levels, d * pph))
        return out


class EncoderLayer(nn.Module):
    """Deformable self-attention on the BEV -> spatial cross-attention -> FFN, each post-norm."""

    def __init__(self, dims: int, heads: int, levels: int, pillar_heights: int, points_per_height: int,
                 ffn_dims: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dims, heads, num_levels=1, num_points=4, dropout=dropout)
        self.cross_attn = SpatialCrossAttention(dims, heads, levels, pillar_heights, points_per_height, dropout)
        self.ffn = FFN(dims, ffn_dims, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dims) for _ in range(3))

    def forward(self, bev: Tensor, bev_pos: Tensor, bev_shape: Tensor, bev_start: Tensor, bev_ref: Tensor,
                cam_value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_uv: Tensor,
                visible: Tensor) -> Tensor:
        bev = self.norms[0](self.self_attn(bev, query_pos=bev_pos, reference_points=bev_ref,
                                           spatial_shapes=bev_shape, level_start_index=bev_start))
        bev = self.norms[1](self.cross_attn(bev, bev_pos, cam_value, spatial_shapes, level_start_index,
                                            reference_uv, visible))
        return self.norms[2](self.ffn(bev))  # FFN adds its input back


class BEVEncoder(nn.Module):
    """Multi-camera, multi-level image features -> one BEV map (B, C, Nx, Ny) in the ego frame."""

    def __init__(self, grid, embed_dims: int = 256, num_layers: int = 6, num_heads: int = 8, num_levels: int = 4,
                 num_cameras: int = 6, pillar_heights: int = 4, points_per_height: int = 2, ffn_dims: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.grid, self.embed_dims, self.pillar_heights = grid, embed_dims, pillar_heights
        self.nx, self.ny = grid.shape
        self.bev_queries = nn.Embedding(self.nx * self.ny, embed_dims)
        self.x_embed = nn.Embedding(self.nx, embed_dims // 2)
        self.y_embed = nn.Embedding(self.ny, embed_dims - embed_dims // 2)
        self.level_embeds = nn.Parameter(torch.randn(num_levels, embed_dims) * 0.02)
        self.camera_embeds = nn.Parameter(torch.randn(num_cameras, embed_dims) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(embed_dims, num_heads, num_levels, pillar_heights,
                                                 points_per_height, ffn_dims, dropout) for _ in range(num_layers))
        self.register_buffer("pillars", pillar_points(grid, pillar_heights), persistent=False)

    def bev_position(self, batch: int) -> Tensor:
        pos = torch.cat([self.x_embed.weight[:, None].expand(-1, self.ny, -1),
                         self.y_embed.weight[None].expand(self.nx, -1, -1)], dim=-1)
        return pos.reshape(1, self.nx * self.ny, -1).expand(batch, -1, -1)

    def bev_reference(self, batch: int, device: torch.device) -> Tensor:
        """(B, Nx·Ny, 1, 2) normalised (u, v) = (y, x) cell centres for self-attention."""
        u = (torch.arange(self.ny, device=device) + 0.5) / self.ny
        v = (torch.arange(self.nx, device=device) + 0.5) / self.nx
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        return torch.stack([uu, vv], -1).reshape(1, -1, 1, 2).expand(batch, -1, -1, -1)

    def flatten_features(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(B, Ncam, C, h, w) per level -> value (B·Ncam, Σhw, C), spatial shapes, level starts."""
        flat, shapes = [], []
        for level, feat in enumerate(features):
            b, n, c, h, w = feat.shape
            tokens = feat.flatten(3).transpose(2, 3)  # (B, Ncam, hw, C)
            embed = self.camera_embeds[:n, None, :] + self.level_embeds[level]
            tokens = tokens + embed.to(tokens.dtype)
            flat.append(tokens.flatten(0, 1))
            shapes.append((h, w))
        spatial_shapes = level_table(shapes, features[0].device)
        areas = spatial_shapes.prod(1)
        starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
        return torch.cat(flat, dim=1), spatial_shapes, starts

    def forward(self, features: list[Tensor], ego2img: Tensor, image_size: tuple[int, int],
                valid_region: Tensor | None = None) -> Tensor:
        """features: per level (B, Ncam, C, h, w); ego2img (B, Ncam, 4, 4) maps points of the BEV's
        ego frame to pixels of the (padded) input of size ``image_size``; valid_region (B, Ncam, 4)
        optional pixel box of each camera's real image (see :func:`project_to_cameras`)."""
        b = ego2img.shape[0]
        device = ego2img.device
        value, spatial_shapes, starts = self.flatten_features(features)
        reference_uv, visible = project_to_cameras(self.pillars, ego2img, image_size, valid_region)
        reference_uv = reference_uv.to(value.dtype)
        bev = self.bev_queries.weight.to(value.dtype)[None].expand(b, -1, -1)
        bev_pos = self.bev_position(b).to(value.dtype)
        # One BEV level table for every layer: on a GPU the level-table check reads a new table once (ops/_checks.py).
        bev_shape = level_table([(self.nx, self.ny)], device)
        bev_start = torch.zeros(1, dtype=torch.long, device=device)
        bev_ref = self.bev_reference(b, device).to(value.dtype)
        for layer in self.layers:
            bev = layer(bev, bev_pos, bev_shape, bev_start, bev_ref, value, spatial_shapes, starts, reference_uv,
                        visible)
        return bev.transpose(1, 2).reshape(b, self.embed_dims, self.nx, self.ny)
