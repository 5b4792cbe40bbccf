"""DETR-style 3D detection head on the BEV: deformable decoder with iterative box refinement,
Group-DETR query groups in training, Hungarian matching, focal + SmoothL1 losses and NMS-free
top-k decoding. The DETR machinery is the shared toolkit :mod:`perception.models.detr`; this module
only adds what is 3D-box specific (the 10-value box code, the BEV reference layout, top-k decoding).

BEV layout: the BEV map is (B, C, Nx, Ny) with x (forward) along dim -2 and y (left) along dim -1,
so a deformable-attention sample at normalised (u, v) reads y at u and x at v. Reference points
are kept as normalised (x, y, z) in [0, 1] over the grid's ranges.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from perception.models.detr import (
    DETRDecoderLayer,
    FocalClassCost,
    HungarianMatcher,
    L1Cost,
    MatchedLoss,
    Memory,
    PointReference,
    SetCriterion,
    SmoothL1,
    active_groups,
    append_to_groups,
    inverse_sigmoid,
    run_decoder,
)

from .box_coder import CODE_SIZE, decode_boxes, encode_boxes

__all__ = ["BEVDetectionHead", "inverse_sigmoid"]

_MATCHED_CODE = slice(0, 8)  # velocity is not part of the matching cost


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
        # Parameters are created (and initialised) in this exact order so a seed gives the same weights.
        self.query_embedding = nn.Embedding(num_queries * group_detr, 2 * embed_dims)
        self.reference_points = nn.Linear(embed_dims, 3)
        self.layers = nn.ModuleList(DETRDecoderLayer(embed_dims, num_heads, ffn_dims, num_points, dropout)
                                    for _ in range(num_layers))
        cls = _branch(embed_dims, num_classes, 2, norm=True)
        nn.init.constant_(cls[-1].bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
        self.cls_branches = nn.ModuleList(copy.deepcopy(cls) for _ in range(num_layers))
        self.reg_branches = nn.ModuleList(_branch(embed_dims, CODE_SIZE, 2, norm=False) for _ in range(num_layers))
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)
        self.reference_kind = PointReference(dims=3, uv=(1, 0))  # (u, v) = (y, x) on the (Nx, Ny) map
        self.criterion = self._build_criterion()

    def _build_criterion(self) -> SetCriterion:
        """Matching: 2 x focal class cost + 0.75 x weighted L1 of the code without velocity (defaults);
        losses: focal classification and code-weighted smooth-L1 of the matched boxes."""
        weights = self.code_weights
        matcher = HungarianMatcher([(FocalClassCost(), self.cls_weight),
                                    (L1Cost(weights[_MATCHED_CODE], columns=_MATCHED_CODE), self.reg_weight)])
        box_loss = MatchedLoss("loss_bbox", SmoothL1(weights, self.reg_beta), weight=self.reg_weight)
        return SetCriterion(matcher, [box_loss], cls_weight=self.cls_weight)

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
        return active_groups(self.group_detr, self.training)

    def forward(self, bev: Tensor, extra_queries: tuple[Tensor, Tensor, Tensor] | None = None
                ) -> list[tuple[Tensor, Tensor]]:
        """bev (B, C, Nx, Ny). ``extra_queries`` = (pos (B, E, C), content (B, E, C), ref (B, E, 3)
        normalised) are appended to every group (the two-stage hybrid queries)."""
        groups = self.active_groups()
        embed = self.query_embedding.weight[: self.num_queries * groups]
        pos, content = (x.expand(bev.shape[0], -1, -1) for x in embed.split(self.embed_dims, dim=-1))
        ref = self.reference_points(pos).sigmoid()
        if extra_queries is not None:
            pos, content, ref = (append_to_groups(learned, extra, groups)
                                 for learned, extra in zip((pos, content, ref), extra_queries))
        steps = run_decoder(self.layers, self.reg_branches, content, pos, Memory.from_maps([bev]), ref,
                            self.reference_kind, groups)
        outputs = []
        for cls_branch, step in zip(self.cls_branches, steps):  # interleaved with the layers (a generator)
            code = torch.cat([self.denormalize_centres(step.reference), step.delta[..., 3:]], dim=-1)
            outputs.append((cls_branch(step.query), code))
        return outputs

    # -- training -------------------------------------------------------------------------------
    def loss(self, outputs: list[tuple[Tensor, Tensor]], gt_boxes: list[Tensor], gt_labels: list[Tensor]
             ) -> dict[str, Tensor]:
        """Keys ``loss_cls``, ``loss_bbox`` for the last layer and ``d{i}.loss_*`` for the others."""
        dtype = outputs[0][1].dtype
        targets = [dict(labels=labels, codes=encode_boxes(boxes.to(dtype)))
                   for boxes, labels in zip(gt_boxes, gt_labels)]
        predictions = [dict(logits=logits, codes=codes) for logits, codes in outputs]
        return self.criterion(predictions, targets, self.active_groups())

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, outputs: list[tuple[Tensor, Tensor]]) -> list[dict[str, Tensor]]:
        """Top-k over (query, class) scores of the last layer, group 0 only; no NMS."""
        boxes, scores, labels, inside = self.decode_topk(outputs)
        return [dict(boxes=b[keep], scores=s[keep], labels=lab[keep])
                for b, s, lab, keep in zip(boxes, scores, labels, inside)]

    def decode_topk(self, outputs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The fixed-size part of :meth:`predict` (what an exported model computes, docs/deployment.md):
        boxes (B, k, 9), scores (B, k), labels (B, k) of the top k = max_detections (query, class)
        scores, and (B, k) whether each box lies near the grid (predict keeps those)."""
        logits, codes = outputs[-1]
        scores = logits.sigmoid().flatten(1)
        top, index = scores.topk(min(self.max_detections, scores.shape[1]), dim=1)
        query, label = index // self.num_classes, index % self.num_classes
        boxes = decode_boxes(torch.gather(codes, 1, query[..., None].expand(-1, -1, codes.shape[-1])).float())
        return boxes, top.float(), label, self._inside_range(boxes[..., :3])

    def _inside_range(self, xyz: Tensor, margin: float = 10.0) -> Tensor:
        lo, hi = self._ranges(xyz.device)
        return ((xyz >= lo - margin) & (xyz <= hi + margin)).all(-1) & torch.isfinite(xyz).all(-1)
