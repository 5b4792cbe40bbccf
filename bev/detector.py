"""BEVFormer v2: image backbone + FPN, perspective (monocular 3D) supervision, BEV encoder, v2
temporal fusion and a DETR 3D head, with optional two-stage hybrid queries.

Inputs follow the sample contract (docs/architecture.md): ``img`` (B, T, Ncam, 3, H, W) with the
current frame last; ``cams['ego2img']`` (B, T, Ncam, 4, 4); ``ego['prev2curr']`` (B, T, 4, 4) maps
frame t's ego frame into the current one; ``ego['history_valid']`` (B, T) marks frames that exist.

History, v2 style: the BEV of frame t is built from frame t's images with
``ego2img_t @ inv(prev2curr_t)``, i.e. the *current* BEV grid is projected into the past images,
so every history BEV is already aligned with the current frame. History BEVs are computed without
gradients and in eval mode.

Image flip, v2 style: the augmentation may mirror a sample's images (``cams['img_aug']`` then has a
negative x scale, and ``ego2img`` includes the mirror). The FPN features of mirrored images are
flipped back, and the matrices are mirrored back to match (about the padded input width, the frame
of the normalised coordinates the sampling uses). Everything after the image side then sees
unmirrored geometry: the deformable attention's learned offsets point the same way for every
sample, and the perspective head's targets come from a right-handed camera.

Video test mode (``model.video_mode = True``, needs ``meta[i]['frame_tokens']``): the FPN features
of each frame are cached by sample token, so running a sequence frame by frame computes every
frame's backbone once instead of ``num_frames`` times. Only the cheap re-projection into the
current frame is redone, which keeps the result identical to the non-cached computation.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from perception.structures.cameras import image_aug_matrix

from .temporal import ResidualConvFusion, fill_missing_history

__all__ = ["BEVFormerV2"]


def _make_grid(bev_grid):
    if bev_grid is None or not isinstance(bev_grid, dict):
        return bev_grid
    from perception.structures import BEVGrid

    return BEVGrid(**bev_grid)


class HybridQueryEncoder(nn.Module):
    """Turns lifted perspective proposals into decoder queries: position from the normalised centre,
    content from the predicted class."""

    def __init__(self, num_classes: int, embed_dims: int) -> None:
        super().__init__()
        self.pos = nn.Sequential(nn.Linear(3, embed_dims), nn.ReLU(inplace=True), nn.Linear(embed_dims, embed_dims))
        self.content = nn.Embedding(num_classes, embed_dims)

    def forward(self, ref: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.pos(ref), self.content(labels), ref


def _build(component, **defaults):
    """Build a component given as an mmengine config dict (``defaults`` fill missing keys)."""
    if component is None or isinstance(component, nn.Module):
        return component
    from perception.engine import MODELS, register_lower_layers

    register_lower_layers()
    cfg = dict(component)
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)


def image_flips(cams: dict) -> Tensor | None:
    """(B, T, Ncam) bool, the images the augmentation mirrored (negative x scale in ``img_aug``), or
    None when there are none."""
    aug = cams.get("img_aug")
    if aug is None:
        return None
    flips = aug[..., 0, 0] < 0
    return flips if bool(flips.any()) else None


def flip_back(features: list[Tensor], flips: Tensor | None) -> list[Tensor]:
    """Mirror the (B·Ncam, C, h, w) maps of mirrored images back along the width."""
    if flips is None:
        return features
    mirrored = flips.reshape(-1, 1, 1, 1).to(features[0].device)
    return [torch.where(mirrored, f.flip(-1), f) for f in features]


def feature_ego2img(ego2img: Tensor, flips: Tensor | None, width: int) -> Tensor:
    """The ego-to-pixel matrices of the flipped-back features: u -> width - u for mirrored images.

    A flipped-back map read at normalised u / width is the mirrored map read at 1 - u / width, so
    mirroring about the padded input width is exact for the sampling, whatever the padding."""
    if flips is None:
        return ego2img
    mirror = torch.as_tensor(image_aug_matrix(flip=True, out_width=width), dtype=ego2img.dtype,
                             device=ego2img.device)
    return torch.where(flips[..., None, None].to(ego2img.device), mirror @ ego2img, ego2img)


class BEVFormerV2(BaseModel):
    """Components may be modules or config dicts; ``bev_grid`` (a dict of BEVGrid arguments or a
    grid object) is handed to the encoder and the head when they are built from dicts."""

    def __init__(self, backbone, neck, encoder, head, perspective_head=None, num_frames: int = 1,
                 fusion_channels: int | None = None, hybrid_queries: int = 0, bev_levels: int = 4,
                 bev_grid=None, data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        grid = _make_grid(bev_grid)
        backbone, neck, perspective_head = _build(backbone), _build(neck), _build(perspective_head)
        encoder, head = _build(encoder, grid=grid), _build(head, grid=grid)
        if not 1 <= num_frames <= 8:
            raise ValueError(f"num_frames must be between 1 and 8, got {num_frames}")
        if hybrid_queries and perspective_head is None:
            raise ValueError("hybrid_queries needs a perspective_head to propose them")
        self.backbone, self.neck, self.encoder, self.head = backbone, neck, encoder, head
        self.perspective_head = perspective_head
        self.num_frames, self.hybrid_queries, self.bev_levels = num_frames, hybrid_queries, bev_levels
        self.fusion = ResidualConvFusion(num_frames, encoder.embed_dims, fusion_channels) if num_frames > 1 else None
        self.hybrid = HybridQueryEncoder(head.num_classes, head.embed_dims) if hybrid_queries else None
        self.video_cache: OrderedDict[str, list[Tensor]] = OrderedDict()
        self.video_mode = False

    # -- image side -----------------------------------------------------------------------------
    def image_features(self, images: Tensor) -> list[Tensor]:
        """(B, Ncam, 3, H, W) -> FPN levels (B·Ncam, C, h, w)."""
        return self.neck(self.backbone(images.flatten(0, 1)))

    def _per_camera(self, features: list[Tensor], batch: int) -> list[Tensor]:
        return [f.view(batch, -1, *f.shape[1:]) for f in features[: self.bev_levels]]

    def _frame_features(self, images: Tensor, tokens: list[str] | None, flips: Tensor | None) -> list[Tensor]:
        """FPN features of one frame's cameras, mirrored images flipped back, reused from the video
        cache when possible. ``flips`` (B, Ncam) marks the mirrored images."""
        if not (self.video_mode and tokens):
            return flip_back(self.image_features(images), flips)
        missing = [i for i, tok in enumerate(tokens) if tok not in self.video_cache]
        if missing:
            fresh = flip_back(self.image_features(images[missing]), None if flips is None else flips[missing])
            n = images.shape[1]
            for j, i in enumerate(missing):
                self._cache_put(tokens[i], [f[j * n:(j + 1) * n] for f in fresh])
        per_sample = [self.video_cache[tok] for tok in tokens]
        return [torch.cat([s[level] for s in per_sample]) for level in range(len(per_sample[0]))]

    def _cache_put(self, token: str, features: list[Tensor]) -> None:
        self.video_cache[token] = [f.detach() for f in features]
        while len(self.video_cache) > 2 * self.num_frames:
            self.video_cache.popitem(last=False)

    # -- BEV side -------------------------------------------------------------------------------
    def _history_bevs(self, img: Tensor, ego2img: Tensor, prev2curr: Tensor, image_size: tuple[int, int],
                      tokens: list[list[str]] | None, flips: Tensor | None) -> list[Tensor]:
        bevs = []
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for t in range(img.shape[1] - 1):
                # Project the current grid into frame t: current ego -> frame t ego -> frame t image.
                to_past = ego2img[:, t].float() @ torch.linalg.inv(prev2curr[:, t].float())[:, None]
                frame_tokens = [seq[t] for seq in tokens] if tokens else None
                frame_flips = None if flips is None else flips[:, t]
                feats = self._per_camera(self._frame_features(img[:, t], frame_tokens, frame_flips), img.shape[0])
                bevs.append(self.encoder(feats, to_past, image_size))
        self.train(was_training)
        return bevs

    def extract(self, img: Tensor, ego2img: Tensor, flips: Tensor | None, ego: dict,
                meta: list[dict] | None = None) -> tuple[Tensor, list[Tensor]]:
        """The fused BEV (B, C, Nx, Ny) and the current frame's FPN features, from ``ego2img`` of
        the flipped-back features (:func:`feature_ego2img`) and the mirrored images ``flips``."""
        b, t = img.shape[:2]
        image_size = tuple(img.shape[-2:])
        frame_tokens = [m["frame_tokens"] for m in meta] if self.video_mode and meta else None
        current = self._frame_features(img[:, -1], [seq[-1] for seq in frame_tokens] if frame_tokens else None,
                                       None if flips is None else flips[:, -1])
        bev = self.encoder(self._per_camera(current, b), ego2img[:, -1], image_size)
        if self.fusion is None:
            return bev, current
        frames = min(t, self.num_frames)
        tokens = [seq[-frames:-1] for seq in frame_tokens] if frame_tokens else None
        history = self._history_bevs(img[:, -frames:], ego2img[:, -frames:], ego["prev2curr"][:, -frames:],
                                     image_size, tokens, None if flips is None else flips[:, -frames:])
        valid = ego.get("history_valid", torch.ones(b, t, dtype=torch.bool, device=img.device))[:, -frames:]
        bevs = fill_missing_history(history + [bev], valid.to(bev.device))
        missing_slots = self.num_frames - frames  # fewer frames given than the model fuses
        bevs = [bevs[0]] * missing_slots + bevs
        return self.fusion(bevs), current

    # -- heads ----------------------------------------------------------------------------------
    def _extra_queries(self, persp_out, ego2img: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        if not self.hybrid_queries:
            return None
        proposals = self.perspective_head.proposals(persp_out, ego2img, self.hybrid_queries)
        ref = self.head.normalize_centres(proposals["centres"]).clamp(0, 1)
        return self.hybrid(ref.detach(), proposals["labels"])

    def forward(self, img: Tensor, cams: dict, ego: dict, meta: list[dict] | None = None, mode: str = "tensor",
                gt_boxes: list[Tensor] | None = None, gt_labels: list[Tensor] | None = None, **unused):
        if img.dim() != 6:
            raise ValueError(f"img must be (B, T, Ncam, 3, H, W), got shape {tuple(img.shape)}")
        flips = image_flips(cams)
        ego2img = feature_ego2img(cams["ego2img"], flips, img.shape[-1])
        bev, features = self.extract(img, ego2img, flips, ego, meta)
        ego2img = ego2img[:, -1]
        persp_out = self.perspective_head(features) if self.perspective_head is not None else None
        outputs = self.head(bev, self._extra_queries(persp_out, ego2img))
        if mode == "tensor":
            return outputs
        if mode == "loss":
            if gt_boxes is None or gt_labels is None:
                raise ValueError("mode='loss' needs gt_boxes and gt_labels")
            losses = self.head.loss(outputs, gt_boxes, gt_labels)
            if persp_out is not None:
                losses.update(self.perspective_head.loss(persp_out, gt_boxes, gt_labels, ego2img,
                                                         tuple(img.shape[-2:])))
            return losses
        if mode == "predict":
            predictions = self.head.predict(outputs)
            for pred, info in zip(predictions, meta or [{}] * len(predictions)):
                pred["sample_token"] = info.get("sample_token")
            return predictions
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
