"""The lane-topology task head on the BEV spine (docs/lanes.md, "Heads"), built from the shared DETR
toolkit (:mod:`perception.models.detr`):

* **centerlines**: ``num_lane_queries`` queries decoded on the spine's BEV into directed 3D polylines
  of ``num_points`` points over the head's lane range (OpenLane-V2: x in [-50, 50], y in [-25, 25] m).
  The polyline is the query's reference: a learned straight segment at first (start and end points,
  the others evenly between), bent and moved by every decoder layer in logit space; matching and
  loss are point distances in metres in the points' order, so the direction is learned.
* **traffic elements**: a 2D DETR on one camera's FPN levels (the front camera), 13 attribute
  classes, boxes in that camera's pixels.
* **topology**: lane -> lane and lane -> traffic element confidences from pairs of the last layer's
  query embeddings (with the lanes' geometry), focal loss on the pairs of matched queries
  (:mod:`lane_topology.topology`).

A lane query's geometry is a :class:`LaneGeometry`: ``lines`` polylines of ``num_points`` points. The
centerline task uses ``lines=("centerline",)``; lane segments (centerline plus left and right
boundaries) are the same queries with three lines and a longer regression code.

Image flips: the spine flips mirrored images' features back (``SpineOutput.image_flips``), so GT boxes
of a mirrored camera are mirrored about the padded input width, and their left/right attributes
swapped back, before matching; predictions are in the unmirrored input's pixels and are mapped to the
original image through the inverse of the camera's resize/crop (``meta['traffic_element_img_aug']``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bev.heads import TaskHead
from bev.spine import SpineOutput, make_grid
from perception.models.detr import (
    BoxReference,
    DETRDecoderLayer,
    FocalClassCost,
    GIoUCost,
    HungarianMatcher,
    L1Cost,
    MatchedLoss,
    Memory,
    PolylineCost,
    ReferenceKind,
    SetCriterion,
    SmoothL1,
    run_decoder,
)
from perception.structures.bev_grid import BEVGrid
from perception.structures.boxes2d import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    flip_boxes_horizontal,
    generalized_box_iou,
)
from perception.structures.classes import MIRRORED_TRAFFIC_ELEMENT_ATTRIBUTE, TRAFFIC_ELEMENT_ATTRIBUTES
from perception.structures.targets import BatchTargets

from .topology import LaneElementTopology, LaneLaneTopology, matched_pair_focal_loss

__all__ = ["OPENLANE_V2_RANGE", "LaneGeometry", "LaneTopologyHead"]

# OpenLane-V2's ego range of lanes (x, y) with TopoNet's BEV heights (docs/lanes.md).
OPENLANE_V2_RANGE = dict(x_range=(-50.0, 50.0), y_range=(-25.0, 25.0), z_range=(-2.3, 1.7), resolution=1.0)


class LaneGeometry:
    """``lines`` polylines of ``num_points`` 3D points per query, normalised to [0, 1] over ``bounds``
    (a BEVGrid; its resolution is unused). The regression code is the ``len(lines) * num_points * 3``
    normalised coordinates, line by line, point by point."""

    def __init__(self, bounds: BEVGrid, num_points: int, lines: Sequence[str] = ("centerline",)) -> None:
        if num_points < 2:
            raise ValueError(f"a polyline needs at least 2 points, got num_points={num_points}")
        self.bounds, self.num_points, self.lines = bounds, num_points, tuple(lines)

    @property
    def code_size(self) -> int:
        return len(self.lines) * self.num_points * 3

    def normalize(self, points: Tensor) -> Tensor:
        return self.bounds.normalize(points)

    def denormalize(self, normalized: Tensor) -> Tensor:
        return self.bounds.denormalize(normalized)

    def straight_lines(self, endpoints: Tensor) -> Tensor:
        """(..., lines * 2 * 3) start and end points per line -> (..., lines * P, 3), each line's P points
        evenly spaced on the segment between them (the decoder's initial references are straight)."""
        ends = endpoints.unflatten(-1, (len(self.lines), 2, 3))
        t = torch.linspace(0.0, 1.0, self.num_points, dtype=ends.dtype, device=ends.device)[:, None]
        points = ends[..., :1, :] * (1 - t) + ends[..., 1:, :] * t  # (..., lines, P, 3)
        return points.flatten(-3, -2)

    def line(self, reference: Tensor, name: str = "centerline") -> Tensor:
        """(..., lines * P, 3) reference -> (..., P, 3) of one line."""
        k = self.lines.index(name)
        return reference[..., k * self.num_points:(k + 1) * self.num_points, :]


class BEVPolylineReference(ReferenceKind):
    """A lane query's reference, (B, Q, lines * P, 3) normalised over the lane bounds; every coordinate
    is refined in logit space. The BEV attention samples around the polyline's mean point, converted
    to the BEV map's normalised (u, v) = (y, x) over the spine's grid (the lane bounds and the BEV grid
    need not coincide)."""

    def __init__(self, geometry: LaneGeometry, bev_grid: BEVGrid) -> None:
        self.geometry, self.bev_grid = geometry, bev_grid
        self.dims = geometry.code_size

    def sampling_reference(self, reference: Tensor) -> Tensor:
        centre = self.bev_grid.normalize(self.geometry.denormalize(reference.mean(-2)))
        return centre[..., [1, 0]].clamp(0.0, 1.0)


def _branch(dims: int, out: int, layers: int = 2) -> nn.Sequential:
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(dims, dims), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules, nn.Linear(dims, out))


