"""The BEV meta-architecture: one :class:`BEVSpine` and named task heads.

``BEVFormerV2(backbone, neck, encoder, heads=dict(detection=..., occupancy=..., lanes=...))`` builds the
spine and every head from config. In ``mode='loss'`` each head's losses are returned with the head's
name as prefix (``detection.loss_cls``, ``occupancy.loss_ce``); in ``mode='predict'`` each sample's
dict holds ``sample_token`` and one entry per head (``pred['detection']['boxes']``); ``mode='tensor'``
returns ``{head name: outputs}``.

The detection-only form of the first BEVFormer v2 configs, ``head=`` (the box decoder),
``perspective_head=`` and ``hybrid_queries=``, is shorthand for
``heads=dict(detection=dict(type='Detection3DHead', decoder=head, perspective=perspective_head,
hybrid_queries=hybrid_queries))``: the same modules, so a model built from modules (with the spine's
fusion block created before the hybrid-query encoder, as before) computes exactly what it did.

Targets arrive as keyword arguments named by the sample contract (``gt_boxes=...``, ``occ_semantics=...``);
in ``mode='loss'`` they are checked against the heads' declarations (:class:`BatchTargets.check`), and
keys listed in ``ignore_targets`` may be present without a head using them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmengine.model import BaseModel
from torch import Tensor, nn

from perception.structures.targets import BatchTargets

from .spine import BEVSpine, SpineOutput, build_component

__all__ = ["BEVFormerV2"]

DETECTION = "detection"


class BEVFormerV2(BaseModel):
    """BEVFormer v2 spine with named task heads (see the module docstring).

    ``bev_grid`` (a dict of BEVGrid arguments or a grid) is handed to the encoder and to every head
    built from a dict that does not set its own ``grid``; such heads also get ``in_channels`` (the BEV's
    channels) when they take it. ``img`` may be uint8 (the loader's; normalised on the model's device with
    ``img_norm``, see :class:`BEVSpine`) or float (already normalised). ``loss_weights`` (head name ->
    factor, default 1) scales every loss of a head: on a shared spine the heads' gradients add up, and a
    head whose losses pull harder on the backbone slows the others (docs/bev.md, "The three-head demo's model")."""

    def __init__(self, backbone, neck, encoder, heads: Mapping[str, Any] | None = None, head=None,
                 perspective_head=None, hybrid_queries: int = 0, num_frames: int = 1,
                 fusion_channels: int | None = None, bev_levels: int = 4, bev_grid=None,
                 ignore_targets: Sequence[str] = (), data_preprocessor: dict | None = None,
                 img_norm: Mapping[str, Sequence[float]] | None = None,
                 loss_weights: Mapping[str, float] | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        heads = _head_configs(heads, head, perspective_head, hybrid_queries)
        unknown = sorted(set(loss_weights or {}) - set(heads))
        if unknown:
            raise ValueError(f"loss_weights name heads the model does not have: {unknown} (heads: {sorted(heads)})")
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        self.spine = BEVSpine(backbone, neck, encoder, num_frames, fusion_channels, bev_levels, bev_grid, img_norm)
        # Heads built from dicts get the spine's grid and BEV channels when they take them and leave them out.
        self.heads = nn.ModuleDict({name: build_component(cfg, grid=self.spine.grid, in_channels=self.spine.embed_dims)
                                    for name, cfg in heads.items()})
        self.ignore_targets = tuple(ignore_targets)

    # -- the spine's knobs, kept on the model for tools and tests --------------------------------
    @property
    def video_mode(self) -> bool:
        return self.spine.video_mode

    @video_mode.setter
    def video_mode(self, value: bool) -> None:
        self.spine.video_mode = value

    @property
    def num_frames(self) -> int:
        return self.spine.num_frames

    # -- forward --------------------------------------------------------------------------------
    def forward(self, img: Tensor, cams: dict, ego: dict, meta: list[dict] | None = None, mode: str = "tensor",
                **targets):
        if mode not in ("tensor", "loss", "predict"):
            raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
        batch = BatchTargets(targets, img.shape[0]) if mode == "loss" else None
        if batch is not None:
            batch.check(self.heads, self.ignore_targets)
        spine: SpineOutput = self.spine(img, cams, ego, meta)
        outputs = {name: head(spine) for name, head in self.heads.items()}
        if mode == "tensor":
            return outputs
        if mode == "loss":
            return {f"{name}.{key}": value * self.loss_weights[name] for name, head in self.heads.items()
                    for key, value in head.loss(outputs[name], batch).items()}
        meta = meta or [{} for _ in range(img.shape[0])]
        predictions = [dict(sample_token=info.get("sample_token")) for info in meta]
        for name, head in self.heads.items():
            for pred, head_pred in zip(predictions, head.predict(outputs[name], meta)):
                pred[name] = head_pred
        return predictions


def _head_configs(heads, head, perspective_head, hybrid_queries: int) -> dict[str, Any]:
    if heads is not None and (head is not None or perspective_head is not None or hybrid_queries):
        raise ValueError("give either heads=dict(...) or the detection shorthand (head, perspective_head, "
                         "hybrid_queries), not both")
    if heads is not None:
        if not heads:
            raise ValueError("heads must name at least one task head")
        return dict(heads)
    if head is None:
        raise ValueError("BEVFormerV2 needs heads=dict(name=head config, ...) (or head= for detection alone)")
    return {DETECTION: dict(type="Detection3DHead", decoder=head, perspective=perspective_head,
                            hybrid_queries=hybrid_queries)}
