"""DINO-4scale: a DETR-family 2D detector with contrastive denoising, mixed query selection and
look-forward-twice box refinement, built on the project's DETR toolkit (perception/models/detr/).

Pipeline (docs/pretraining_2d.md, "Detection (DINO)"):

1. backbone levels (strides 8, 16, 32) -> :class:`ChannelMapper` (1x1 conv + GN) plus a stride-64 level;
2. a deformable encoder over the four levels (sine pixel embedding + a learned level embedding);
3. two-stage mixed query selection: every encoder pixel proposes a box around itself; the top-k by class
   score become the decoder's initial reference boxes (detached), the content queries are learned;
4. a deformable decoder with iterative box refinement whose positional queries are recomputed from the
   current box at every layer; layer i's prediction is taken relative to layer i-1's refined box *with*
   gradient ("look forward twice");
5. training adds contrastive denoising groups (perception/models/detr/denoising.py) in front of the
   matching queries, with known matches;
6. inference decodes the top-k (query, class) scores, no NMS.

Boxes are normalised cxcywh in the frame of the *padded batch canvas* (the collated tensor), so one frame
serves every level and every image of the batch; padded pixels are masked in the attention and never
propose, and decoding clips each box to its image's real extent before mapping it to the original image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from ops.export import static_level_shapes
from perception.engine.registry import MODELS, register_lower_layers
from perception.models.detr import (
    BoxReference,
    DETRDecoderLayer,
    FocalClassCost,
    GIoUCost,
    HungarianMatcher,
    L1Cost,
    MatchedLoss,
    Memory,
    SetCriterion,
    SmoothL1,
    inverse_sigmoid,
    run_decoder,
)
from perception.models.detr.denoising import DenoisingQueries, build_denoising_queries
from perception.models.detr.encoder import DeformableEncoder, coordinate_sine_embedding, pixel_sine_embedding
from perception.models.necks import ChannelMapper
from perception.structures.boxes2d import (
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    clip_boxes,
    generalized_box_iou,
)

__all__ = ["DINO", "MLP", "giou_loss"]


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box branch)."""

    def __init__(self, in_dims: int, hidden: int, out_dims: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dims] + [hidden] * (num_layers - 1) + [out_dims]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - GIoU of matched normalised cxcywh pairs (N, 4) x (N, 4) -> (N,)."""
    if len(pred) == 0:
        return pred.sum(-1)
    return 1 - generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target)).diagonal()


def _prior_bias(prob: float = 0.01) -> float:
    """Classification bias that starts every class at probability ``prob`` (focal-loss init)."""
    return -math.log((1 - prob) / prob)


@MODELS.register_module()
class DINO(BaseModel):
    """DINO-4scale with a backbone config (e.g. ``InternImage`` with ``out_indices=(1, 2, 3)``).

    Data (``perception.data.coco``): ``inputs`` (B, 3, H, W) normalised, zero-padded; ``data_samples`` a
    list of dicts with ``img_shape`` (h, w) of the real image in ``inputs``, and for training ``boxes``
    (N, 4) xyxy pixels and ``labels`` (N,) in [0, num_classes); for predictions ``scale_factor`` (sx, sy)
    from the original image to ``img_shape`` and ``image_id``.

    ``mode='loss'`` -> dict of losses; ``'predict'`` -> per image ``{image_id, boxes (K, 4) xyxy in the
    original image, scores (K,), labels (K,)}``; ``'tensor'`` -> the last layer's (logits, boxes).
    """

    def __init__(self, backbone: dict, num_classes: int = 10, embed_dims: int = 256, num_queries: int = 900,
                 encoder_layers: int = 6, decoder_layers: int = 6, num_heads: int = 8, ffn_dims: int = 2048,
                 num_points: int = 4, dropout: float = 0.0, gn_groups: int = 32, num_denoising_queries: int = 100,
                 label_noise: float = 0.5, box_noise: float = 1.0, cls_weight: float = 1.0, l1_weight: float = 5.0,
                 giou_weight: float = 2.0, cls_cost: float = 2.0, l1_cost: float = 5.0, giou_cost: float = 2.0,
                 max_detections: int = 300, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        register_lower_layers()
        self.backbone = MODELS.build(backbone)
        self.num_classes, self.embed_dims, self.num_queries = num_classes, embed_dims, num_queries
        self.num_denoising_queries, self.label_noise, self.box_noise = num_denoising_queries, label_noise, box_noise
        self.max_detections = max_detections
        num_levels = len(self.backbone.out_channels) + 1
        self.neck = ChannelMapper(list(self.backbone.out_channels), embed_dims, extra_levels=1, num_groups=gn_groups)
        self.level_embed = nn.Parameter(torch.empty(num_levels, embed_dims).normal_())
        self.encoder = DeformableEncoder(encoder_layers, embed_dims, num_heads, ffn_dims, num_levels, num_points,
                                         dropout)
        # two-stage: every encoder pixel's proposal is scored and refined by these (the "enc" branches)
        self.memory_proj = nn.Sequential(nn.Linear(embed_dims, embed_dims), nn.LayerNorm(embed_dims))
        self.query_embedding = nn.Embedding(num_queries, embed_dims)
        self.label_embedding = nn.Embedding(num_classes + 1, embed_dims)  # the last row: denoising padding
        self.ref_point_head = MLP(2 * embed_dims, embed_dims, embed_dims, 2)
        self.decoder_layers = nn.ModuleList(
            DETRDecoderLayer(embed_dims, num_heads, ffn_dims, num_points, dropout, num_levels)
            for _ in range(decoder_layers))
        # branch i < decoder_layers: decoder layer i; the last one: the encoder proposals
        self.cls_branches = nn.ModuleList(nn.Linear(embed_dims, num_classes) for _ in range(decoder_layers + 1))
        self.reg_branches = nn.ModuleList(MLP(embed_dims, embed_dims, 4, 3) for _ in range(decoder_layers + 1))
        self.reference_kind = BoxReference(sample="box")
        matcher = HungarianMatcher([(FocalClassCost(), cls_cost), (L1Cost(pred_key="boxes", target_key="boxes"),
                                                                   l1_cost),
                                    (GIoUCost("cxcywh"), giou_cost)])
        self.criterion = SetCriterion(matcher, [
            MatchedLoss("loss_bbox", SmoothL1([1.0] * 4, beta=0.0), l1_weight, "boxes", "boxes"),
            MatchedLoss("loss_iou", giou_loss, giou_weight, "boxes", "boxes")], cls_weight=cls_weight)
        self._init_branches()

    def _init_branches(self) -> None:
        for branch in self.cls_branches:
            nn.init.constant_(branch.bias, _prior_bias())
        for branch in self.reg_branches:
            nn.init.zeros_(branch.layers[-1].weight)
            nn.init.zeros_(branch.layers[-1].bias)
        nn.init.xavier_uniform_(self.query_embedding.weight)

    # -- features ----------------------------------------------------------------------------
    def encode(self, inputs: Tensor, data_samples: list[dict] | None) -> Memory:
        """Backbone -> neck -> deformable encoder; the encoded multi-level memory with its padding mask.
        ``data_samples=None``: every pixel of ``inputs`` is real, no padding mask (the same result as an
        all-valid mask; the exported graph takes this path, whose shapes do not depend on the batch)."""
        maps = self.neck(self.backbone(inputs))
        padded = _padding_mask(inputs, data_samples) if data_samples is not None else None
        masks, pos = [], []
        for level, feature in enumerate(maps):
            h, w = feature.shape[-2:]
            if padded is not None:
                masks.append(F.interpolate(padded[:, None].float(), size=(h, w)).bool().flatten(1))
            embed = pixel_sine_embedding(h, w, self.embed_dims, device=feature.device).to(feature.dtype)
            pos.append(embed.flatten(1).transpose(0, 1) + self.level_embed[level])
        memory = Memory.from_maps(maps)
        padding_mask = torch.cat(masks, 1) if masks else None
        memory = Memory(memory.value, memory.spatial_shapes, memory.level_start_index, padding_mask)
        pos_embed = torch.cat(pos)[None].expand(inputs.shape[0], -1, -1)
        return self.encoder(memory, pos_embed)

    def select_queries(self, memory: Memory) -> tuple[Tensor, Tensor]:
        """Two-stage proposals: the encoder's class logits and boxes (B, k, K), (B, k, 4) of the top-k pixels."""
        valid, proposals = _pixel_proposals(memory)
        hidden = self.memory_proj(memory.value.masked_fill(~valid[..., None], 0.0))
        logits = self.cls_branches[-1](hidden)
        k = min(self.num_queries, logits.shape[1])
        score = logits.max(-1).values.masked_fill(~valid, float("-inf"))
        index = score.topk(k, dim=1).indices
        top_logits = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
        top_hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        top_proposals = proposals.gather(1, index[..., None].expand(-1, -1, 4))
        return top_logits, (self.reg_branches[-1](top_hidden) + top_proposals).sigmoid()

    def decode(self, memory: Memory, reference: Tensor, denoising: DenoisingQueries | None) -> list[dict[str, Tensor]]:
        """Run the decoder from ``reference`` boxes (B, k, 4) with the learned content queries (plus the
        denoising queries in front); per layer ``{"logits", "boxes"}`` over all queries."""
        batch, k = reference.shape[:2]
        query = self.query_embedding.weight[:k][None].expand(batch, -1, -1)
        reference = reference.detach()
        attn_mask = None
        if denoising is not None:
            query = torch.cat([self.label_embedding(denoising.labels), query], 1)
            reference = torch.cat([denoising.boxes, reference], 1)
            attn_mask = denoising.attn_mask
        steps = run_decoder(self.decoder_layers, self.reg_branches[:-1], query, self._query_pos, memory, reference,
                            self.reference_kind, 1, attn_mask)
        outputs, previous = [], reference
        for cls_branch, step in zip(self.cls_branches[:-1], steps):
            # look forward twice: relative to the previous layer's refined box, gradient kept
            boxes = self.reference_kind.refine(previous, step.delta)
            outputs.append({"logits": cls_branch(step.query), "boxes": boxes})
            previous = step.reference
        return outputs

    def _query_pos(self, reference: Tensor) -> Tensor:
        return self.ref_point_head(coordinate_sine_embedding(reference, self.embed_dims // 2))

    # -- mmengine interface --------------------------------------------------------------------
    def forward(self, inputs: Tensor, data_samples: list[dict] | None = None, mode: str = "tensor") -> Any:
        if mode not in ("loss", "predict", "tensor"):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        if data_samples is None:
            if mode == "loss":
                raise ValueError("DINO: mode='loss' needs data_samples with boxes and labels")
            data_samples = [{"img_shape": tuple(inputs.shape[-2:])} for _ in range(inputs.shape[0])]
        if mode == "loss":
            return self.loss(inputs, data_samples)
        memory = self.encode(inputs, data_samples)
        _, reference = self.select_queries(memory)
        last = self.decode(memory, reference, None)[-1]
        if mode == "tensor":
            return last["logits"], last["boxes"]
        return self.decode_predictions(last["logits"], last["boxes"], inputs.shape[-2:], data_samples)

    def loss(self, inputs: Tensor, data_samples: list[dict]) -> dict[str, Tensor]:
        targets = _normalised_targets(data_samples, inputs.shape[-2:])
        memory = self.encode(inputs, data_samples)
        enc_logits, reference = self.select_queries(memory)
        denoising = build_denoising_queries(
            [t["labels"] for t in targets], [t["boxes"] for t in targets], self.num_classes, reference.shape[1],
            self.num_denoising_queries, self.label_noise, self.box_noise) if self.num_denoising_queries else None
        outputs = self.decode(memory, reference, denoising)
        split = denoising.num_queries if denoising is not None else 0
        losses = self.criterion([{key: v[:, split:] for key, v in out.items()} for out in outputs], targets)
        losses.update({f"enc.{name}": value for name, value in
                       self.criterion.layer_loss({"logits": enc_logits, "boxes": reference}, targets).items()})
        if denoising is not None:
            last = len(outputs) - 1
            for layer, out in enumerate(outputs):
                prefix = "dn." if layer == last else f"dn.d{layer}."
                dn_pred = {key: v[:, :split] for key, v in out.items()}
                losses.update({prefix + name: value for name, value in self.criterion.matched_loss(
                    dn_pred, targets, denoising.matches, denoising.groups).items()})
        return losses

    def decode_topk(self, logits: Tensor, boxes: Tensor, canvas_hw: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """The fixed top-k (k = ``max_detections``) (query, class) pairs of a batch by sigmoid score, as
        tensors: xyxy boxes (B, k, 4) in canvas pixels (not clipped), scores (B, k), labels (B, k). Static
        shapes and no value reads, so the exported graph (tools/export.py) decodes with it too."""
        height, width = canvas_hw
        scores = logits.float().sigmoid().flatten(1)
        k = min(self.max_detections, scores.shape[1])
        top_scores, index = scores.topk(k, dim=1)
        query, labels = index // self.num_classes, index % self.num_classes
        xyxy = box_cxcywh_to_xyxy(boxes.float()) * boxes.new_tensor([width, height, width, height]).float()
        return xyxy.gather(1, query[..., None].expand(-1, -1, 4)), top_scores, labels

    @torch.no_grad()
    def decode_predictions(self, logits: Tensor, boxes: Tensor, canvas_hw: tuple[int, int],
                           data_samples: list[dict]) -> list[dict[str, Any]]:
        """Top-k (query, class) pairs per image by sigmoid score, boxes clipped to the image and mapped back
        to the original image by ``scale_factor``."""
        picked_boxes, top_scores, labels = self.decode_topk(logits, boxes, canvas_hw)
        results = []
        for i, sample in enumerate(data_samples):
            picked = clip_boxes(picked_boxes[i], tuple(sample["img_shape"]))
            sx, sy = sample.get("scale_factor", (1.0, 1.0))
            picked = picked / picked.new_tensor([sx, sy, sx, sy])
            results.append({"image_id": sample.get("image_id", i), "boxes": picked, "scores": top_scores[i],
                            "labels": labels[i]})
        return results


def _padding_mask(inputs: Tensor, data_samples: list[dict]) -> Tensor:
    """(B, H, W) True on the pixels of ``inputs`` outside each sample's ``img_shape``."""
    batch, _, height, width = inputs.shape
    mask = torch.ones(batch, height, width, dtype=torch.bool, device=inputs.device)
    for i, sample in enumerate(data_samples):
        h, w = (int(v) for v in sample["img_shape"])
        mask[i, :h, :w] = False
    return mask


def _pixel_proposals(memory: Memory) -> tuple[Tensor, Tensor]:
    """Each memory pixel's proposal: a box at its centre, 0.05 * 2^level of the canvas wide and high, as
    logits (B, S, 4); and which pixels may propose (B, S): not padding, centre and size inside (0.01, 0.99)."""
    boxes = []
    for level, (h, w) in enumerate(static_level_shapes(memory.spatial_shapes)):  # Python ints, also when exporting
        ys, xs = torch.meshgrid(torch.arange(h, device=memory.value.device, dtype=torch.float32),
                                torch.arange(w, device=memory.value.device, dtype=torch.float32), indexing="ij")
        size = torch.full((h * w,), 0.05 * 2.0 ** level, device=memory.value.device)
        boxes.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h, size, size], dim=-1))
    proposals = torch.cat(boxes)[None].expand(memory.value.shape[0], -1, -1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1)
    if memory.padding_mask is not None:
        valid = valid & ~memory.padding_mask
    logits = inverse_sigmoid(proposals).masked_fill(~valid[..., None], 0.0)
    return valid, logits.to(memory.value.dtype)


def _normalised_targets(data_samples: list[dict], canvas_hw: tuple[int, int]) -> list[dict[str, Tensor]]:
    """Per sample ``{"labels", "boxes"}``, boxes as cxcywh normalised by the padded canvas size."""
    height, width = canvas_hw
    targets = []
    for i, sample in enumerate(data_samples):
        if "boxes" not in sample or "labels" not in sample:
            raise ValueError(f"DINO: data sample {i} has no 'boxes'/'labels' (needed for the loss)")
        boxes = torch.as_tensor(sample["boxes"], dtype=torch.float32).reshape(-1, 4)
        scale = boxes.new_tensor([width, height, width, height])
        targets.append({"labels": torch.as_tensor(sample["labels"], dtype=torch.long, device=boxes.device),
                        "boxes": box_xyxy_to_cxcywh(boxes / scale)})
    return targets
