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

from torch import Tensor, nn

from perception.structures.targets import BatchTargets

from .spine import SpineOutput, build_component

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
    perspective head's top-K proposals, lifted to 3D, join the decoder's queries (two-stage).

    ``outputs`` of ``forward``: dict(layers=[(logits, codes)] per decoder layer, perspective=dense
    perspective predictions or None, ego2img (B, Ncam, 4, 4), image_size (H, W))."""

    required_targets = ("gt_boxes", "gt_labels")

    def __init__(self, decoder, perspective=None, hybrid_queries: int = 0, grid=None) -> None:
        super().__init__()
        if hybrid_queries and perspective is None:
            raise ValueError("hybrid_queries needs a perspective head to propose them")
        self.decoder = build_component(decoder, grid=grid)
        self.perspective = build_component(perspective)
        self.hybrid_queries = hybrid_queries
        self.hybrid = HybridQueryEncoder(self.decoder.num_classes, self.decoder.embed_dims) if hybrid_queries else None

    def _extra_queries(self, perspective_out, ego2img: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        if not self.hybrid_queries:
            return None
        proposals = self.perspective.proposals(perspective_out, ego2img, self.hybrid_queries)
        ref = self.decoder.normalize_centres(proposals["centres"]).clamp(0, 1)
        return self.hybrid(ref.detach(), proposals["labels"])

    def forward(self, spine: SpineOutput) -> dict[str, Any]:
        perspective_out = self.perspective(spine.features) if self.perspective is not None else None
        layers = self.decoder(spine.bev, self._extra_queries(perspective_out, spine.ego2img))
        return dict(layers=layers, perspective=perspective_out, ego2img=spine.ego2img, image_size=spine.image_size)

    def loss(self, outputs: dict[str, Any], targets: BatchTargets) -> dict[str, Tensor]:
        boxes, labels = self._in_range(targets["gt_boxes"], targets["gt_labels"])
        losses = self.decoder.loss(outputs["layers"], boxes, labels)
        if outputs["perspective"] is not None:
            losses.update(self.perspective.loss(outputs["perspective"], boxes, labels, outputs["ego2img"],
                                                outputs["image_size"]))
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
