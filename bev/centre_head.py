"""Dense object-centre heatmaps on the BEV whose peaks seed the box decoder's queries (two-stage).

A DETR decoder learns slowly from one-to-one matching alone: early in training its learned queries sit
far from the objects and few of them get a positive. This head gives the spine a dense signal from the
first step and hands the decoder queries that already sit on objects (docs/bev.md, "BEV centre
proposals"):

* per class, a heatmap over the BEV cells with a Gaussian around each box's centre cell, trained with the
  CenterNet focal loss (positives are the centre cells, the Gaussian down-weights their neighbours);
* at each box's centre cell, the centre's offset inside the cell and its height, trained with L1;
* ``proposals``: the top-k local maxima over (class, cell), lifted to metric centres, with their class.

The BEV layout is the spine's (docs/architecture.md): (B, C, Nx, Ny), x along dim -2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.structures import BEVGrid

from .spine import make_grid

__all__ = ["BEVCentreHead", "centre_heatmap_targets", "gaussian_focal_loss"]


def gaussian_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's focal loss, summed: ``target`` in [0, 1] with exact 1 at the positives; a negative
    near a positive is down-weighted by ``(1 - target) ** beta``. Computed from logits in float32."""
    logits, target = logits.float(), target.float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    positive = target.eq(1.0)
    pos_loss = -log_p * (1 - p).pow(alpha)
    neg_loss = -log_not_p * p.pow(alpha) * (1 - target).pow(beta)
    return torch.where(positive, pos_loss, neg_loss).sum()


def centre_heatmap_targets(grid: BEVGrid, boxes: Tensor, labels: Tensor, num_classes: int,
                           min_radius: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Targets of one sample. ``boxes`` (N, >=6) metric (x, y, z, w, l, h, ...) inside the grid.

    Returns the heatmap (num_classes, Nx, Ny): per class, the maximum over its boxes of a Gaussian
    centred on the box's centre cell, with radius ``max(min_radius, round(max(w, l) / 2 / resolution))``
    cells and sigma = (2 radius + 1) / 6; the centre cells (N, 2) as integer (ix, iy); and the
    regression targets (N, 3): the centre's offset inside its cell (in cells, [0, 1)) and its z."""
    nx, ny = grid.shape
    device = boxes.device
    cells = grid.metres_to_cells(boxes[:, :2].float())
    centre = cells.floor().long()
    centre[:, 0].clamp_(0, nx - 1)
    centre[:, 1].clamp_(0, ny - 1)
    offset = cells - centre.float()
    radius = (boxes[:, 3:5].float().amax(-1) / 2 / grid.resolution).round().clamp(min=min_radius)
    sigma = (2 * radius + 1) / 6
    ix = torch.arange(nx, device=device, dtype=torch.float32)
    iy = torch.arange(ny, device=device, dtype=torch.float32)
    dx2 = (ix[None, :] - centre[:, :1].float()).pow(2)  # (N, Nx)
    dy2 = (iy[None, :] - centre[:, 1:].float()).pow(2)  # (N, Ny)
    gauss = torch.exp(-(dx2[:, :, None] + dy2[:, None, :]) / (2 * sigma[:, None, None] ** 2))
    # Only within the radius (a square window), as a Gaussian's tail would blur small neighbours.
    window = (dx2 <= radius[:, None] ** 2)[:, :, None] & (dy2 <= radius[:, None] ** 2)[:, None, :]
    gauss = gauss * window
    heatmap = torch.zeros(num_classes, nx * ny, device=device)
    if len(boxes):
        heatmap.scatter_reduce_(0, labels.long()[:, None].expand(-1, nx * ny), gauss.reshape(len(boxes), -1),
                                reduce="amax")
    regression = torch.cat([offset, boxes[:, 2:3].float()], dim=-1)
    return heatmap.reshape(num_classes, nx, ny), centre, regression


class BEVCentreHead(nn.Module):
    """Class-wise centre heatmaps, sub-cell offsets and heights on the BEV (see the module docstring).

    ``forward(bev)`` returns dict(heatmap (B, K, Nx, Ny) logits, regression (B, 3, Nx, Ny)); ``loss``
    gives ``loss_heatmap`` (the focal loss over the positives' count) and ``loss_centre`` (L1 of offset
    and height at the centre cells, weighted by ``regression_weight``); ``proposals`` the top-k peaks."""

    def __init__(self, grid, in_channels: int = 256, num_classes: int = 10, mid_channels: int = 64,
                 min_radius: int = 1, loss_weight: float = 1.0, regression_weight: float = 0.25) -> None:
        super().__init__()
        if grid is None:
            raise ValueError("BEVCentreHead needs the spine's BEV grid (grid=...)")
        self.grid = make_grid(grid)
        self.num_classes, self.min_radius = num_classes, min_radius
        self.loss_weight, self.regression_weight = loss_weight, regression_weight
        self.tower = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(mid_channels, num_classes, 1)
        self.regression = nn.Conv2d(mid_channels, 3, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01

    def forward(self, bev: Tensor) -> dict[str, Tensor]:
        x = self.tower(bev)
        return dict(heatmap=self.heatmap(x), regression=self.regression(x))

    def loss(self, outputs: dict[str, Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> dict[str, Tensor]:
        """``gt_boxes`` per sample (N, 9) on the grid (the caller drops those outside)."""
        heatmap, regression = outputs["heatmap"], outputs["regression"]
        focal, l1, positives = heatmap.new_zeros((), dtype=torch.float32), heatmap.new_zeros((), dtype=torch.float32), 0
        for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
            target, centre, reg_target = centre_heatmap_targets(self.grid, boxes, labels, self.num_classes,
                                                                self.min_radius)
            focal = focal + gaussian_focal_loss(heatmap[b], target)
            if len(boxes):
                predicted = regression[b][:, centre[:, 0], centre[:, 1]].t().float()  # (N, 3)
                l1 = l1 + (predicted - reg_target).abs().sum()
            positives += len(boxes)
        normaliser = max(positives, 1)
        return dict(loss_heatmap=self.loss_weight * focal / normaliser,
                    loss_centre=self.regression_weight * l1 / normaliser)

    @torch.no_grad()
    def proposals(self, outputs: dict[str, Tensor], top_k: int) -> dict[str, Tensor]:
        """The top-k local maxima (3x3) over (class, cell) per sample: centres (B, k, 3) metric,
        labels (B, k), scores (B, k)."""
        heatmap = outputs["heatmap"].float().sigmoid()
        b, k_classes, nx, ny = heatmap.shape
        peaks = heatmap * (F.max_pool2d(heatmap, 3, stride=1, padding=1) == heatmap)
        scores, index = peaks.reshape(b, -1).topk(min(top_k, k_classes * nx * ny), dim=1)
        labels, cell = index // (nx * ny), index % (nx * ny)
        regression = outputs["regression"].float().reshape(b, 3, nx * ny)
        reg = torch.gather(regression, 2, cell[:, None, :].expand(-1, 3, -1)).transpose(1, 2)  # (B, k, 3)
        ij = torch.stack([cell // ny, cell % ny], dim=-1).float() + reg[..., :2]
        centres = torch.cat([self.grid.cells_to_metres(ij), reg[..., 2:3]], dim=-1)
        return dict(centres=centres, labels=labels, scores=scores)
