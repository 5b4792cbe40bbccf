"""The task-head contract of the BEV meta-architecture, and the 3D detection task on it.

A task head reads the spine's output and nothing else (docs/architecture.md, "Task heads"):

* ``forward(spine: SpineOutput) -> outputs`` (any structure the head's ``loss``/``predict`` understand);
* ``loss(outputs, targets: BatchTargets) -> dict[str, Tensor]`` (the model prefixes the keys with the
  head's name);
* ``predict(outputs, meta: list[dict]) -> list[dict]`` (one dict per sample; the model files each under
  the head's name);
* ``required_targets`` / ``optional_targets``: the batch keys ``loss`` reads.

Heads are built from config by the meta-architecture through the MODELS registry, so packages above
``bev`` (occupancy, lane topology) add heads without ``bev`` importing them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from perception.structures.targets import BatchTargets

from .spine import SpineOutput, build_component, make_grid

__all__ = ["Detection3DHead", "HybridQueryEncoder", "TaskHead"]


class TaskHead(nn.Module):
    """Base class of the heads on the BEV spine (see the module docstring for the contract)."""

    required_targets: tuple[str, ...] = ()
    optional_targets: tuple[str, ...] = ()

    def forward(self, spine: SpineOutput) -> Any:
        raise NotImplementedError

    def loss(self, outputs: Any, targets: BatchTargets) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, outputs: Any, meta: list[dict]) -> list[dict]:
        raise NotImplementedError


class HybridQueryEncoder(nn.Module):
    """Turns lifted perspective proposals into decoder queries: position from the normalised centre,
    content from the predicted class."""

    def __init__(self, num_classes: int, embed_dims: int) -> None:
        super().__init__()
        self.pos = nn.Sequential(nn.Linear(3, embed_dims), nn.ReLU(inplace=True), nn.Linear(embed_dims, embed_dims))
        self.content = nn.Embedding(num_classes, embed_dims)

    def forward(self, ref: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.pos(ref), self.content(labels), ref


class Detection3DHead(TaskHead):
    """3D boxes from the BEV: the DETR box decoder (``decoder``, a :class:`BEVDetectionHead`), plus the
    optional FCOS3D-style perspective head on the spine's camera features. With ``hybrid_queries=K`` the
    perspective head's top-K proposals, lifted to 3D, join the decoder's queries (two-stage). With
    ``centre`` (a :class:`~bev.centre_head.BEVCentreHead`) the BEV gets dense centre heatmaps, and with
    ``centre_queries=K`` their top-K peaks join the queries too (docs/bev.md, "BEV centre proposals").
    ``window=dict(x_range=.., y_range=..)`` makes the head read only that window of the spine's BEV (its
    edges on cell edges): its detection range, when the spine's grid is wider for other heads.

    ``outputs`` of ``forward``: dict(layers=[(logits, codes)] per decoder layer, perspective=dense
    perspective predictions or None, centre=the centre head's maps or None, ego2img (B, Ncam, 4, 4),
    image_size (H, W))."""

    required_targets = ("gt_boxes", "gt_labels")

    def __init__(self, decoder, perspective=None, hybrid_queries: int = 0, centre=None, centre_queries: int = 0,
                 window: dict | None = None, grid=None, in_channels: int | None = None) -> None:
        super().__init__()
        self.window = None
        if window is not None:  # the head reads a window of the spine's BEV (its own detection range)
            if grid is None:
                raise ValueError("a detection window needs the spine's BEV grid (grid=...)")
            grid, x_cells, y_cells = make_grid(grid).crop(window["x_range"], window["y_range"])
            self.window = (x_cells, y_cells)
        if hybrid_queries and perspective is None:
            raise ValueError("hybrid_queries needs a perspective head to propose them")
        if centre_queries and centre is None:
            raise ValueError("centre_queries needs a BEV centre head (centre=...) to propose them")
        self.decoder = build_component(decoder, grid=grid)
        self.perspective = build_component(perspective)
        self.hybrid_queries = hybrid_queries
        self.hybrid = HybridQueryEncoder(self.decoder.num_classes, self.decoder.embed_dims) if hybrid_queries else None
        # Created after the modules above, so configs without it keep their seeded weights.
        self.centre = build_component(centre, grid=grid, in_channels=in_channels,
                                      num_classes=self.decoder.num_classes)
        self.centre_queries = centre_queries
        self.centre_encoder = (HybridQueryEncoder(self.decoder.num_classes, self.decoder.embed_dims)
                               if centre_queries else None)

    def _extra_queries(self, perspective_out, centre_out, ego2img: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """The two-stage queries appended to every group: the perspective head's lifted proposals
        (``hybrid_queries``), then the BEV centre head's peaks (``centre_queries``)."""
        extra = []
        if self.hybrid_queries:
            extra.append(self._as_queries(self.perspective.proposals(perspective_out, ego2img, self.hybrid_queries),
                                          self.hybrid))
        if self.centre_queries:
            extra.append(self._as_queries(self.centre.proposals(centre_out, self.centre_queries), self.centre_encoder))
        if not extra:
            return None
        return tuple(torch.cat(parts, dim=1) for parts in zip(*extra))

    def _as_queries(self, proposals: dict[str, Tensor], encoder: HybridQueryEncoder) -> tuple[Tensor, Tensor, Tensor]:
        """(pos, content, ref) of metric proposals; their centres are clamped onto the decoder's grid."""
        ref = self.decoder.normalize_centres(proposals["centres"]).clamp(0, 1)
        return encoder(ref.detach(), proposals["labels"])

    def forward(self, spine: SpineOutput) -> dict[str, Any]:
        perspective_out = self.perspective(spine.features) if self.perspective is not None else None
        bev = spine.bev if self.window is None else spine.bev[..., self.window[0], self.window[1]]
        centre_out = self.centre(bev) if self.centre is not None else None
        layers = self.decoder(bev, self._extra_queries(perspective_out, centre_out, spine.ego2img))
        return dict(layers=layers, perspective=perspective_out, centre=centre_out, ego2img=spine.ego2img,
                    image_size=spine.image_size)

    def loss(self, outputs: dict[str, Any], targets: BatchTargets) -> dict[str, Tensor]:
        boxes, labels = self._in_range(targets["gt_boxes"], targets["gt_labels"])
        losses = self.decoder.loss(outputs["layers"], boxes, labels)
        if outputs["perspective"] is not None:
            losses.update(self.perspective.loss(outputs["perspective"], boxes, labels, outputs["ego2img"],
                                                outputs["image_size"]))
        if outputs.get("centre") is not None:
            losses.update(self.centre.loss(outputs["centre"], boxes, labels))
        return losses

    def _in_range(self, boxes: list[Tensor], labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Keep the boxes whose centre lies on the decoder's BEV grid (x, y ranges, bounds included):
        the range belongs to the model, so the data pipeline need not restate it."""
        grid = self.decoder.grid
        kept_boxes, kept_labels = [], []
        for b, lab in zip(boxes, labels):
            keep = ((b[:, 0] >= grid.x_range[0]) & (b[:, 0] <= grid.x_range[1])
                    & (b[:, 1] >= grid.y_range[0]) & (b[:, 1] <= grid.y_range[1]))
            kept_boxes.append(b[keep])
            kept_labels.append(lab[keep])
        return kept_boxes, kept_labels

    def predict(self, outputs: dict[str, Any], meta: list[dict]) -> list[dict]:
        return self.decoder.predict(outputs["layers"])