def _class_branch(dims: int, classes: int, prior: float = 0.01) -> nn.Sequential:
    branch = _branch(dims, classes)
    nn.init.constant_(branch[-1].bias, -math.log((1 - prior) / prior))
    return branch


def _giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - GIoU of matched (N, 4) cx, cy, w, h boxes."""
    return 1.0 - generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target)).diagonal()


class _Decoder(nn.Module):
    """Learned queries, their initial references and a stack of DETR layers with class and
    regression branches per layer. ``expand_reference`` maps the ``ref_dims`` initial values (after the
    sigmoid) to the reference (None: they are the reference)."""

    def __init__(self, num_queries: int, dims: int, ref_dims: int, code_size: int, classes: int, layers: int,
                 heads: int, ffn_dims: int, points: int, dropout: float, levels: int,
                 expand_reference: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.dims, self.expand_reference = dims, expand_reference
        self.query_embedding = nn.Embedding(num_queries, 2 * dims)
        self.reference = nn.Linear(dims, ref_dims)
        self.layers = nn.ModuleList(DETRDecoderLayer(dims, heads, ffn_dims, points, dropout, num_levels=levels)
                                    for _ in range(layers))
        self.cls_branches = nn.ModuleList(_class_branch(dims, classes) for _ in range(layers))
        self.reg_branches = nn.ModuleList(_branch(dims, code_size) for _ in range(layers))
        nn.init.xavier_uniform_(self.reference.weight)
        nn.init.zeros_(self.reference.bias)

    def forward(self, memory: Memory, batch: int, kind: ReferenceKind, ref_shape: tuple[int, ...]
                ) -> list[dict[str, Tensor]]:
        pos, content = (x.expand(batch, -1, -1) for x in self.query_embedding.weight.split(self.dims, dim=-1))
        ref = self.reference(pos).sigmoid()
        if self.expand_reference is not None:
            ref = self.expand_reference(ref)
        ref = ref.reshape(batch, -1, *ref_shape)
        outputs = []
        for cls_branch, step in zip(self.cls_branches, run_decoder(self.layers, self.reg_branches, content, pos,
                                                                   memory, ref, kind)):
            outputs.append(dict(logits=cls_branch(step.query), reference=step.reference, query=step.query))
        return outputs


class LaneTopologyHead(TaskHead):
    """Centerlines, traffic elements and their topology (see the module docstring).

    Args:
        in_channels: the spine's channels (BEV and FPN); the decoders work at this width.
        grid: the spine's BEV grid (the meta-architecture fills it).
        lane_range: the lanes' bounds (BEVGrid or dict; default :data:`OPENLANE_V2_RANGE`).
        num_points: points per centerline (the data's lanes are resampled to it; the metric reads 11).
        lines: the polylines of a lane query (``("centerline",)``; lane segments add boundaries).
        num_lane_queries, num_te_queries: decoder queries of each task.
        num_layers, num_te_layers: decoder layers (``num_te_layers`` None: ``num_layers``).
        num_heads, ffn_dims, attn_points, dropout: every decoder layer's sizes.
        te_camera: the rig index of the traffic elements' camera (0: the front camera, first in the rigs).
        te_levels: how many of the spine's FPN levels the traffic-element decoder reads (from the finest).
        topology_dims: hidden width of the topology MLPs.
        lane_cls_weight, lane_reg_weight: matching and loss weights of the lanes (focal; L1 in metres
            summed over the points' coordinates).
        te_cls_weight, te_l1_weight, te_giou_weight: the same for traffic elements (boxes normalised
            by the padded input size).
        lclc_weight, lcte_weight: weights of the two topology losses.
        max_lanes, max_elements: predictions kept per sample (top scores; None: all queries).
    """

    required_targets = ("lanes", "traffic_elements", "traffic_element_labels", "topology_lane_lane",
                        "topology_lane_te")
    # Accepted with the lanes label type's other keys but not read: the attribute implies the category.
    optional_targets = ("traffic_element_categories",)

    def __init__(self, in_channels: int, grid: BEVGrid | dict | None = None, lane_range: BEVGrid | dict | None = None,
                 num_points: int = 11, lines: Sequence[str] = ("centerline",), num_lane_queries: int = 200,
                 num_te_queries: int = 100, num_layers: int = 6, num_te_layers: int | None = None,
                 num_heads: int = 8, ffn_dims: int = 512, attn_points: int = 4, dropout: float = 0.1,
                 te_camera: int = 0, te_levels: int = 4, topology_dims: int = 128,
                 lane_cls_weight: float = 1.5, lane_reg_weight: float = 0.025, te_cls_weight: float = 2.0,
                 te_l1_weight: float = 5.0, te_giou_weight: float = 2.0, lclc_weight: float = 1.0,
                 lcte_weight: float = 1.0, max_lanes: int | None = None, max_elements: int | None = None) -> None:
        super().__init__()
        self.grid = make_grid(grid)
        if self.grid is None:
            raise ValueError("LaneTopologyHead needs the spine's BEV grid (grid=...)")
        self.geometry = LaneGeometry(make_grid(lane_range or OPENLANE_V2_RANGE), num_points, lines)
        self.num_attributes = len(TRAFFIC_ELEMENT_ATTRIBUTES)
        self.te_camera, self.te_levels = te_camera, te_levels
        self.max_lanes, self.max_elements = max_lanes, max_elements
        self.lclc_weight, self.lcte_weight = lclc_weight, lcte_weight
        layers = dict(heads=num_heads, ffn_dims=ffn_dims, points=attn_points, dropout=dropout)
        # Initial lane references are straight segments (start, end per line); the layers bend them.
        self.lane_decoder = _Decoder(num_lane_queries, in_channels, len(self.geometry.lines) * 6,
                                     self.geometry.code_size, 1, num_layers, levels=1,
                                     expand_reference=self.geometry.straight_lines, **layers)
        self.te_decoder = _Decoder(num_te_queries, in_channels, 4, 4, self.num_attributes,
                                   num_te_layers or num_layers, levels=self.te_levels, **layers)
        self.lane_lane = LaneLaneTopology(in_channels, topology_dims)
        self.lane_element = LaneElementTopology(in_channels, topology_dims)
        self.lane_reference = BEVPolylineReference(self.geometry, self.grid)
        self.te_reference = BoxReference(sample="box")
        self.lane_criterion = SetCriterion(
            HungarianMatcher([(FocalClassCost(), lane_cls_weight),
                              # The cost averages |dx| + |dy| + |dz| over the points, the loss sums them.
                              (PolylineCost(p=1, pred_key="points", target_key="points"),
                               lane_reg_weight * self.geometry.code_size / 3)]),
            [MatchedLoss("loss_lane", self._lane_l1, lane_reg_weight, "points", "points")],
            cls_weight=lane_cls_weight, cls_name="loss_lane_cls")
        self.te_criterion = SetCriterion(
            HungarianMatcher([(FocalClassCost(), te_cls_weight), (L1Cost(pred_key="boxes", target_key="boxes"),
                                                                  te_l1_weight),
                              (GIoUCost(), te_giou_weight)]),
            [MatchedLoss("loss_te_l1", SmoothL1([1.0] * 4, beta=0.0), te_l1_weight, "boxes", "boxes"),
             MatchedLoss("loss_te_giou", _giou_loss, te_giou_weight, "boxes", "boxes")],
            cls_weight=te_cls_weight, cls_name="loss_te_cls")

    @staticmethod
    def _lane_l1(pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs().sum((-1, -2))

    # -- forward --------------------------------------------------------------------------------
    def _te_memory(self, spine: SpineOutput) -> Memory:
        b, ncam = spine.ego2img.shape[:2]
        if not 0 <= self.te_camera < ncam:
            raise ValueError(f"te_camera={self.te_camera} is not a camera of the {ncam}-camera rig")
        if len(spine.features) < self.te_levels:
            raise ValueError(f"te_levels={self.te_levels} but the spine gives {len(spine.features)} FPN levels")
        levels = spine.features[: self.te_levels]
        return Memory.from_maps([f.view(b, ncam, *f.shape[1:])[:, self.te_camera] for f in levels])

    def forward(self, spine: SpineOutput) -> dict[str, Any]:
        b = spine.batch_size
        lanes = self.lane_decoder(Memory.from_maps([spine.bev]), b, self.lane_reference,
                                  (len(self.geometry.lines) * self.geometry.num_points, 3))
        elements = self.te_decoder(self._te_memory(spine), b, self.te_reference, (4,))
        for layer in lanes:
            layer["points"] = self.geometry.denormalize(layer["reference"])
        for layer in elements:
            layer["boxes"] = layer["reference"]
        centerlines = self.geometry.line(lanes[-1]["points"])
        return dict(lanes=lanes, elements=elements,
                    lane_lane=self.lane_lane(lanes[-1]["query"], centerlines),
                    lane_element=self.lane_element(lanes[-1]["query"], elements[-1]["query"]),
                    image_size=spine.image_size,
                    te_flips=None if spine.image_flips is None else spine.image_flips[:, self.te_camera])

    # -- training -------------------------------------------------------------------------------
    def _element_targets(self, targets: BatchTargets, image_size: tuple[int, int], flips: Tensor | None,
                         device: torch.device) -> list[dict[str, Tensor]]:
        """GT boxes in the flipped-back features' pixels, normalised cx, cy, w, h; attributes swapped
        back for mirrored images."""
        height, width = image_size
        mirrored = torch.tensor(MIRRORED_TRAFFIC_ELEMENT_ATTRIBUTE, device=device)
        out = []
        for i, (boxes, labels) in enumerate(zip(targets["traffic_elements"], targets["traffic_element_labels"])):
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
            labels = torch.as_tensor(labels, device=device).long()
            if flips is not None and bool(flips[i]):
                boxes, labels = flip_boxes_horizontal(boxes, width), mirrored[labels]
            scale = boxes.new_tensor([width, height, width, height])
            out.append(dict(labels=labels, boxes=box_xyxy_to_cxcywh(boxes / scale)))
        return out

    def _lane_targets(self, targets: BatchTargets, device: torch.device) -> list[dict[str, Tensor]]:
        out = []
        for lanes in targets["lanes"]:
            lanes = torch.as_tensor(lanes, dtype=torch.float32, device=device)
            expected = (len(self.geometry.lines) * self.geometry.num_points, 3)
            lanes = lanes.reshape(-1, *expected) if lanes.numel() else lanes.new_zeros((0, *expected))
            out.append(dict(labels=torch.zeros(len(lanes), dtype=torch.long, device=device), points=lanes))
        return out

    def loss(self, outputs: dict[str, Any], targets: BatchTargets) -> dict[str, Tensor]:
        """Lane (``loss_lane_cls``, ``loss_lane``), traffic-element (``loss_te_cls``, ``loss_te_l1``,
        ``loss_te_giou``) losses of every decoder layer (``d{i}.`` for the auxiliary ones) and the
        topology losses ``loss_lclc``, ``loss_lcte`` of the last layer's matches."""
        device = outputs["lane_lane"].device
        lane_targets = self._lane_targets(targets, device)
        te_targets = self._element_targets(targets, outputs["image_size"], outputs["te_flips"], device)
        losses = self.lane_criterion(outputs["lanes"], lane_targets)
        losses.update(self.te_criterion(outputs["elements"], te_targets))
        lane_matches = [(rows, cols) for _, _, rows, cols in self.lane_criterion.match(outputs["lanes"][-1],
                                                                                        lane_targets)]
        te_matches = [(rows, cols) for _, _, rows, cols in self.te_criterion.match(outputs["elements"][-1],
                                                                                    te_targets)]
        lclc = [torch.as_tensor(t, device=device).reshape(len(lt["points"]), len(lt["points"]))
                for t, lt in zip(targets["topology_lane_lane"], lane_targets)]
        lcte = [torch.as_tensor(t, device=device).reshape(len(lt["points"]), len(tt["boxes"]))
                for t, lt, tt in zip(targets["topology_lane_te"], lane_targets, te_targets)]
        losses["loss_lclc"] = self.lclc_weight * matched_pair_focal_loss(outputs["lane_lane"], lclc, lane_matches,
                                                                         lane_matches)
        losses["loss_lcte"] = self.lcte_weight * matched_pair_focal_loss(outputs["lane_element"], lcte,
                                                                         lane_matches, te_matches)
        return losses

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, outputs: dict[str, Any], meta: list[dict]) -> list[dict[str, Tensor]]:
        """Per sample (on the CPU): ``lane_points`` (L, P, 3) metres, ``lane_scores`` (L,), ``te_boxes``
        (K, 4) x1, y1, x2, y2 in the original camera image's pixels, ``te_attributes`` (K,),
        ``te_scores`` (K,), ``topology_lclc`` (L, L), ``topology_lcte`` (L, K), sorted by score."""
        lanes, elements = outputs["lanes"][-1], outputs["elements"][-1]
        results = []
        for i in range(lanes["logits"].shape[0]):
            lane_scores = lanes["logits"][i, :, 0].float().sigmoid()
            lane_order = lane_scores.argsort(descending=True)[: self.max_lanes]
            te_probs = elements["logits"][i].float().sigmoid()
            te_scores, te_labels = te_probs.max(-1)
            te_order = te_scores.argsort(descending=True)[: self.max_elements]
            boxes, te_labels = self._boxes_in_original_pixels(elements["boxes"][i, te_order].float(),
                                                              te_labels[te_order], outputs, i,
                                                              meta[i] if meta else {})
            lclc = outputs["lane_lane"][i].float().sigmoid()[lane_order][:, lane_order]
            lcte = outputs["lane_element"][i].float().sigmoid()[lane_order][:, te_order]
            results.append({k: v.cpu() for k, v in dict(
                lane_points=self.geometry.line(lanes["points"][i, lane_order]).float(),
                lane_scores=lane_scores[lane_order], te_boxes=boxes, te_attributes=te_labels,
                te_scores=te_scores[te_order], topology_lclc=lclc, topology_lcte=lcte).items()})
        return results

    def _boxes_in_original_pixels(self, boxes: Tensor, labels: Tensor, outputs: dict[str, Any], index: int,
                                  meta: dict) -> tuple[Tensor, Tensor]:
        """Normalised cx, cy, w, h of the flipped-back input -> x1, y1, x2, y2 of the original image: undo
        the padding normalisation, re-mirror into a mirrored input, then invert the camera's
        resize/crop/flip (``meta['traffic_element_img_aug']``, 4x4 on (u d, v d, d, 1)). Attributes are
        predicted on the flipped-back (unmirrored) features, as the original image shows them, so they
        are returned unchanged."""
        height, width = outputs["image_size"]
        xyxy = box_cxcywh_to_xyxy(boxes) * boxes.new_tensor([width, height, width, height])
        flips = outputs["te_flips"]
        if flips is not None and bool(flips[index]):  # into the mirrored input, which img_aug describes
            xyxy = flip_boxes_horizontal(xyxy, width)
        aug = meta.get("traffic_element_img_aug")
        if aug is not None:
            inverse = torch.linalg.inv(torch.as_tensor(aug, dtype=torch.float64))
            corners = xyxy.double().reshape(-1, 2, 2)
            uv = corners @ inverse[:2, :2].T + inverse[:2, 2]  # affine in pixels: the depth column is an offset
            xyxy = torch.cat([uv.min(1).values, uv.max(1).values], -1).to(boxes.dtype)
        return xyxy, labels
