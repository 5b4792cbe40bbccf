"""Perspective supervision: a dense FCOS3D-style monocular 3D head on every camera's FPN levels.

Per location it predicts class logits, centerness, the 2D box as (left, top, right, bottom)
distances, the offset of the projected 3D centre, log depth, log size and (sin, cos) yaw. Targets
are made on the fly from the sample's 3D boxes and ``ego2img``, so they always agree with the image
augmentation folded into the matrices. The same predictions, lifted to 3D, are the proposals of
the two-stage hybrid queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops.export import inverse_4x4, is_exportable
from perception.models.losses import sigmoid_focal_loss
from perception.structures.boxes import box_corners
from perception.structures.boxes2d import box_area, clip_boxes
from perception.structures.cameras import project_points

__all__ = ["PerspectiveHead", "project_boxes"]

_INF = 1e8


def project_boxes(boxes: Tensor, ego2img: Tensor, image_size: tuple[int, int], min_depth: float = 0.5
                  ) -> dict[str, Tensor]:
    """Project (N, 9) ego-frame boxes into one camera. Returns the clipped 2D box (N, 4) xyxy, the
    projected centre (N, 2), its depth (N,) and a validity flag (centre in front and box overlaps)."""
    corners = box_corners(boxes)  # the order does not matter: only their extent is used
    points = torch.cat([boxes[:, None, :3], corners], 1)
    uv, depth = project_points(ego2img.to(points.dtype), points, eps=1e-3)
    height, width = image_size
    corner_uv = uv[:, 1:]
    box = clip_boxes(torch.cat([corner_uv.min(1).values, corner_uv.max(1).values], -1), image_size)
    centre_uv = uv[:, 0]
    inside = (centre_uv[:, 0] >= 0) & (centre_uv[:, 0] < width) & (centre_uv[:, 1] >= 0) & (centre_uv[:, 1] < height)
    valid = (depth[:, 0] > min_depth) & (depth[:, 1:] > 0).all(1) & inside
    valid &= (box[:, 2] - box[:, 0] > 1) & (box[:, 3] - box[:, 1] > 1)
    return dict(box=box, centre=centre_uv, depth=depth[:, 0], valid=valid)


def _tower(channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(min(32, channels // 4 or 1), channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class PerspectiveHead(nn.Module):
    """Dense monocular 3D detection on per-camera FPN levels (FCOS assignment with centre sampling)."""

    OUTPUTS = {"ltrb": 4, "offset": 2, "depth": 1, "size": 3, "yaw": 2}

    def __init__(self, num_classes: int = 10, in_channels: int = 256, strides: tuple[int, ...] = (8, 16, 32, 64),
                 size_ranges: tuple[float, ...] = (-1, 64, 128, 256, _INF), tower_convs: int = 2,
                 centre_radius: float = 1.5, loss_weight: float = 1.0) -> None:
        super().__init__()
        if len(size_ranges) != len(strides) + 1:
            raise ValueError(f"size_ranges needs len(strides)+1 = {len(strides) + 1} bounds, got {len(size_ranges)}")
        self.num_classes, self.strides, self.size_ranges = num_classes, strides, size_ranges
        self.centre_radius, self.loss_weight = centre_radius, loss_weight
        self.cls_tower = _tower(in_channels, tower_convs)
        self.reg_tower = _tower(in_channels, tower_convs)
        self.cls_out = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.centerness_out = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.reg_out = nn.Conv2d(in_channels, sum(self.OUTPUTS.values()), 3, padding=1)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.reg_out.weight, std=0.01)
        nn.init.zeros_(self.reg_out.bias)

    def forward(self, features: list[Tensor]) -> list[dict[str, Tensor]]:
        """features: per level (B·Ncam, C, h, w) -> per level a dict of dense predictions."""
        outs = []
        for feat in features[: len(self.strides)]:
            cls_feat, reg_feat = self.cls_tower(feat), self.reg_tower(feat)
            reg = self.reg_out(reg_feat).split(list(self.OUTPUTS.values()), dim=1)
            out = dict(cls=self.cls_out(cls_feat), centerness=self.centerness_out(reg_feat))
            out.update(zip(self.OUTPUTS, reg))
            outs.append(out)
        return outs

    # -- targets --------------------------------------------------------------------------------
    def _locations(self, level: int, h: int, w: int, device: torch.device) -> Tensor:
        stride = self.strides[level]
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return torch.stack([xs, ys], -1).reshape(-1, 2).float() * stride + stride / 2

    def _camera_targets(self, boxes: Tensor, labels: Tensor, ego2img: Tensor, image_size: tuple[int, int],
                        shapes: list[tuple[int, int]], device: torch.device) -> list[dict[str, Tensor]]:
        proj = project_boxes(boxes.float(), ego2img.float(), image_size)
        keep = proj["valid"]
        box, centre, depth = proj["box"][keep], proj["centre"][keep], proj["depth"][keep]
        boxes, labels = boxes[keep].float(), labels[keep]
        targets = []
        for level, (h, w) in enumerate(shapes):
            loc = self._locations(level, h, w, device)
            n = len(labels)
            label = torch.full((len(loc),), self.num_classes, dtype=torch.long, device=device)
            if n == 0:
                targets.append(dict(label=label))
                continue
            ltrb = torch.stack([loc[:, None, 0] - box[None, :, 0], loc[:, None, 1] - box[None, :, 1],
                                box[None, :, 2] - loc[:, None, 0], box[None, :, 3] - loc[:, None, 1]], -1)
            radius = self.centre_radius * self.strides[level]
            near_centre = ((loc[:, None] - centre[None]).abs() < radius).all(-1)
            extent = ltrb.max(-1).values
            in_range = (extent >= self.size_ranges[level]) & (extent <= self.size_ranges[level + 1])
            candidate = (ltrb.min(-1).values > 0) & near_centre & in_range
            area = box_area(box)[None].expand(len(loc), n)
            area = torch.where(candidate, area, torch.full_like(area, _INF))
            best_area, best = area.min(1)
            positive = best_area < _INF
            label[positive] = labels[best[positive]]
            idx = best[positive]
            lr, tb = ltrb[positive, idx][:, 0::2], ltrb[positive, idx][:, 1::2]
            centerness = ((lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values)).sqrt()
            stride = self.strides[level]
            targets.append(dict(
                label=label, positive=positive, centerness=centerness,
                ltrb=(ltrb[positive, idx] / stride).clamp(min=1e-3).log(),
                offset=(centre[idx] - loc[positive]) / stride,
                depth=depth[idx].clamp(min=0.1).log()[:, None],
                size=boxes[idx, 3:6].clamp(min=1e-2).log(),
                yaw=torch.stack([boxes[idx, 6].sin(), boxes[idx, 6].cos()], -1)))
        return targets

    # -- loss -----------------------------------------------------------------------------------
    def loss(self, outputs: list[dict[str, Tensor]], gt_boxes: list[Tensor], gt_labels: list[Tensor],
             ego2img: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        """ego2img (B, Ncam, 4, 4) of the current frame; outputs from ``forward`` on (B·Ncam) maps."""
        b, n_cam = ego2img.shape[:2]
        shapes = [tuple(o["cls"].shape[-2:]) for o in outputs]
        device = outputs[0]["cls"].device
        per_level: list[list[dict[str, Tensor]]] = [[] for _ in outputs]
        for i in range(b):
            for cam in range(n_cam):
                camera = self._camera_targets(gt_boxes[i], gt_labels[i], ego2img[i, cam], image_size, shapes, device)
                for level, target in enumerate(camera):
                    per_level[level].append(target)
        cls_losses, reg_losses, ctr_losses, num_pos = [], [], [], 0.0
        for level, out in enumerate(outputs):
            targets = per_level[level]
            logits = out["cls"].permute(0, 2, 3, 1).reshape(-1, self.num_classes)
            labels = torch.cat([t["label"] for t in targets])
            one_hot = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes].to(logits.dtype)
            cls_losses.append(sigmoid_focal_loss(logits, one_hot).sum())
            positive = labels < self.num_classes
            num_pos += float(positive.sum())
            if positive.any():
                reg, ctr = self._positive_losses(out, targets, positive)
                reg_losses.append(reg)
                ctr_losses.append(ctr)
        norm = max(num_pos, 1.0)
        zero = outputs[0]["cls"].sum() * 0
        return {"loss_cls_persp": sum(cls_losses) / norm * self.loss_weight,
                "loss_reg_persp": (sum(reg_losses) if reg_losses else zero) / norm * self.loss_weight,
                "loss_ctr_persp": (sum(ctr_losses) if ctr_losses else zero) / norm * self.loss_weight}

    def _positive_losses(self, out: dict[str, Tensor], targets: list[dict[str, Tensor]], positive: Tensor
                         ) -> tuple[Tensor, Tensor]:
        reg = 0.0
        for key in self.OUTPUTS:
            pred = out[key].permute(0, 2, 3, 1).reshape(-1, out[key].shape[1])[positive]
            target = torch.cat([t[key] for t in targets if key in t])
            reg = reg + F.smooth_l1_loss(pred.float(), target, beta=0.1, reduction="sum")
        centerness = out["centerness"].permute(0, 2, 3, 1).reshape(-1)[positive]
        target = torch.cat([t["centerness"] for t in targets if "centerness" in t])
        ctr = F.binary_cross_entropy_with_logits(centerness.float(), target, reduction="sum")
        return reg, ctr

    # -- proposals ------------------------------------------------------------------------------
    @torch.no_grad()
    def proposals(self, outputs: list[dict[str, Tensor]], ego2img: Tensor, top_k: int) -> dict[str, Tensor]:
        """Top-k detections per sample over all cameras and levels, lifted to the ego frame.

        Returns centres (B, K, 3), labels (B, K), scores (B, K)."""
        b, n_cam = ego2img.shape[:2]
        cams, centres, labels, scores = [], [], [], []
        for level, out in enumerate(outputs):
            bn, _, h, w = out["cls"].shape
            score = out["cls"].sigmoid() * out["centerness"].sigmoid()
            score = score.permute(0, 2, 3, 1).reshape(b, n_cam * h * w, -1)
            best, label = score.max(-1)
            loc = self._locations(level, h, w, out["cls"].device).repeat(n_cam, 1)
            uv = loc[None] + out["offset"].permute(0, 2, 3, 1).reshape(b, n_cam * h * w, 2) * self.strides[level]
            depth = out["depth"].reshape(b, n_cam * h * w).float().clamp(max=5.0).exp()
            cam_index = torch.arange(n_cam, device=uv.device).repeat_interleave(h * w)[None].expand(b, -1)
            cams.append(cam_index)
            centres.append(torch.cat([uv * depth[..., None], depth[..., None]], -1))
            labels.append(label)
            scores.append(best)
        scores_all, labels_all = torch.cat(scores, 1), torch.cat(labels, 1)
        k = min(top_k, scores_all.shape[1])
        top, index = scores_all.topk(k, dim=1)
        cam_points = torch.gather(torch.cat(centres, 1), 1, index[..., None].expand(-1, -1, 3))
        cam_index = torch.gather(torch.cat(cams, 1), 1, index)
        # (B, Ncam, 4, 4); export mode: the adjugate form, as ONNX has no matrix inverse (ops/export.py)
        img2ego = inverse_4x4(ego2img.float()) if is_exportable() else torch.linalg.inv(ego2img.float())
        chosen = torch.gather(img2ego, 1, cam_index[..., None, None].expand(-1, -1, 4, 4))
        ego = (chosen @ F.pad(cam_points, (0, 1), value=1.0)[..., None])[..., :3, 0]
        return dict(centres=ego, labels=torch.gather(labels_all, 1, index), scores=top)
