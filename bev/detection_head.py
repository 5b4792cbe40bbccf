"""DETR-style 3D detection head on the BEV: deformable decoder with iterative box refinement,
Group-DETR query groups in training, Hungarian matching, focal + SmoothL1 losses and NMS-free
top-k decoding.

BEV layout: the BEV map is (B, C, Nx, Ny) with x (forward) along dim -2 and y (left) along dim -1,
so a deformable-attention sample at normalised (u, v) reads y at u and x at v. Reference points
are kept as normalised (x, y, z) in [0, 1] over the grid's ranges.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from ops import MultiScaleDeformableAttention
from perception.models.losses import sigmoid_focal_loss, weighted_smooth_l1
from perception.models.matching import focal_classification_cost, hungarian_match

from .box_coder import CODE_SIZE, decode_boxes, encode_boxes

__all__ = ["BEVDetectionHead", "inverse_sigmoid"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class FFN(nn.Module):
    def __init__(self, dims: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                    nn.Linear(hidden, dims), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class DecoderLayer(nn.Module):
    """Self-attention (within each query group) -> deformable cross-attention on the BEV -> FFN, post-norm."""

    def __init__(self, dims: int, heads: int, ffn_dims: int, points: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dims, heads, dropout=dropout, batch_first=True)
        self.cross_attn = MultiScaleDeformableAttention(dims, heads, num_levels=1, num_points=points,
                                                        dropout=dropout)
        self.ffn = FFN(dims, ffn_dims, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dims) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, query_pos: Tensor, bev: Tensor, bev_shape: Tensor, ref_uv: Tensor,
                groups: int) -> Tensor:
        b, q, c = query.shape
        # Group-DETR: queries of different groups never attend to each other.
        grouped = (query + query_pos).reshape(b * groups, q // groups, c)
        attn = self.self_attn(grouped, grouped, query.reshape(b * groups, q // groups, c), need_weights=False)[0]
        query = self.norms[0](query + self.dropout(attn.reshape(b, q, c)))
        start = torch.zeros(1, dtype=torch.long, device=bev.device)
        query = self.norms[1](self.cross_attn(query, value=bev, query_pos=query_pos,
                                              reference_points=ref_uv[:, :, None], spatial_shapes=bev_shape,
                                              level_start_index=start))
        return self.norms[2](self.ffn(query))


def _branch(dims: int, out: int, layers: int, norm: bool) -> nn.Sequential:
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(dims, dims)] + ([nn.LayerNorm(dims)] if norm else []) + [nn.ReLU(inplace=True)]
    return nn.Sequential(*modules, nn.Linear(dims, out))


class BEVDetectionHead(nn.Module):
    """Decodes boxes from a BEV map. ``forward`` returns per-layer (logits, codes); ``loss`` and
    ``predict`` consume them."""

    def __init__(self, grid, num_classes: int = 10, embed_dims: int = 256, num_queries: int = 900,
                 num_layers: int = 6, num_heads: int = 8, ffn_dims: int = 512, num_points: int = 4,
                 dropout: float = 0.1, group_detr: int = 1, code_weights: tuple[float, ...] = (1.0,) * 8 + (0.2, 0.2),
                 cls_weight: float = 2.0, reg_weight: float = 0.75, reg_beta: float = 1.0,
                 max_detections: int = 300) -> None:
        super().__init__()
        self.grid, self.num_classes, self.embed_dims = grid, num_classes, embed_dims
        self.num_queries, self.group_detr, self.max_detections = num_queries, group_detr, max_detections
        self.cls_weight, self.reg_weight, self.reg_beta = cls_weight, reg_weight, reg_beta
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32), persistent=False)
        self.query_embedding = nn.Embedding(num_queries * group_detr, 2 * embed_dims)
        self.reference_points = nn.Linear(embed_dims, 3)
        self.layers = nn.ModuleList(DecoderLayer(embed_dims, num_heads, ffn_dims, num_points, dropout)
                                    for _ in range(num_layers))
        cls = _branch(embed_dims, num_classes, 2, norm=True)
        nn.init.constant_(cls[-1].bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
        self.cls_branches = nn.ModuleList(copy.deepcopy(cls) for _ in range(num_layers))
        self.reg_branches = nn.ModuleList(_branch(embed_dims, CODE_SIZE, 2, norm=False) for _ in range(num_layers))
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)

    # -- geometry -------------------------------------------------------------------------------
    def _ranges(self, device: torch.device) -> tuple[Tensor, Tensor]:
        lo = torch.tensor([self.grid.x_range[0], self.grid.y_range[0], self.grid.z_range[0]], device=device)
        hi = torch.tensor([self.grid.x_range[1], self.grid.y_range[1], self.grid.z_range[1]], device=device)
        return lo, hi

    def normalize_centres(self, xyz: Tensor) -> Tensor:
        return self.grid.normalize(xyz)

    def denormalize_centres(self, normalized: Tensor) -> Tensor:
        return self.grid.denormalize(normalized)

    # -- forward --------------------------------------------------------------------------------
    def active_groups(self) -> int:
        return self.group_detr if self.training else 1

    def forward(self, bev: Tensor, extra_queries: tuple[Tensor, Tensor, Tensor] | None = None
                ) -> list[tuple[Tensor, Tensor]]:
        """bev (B, C, Nx, Ny). ``extra_queries`` = (pos (B, E, C), content (B, E, C), ref (B, E, 3)
        normalised) are appended to every group (the two-stage hybrid queries)."""
        b, c, nx, ny = bev.shape
        groups = self.active_groups()
        embed = self.query_embedding.weight[: self.num_queries * groups]
        pos, content = embed.split(self.embed_dims, dim=-1)
        pos, content = pos.expand(b, -1, -1), content.expand(b, -1, -1)
        ref = self.reference_points(pos).sigmoid()
        if extra_queries is not None:
            pos, content, ref = (self._append_to_groups(learned, extra, groups)
                                 for learned, extra in zip((pos, content, ref), extra_queries))
        value = bev.flatten(2).transpose(1, 2)
        shape = torch.tensor([[nx, ny]], device=bev.device)
        outputs = []
        query = content
        for layer, cls_branch, reg_branch in zip(self.layers, self.cls_branches, self.reg_branches):
            query = layer(query, pos, value, shape, ref[..., [1, 0]], groups)  # (u, v) = (y, x)
            delta = reg_branch(query)
            new_ref = (delta[..., 0:3] + inverse_sigmoid(ref)).sigmoid()
            code = torch.cat([self.denormalize_centres(new_ref), delta[..., 3:]], dim=-1)
            outputs.append((cls_branch(query), code))
            ref = new_ref.detach()
        return outputs

    @staticmethod
    def _append_to_groups(learned: Tensor, extra: Tensor, groups: int) -> Tensor:
        b, q, c = learned.shape
        per_group = learned.reshape(b, groups, q // groups, c)
        extra = extra.unsqueeze(1).expand(b, groups, *extra.shape[1:])
        return torch.cat([per_group, extra], dim=2).reshape(b, -1, c)

    # -- training -------------------------------------------------------------------------------
    def loss(self, outputs: list[tuple[Tensor, Tensor]], gt_boxes: list[Tensor], gt_labels: list[Tensor]
             ) -> dict[str, Tensor]:
        losses = {}
        last = len(outputs) - 1
        for layer, (logits, codes) in enumerate(outputs):
            cls_loss, reg_loss = self._layer_loss(logits, codes, gt_boxes, gt_labels)
            prefix = "" if layer == last else f"d{layer}."
            losses[f"{prefix}loss_cls"] = cls_loss
            losses[f"{prefix}loss_bbox"] = reg_loss
        return losses

    def _layer_loss(self, logits: Tensor, codes: Tensor, gt_boxes: list[Tensor], gt_labels: list[Tensor]
                    ) -> tuple[Tensor, Tensor]:
        b, q, _ = logits.shape
        groups = self.active_groups()
        per_group = q // groups
        cls_targets = torch.zeros_like(logits)
        reg_pred, reg_target = [], []
        for i in range(b):
            target_codes = encode_boxes(gt_boxes[i].to(codes.dtype))
            for g in range(groups):
                sl = slice(g * per_group, (g + 1) * per_group)
                rows, cols = self._match(logits[i, sl], codes[i, sl], target_codes, gt_labels[i])
                cls_targets[i, sl][rows, gt_labels[i][cols]] = 1.0
                reg_pred.append(codes[i, sl][rows])
                reg_target.append(target_codes[cols])
        # Normalise by positives per group so the loss scale does not grow with group_detr.
        num_pos = max(sum(len(t) for t in reg_target) / groups, 1.0)
        cls_loss = sigmoid_focal_loss(logits, cls_targets).sum() / num_pos / groups * self.cls_weight
        pred, target = torch.cat(reg_pred), torch.cat(reg_target)
        weights = self.code_weights.to(pred.dtype)
        reg_loss = weighted_smooth_l1(pred, target, weights, self.reg_beta).sum() / num_pos / groups
        return cls_loss, reg_loss * self.reg_weight

    @torch.no_grad()
    def _match(self, logits: Tensor, codes: Tensor, target_codes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        if len(labels) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=logits.device)
            return empty, empty
        cls_cost = focal_classification_cost(logits.float(), labels) * self.cls_weight
        weights = self.code_weights[:8].to(codes.dtype)  # velocity is not part of the matching cost
        reg_cost = torch.cdist(codes[:, :8] * weights, target_codes[:, :8] * weights, p=1) * self.reg_weight
        return hungarian_match(cls_cost + reg_cost)

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, outputs: list[tuple[Tensor, Tensor]]) -> list[dict[str, Tensor]]:
        """Top-k over (query, class) scores of the last layer, group 0 only; no NMS."""
        logits, codes = outputs[-1]
        results = []
        for i in range(logits.shape[0]):
            scores = logits[i].sigmoid().flatten()
            k = min(self.max_detections, scores.numel())
            top, index = scores.topk(k)
            query, label = index // self.num_classes, index % self.num_classes
            boxes = decode_boxes(codes[i, query].float())
            inside = self._inside_range(boxes[:, :3])
            results.append(dict(boxes=boxes[inside], scores=top[inside].float(), labels=label[inside]))
        return results

    def _inside_range(self, xyz: Tensor, margin: float = 10.0) -> Tensor:
        lo, hi = self._ranges(xyz.device)
        return ((xyz >= lo - margin) & (xyz <= hi + margin)).all(-1) & torch.isfinite(xyz).all(-1)
