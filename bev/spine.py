"""The BEV spine every BEV task shares: image side (backbone + FPN, flip-back of mirrored images), BEV
encoder, BEVFormer v2 temporal fusion and the video cache. It returns a :class:`SpineOutput`; the task
heads (detection, occupancy, lanes) read only that.

Inputs follow the sample contract (docs/architecture.md): ``img`` (B, T, Ncam, 3, H, W) with the
current frame last, either uint8 RGB as the loader ships it (normalised here, on the model's device, by
:func:`normalize_images` with the spine's ``img_norm``) or float, taken as already normalised (fake
batches, the exported graphs of ops/export.py); ``cams['ego2img']`` (B, T, Ncam, 4, 4);
``cams['valid_hw']`` (B, T, Ncam, 2), optional, the rows and columns of each camera's real image inside the
padded input;
``ego['prev2curr']`` (B, T, 4, 4) maps frame t's ego frame into the current one;
``ego['history_valid']`` (B, T) marks frames that exist.

History, v2 style: the BEV of frame t is built from frame t's images with
``ego2img_t @ inv(prev2curr_t)``, i.e. the *current* BEV grid is projected into the past images,
so every history BEV is already aligned with the current frame. History BEVs are computed without
gradients and in eval mode.

Image flip, v2 style: the augmentation may mirror a sample's images (``cams['img_aug']`` then has a
negative x scale, and ``ego2img`` includes the mirror). The FPN features of mirrored images are
flipped back, and the matrices are mirrored back to match (about the padded input width, the frame
of the normalised coordinates the sampling uses). Everything after the image side then sees
unmirrored geometry: the deformable attention's learned offsets point the same way for every
sample, and the perspective head's targets come from a right-handed camera. A mirrored image's
valid region is mirrored too (it ends at the padded width), which :func:`feature_valid_region`
accounts for.

Video test mode (``video_mode = True``, needs ``meta[i]['frame_tokens']``): the FPN features of each
frame are cached by sample token, so running a sequence frame by frame computes every frame's
backbone once instead of ``num_frames`` times. Only the cheap re-projection into the current frame
is redone, which keeps the result identical to the non-cached computation.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ops.export import is_exportable
from perception.structures import BEVGrid
from perception.structures.cameras import image_aug_matrix
from perception.structures.image_norm import IMAGENET_MEAN, IMAGENET_STD

from .temporal import ResidualConvFusion, fill_missing_history

__all__ = ["BEVSpine", "SpineOutput", "build_component", "feature_ego2img", "feature_valid_region", "flip_back",
           "image_flips", "make_grid", "normalize_images"]


@dataclass
class SpineOutput:
    """What the spine hands every task head.

    bev: the fused BEV (B, C, Nx, Ny) in the current ego frame, x along dim -2 (docs/architecture.md).
    features: the current frame's FPN levels, each (B·Ncam, C, h, w), mirrored images flipped back.
    ego2img: (B, Ncam, 4, 4) ego -> pixel matrices of those features (mirrors undone).
    image_size: (H, W) of the padded network input the pixels refer to.
    valid_region: (B, Ncam, 4) pixel box (u0, v0, u1, v1) of each camera's real image in ``ego2img``'s
        pixels, or None when every camera fills the whole input.
    grid: the BEV grid of ``bev``.
    image_flips: (B, Ncam) bool, the current frame's cameras whose input image the augmentation mirrored
        (their ``features`` are flipped back, so image-space targets of those cameras, such as traffic
        elements, must be mirrored about the padded width to match), or None when none was.
    """

    bev: Tensor
    features: list[Tensor]
    ego2img: Tensor
    image_size: tuple[int, int]
    valid_region: Tensor | None
    grid: BEVGrid
    image_flips: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.bev.shape[0]

    @property
    def num_cameras(self) -> int:
        return self.ego2img.shape[1]


def make_grid(bev_grid) -> BEVGrid | None:
    """A BEVGrid from a dict of its arguments (configs), a grid, or None."""
    if bev_grid is None or isinstance(bev_grid, BEVGrid):
        return bev_grid
    return BEVGrid(**bev_grid)


def build_component(component, **defaults):
    """Build a component given as an mmengine config dict; modules and None pass through.

    ``defaults`` fill the keys that are missing or None, for the classes whose constructor takes them
    (so the BEV grid reaches the heads that want it and no other)."""
    if component is None or isinstance(component, nn.Module):
        return component
    from perception.engine import MODELS, register_lower_layers

    register_lower_layers()
    cfg = dict(component)
    cls = cfg["type"] if isinstance(cfg["type"], type) else MODELS.get(cfg["type"])
    if cls is None:
        raise KeyError(f"{cfg['type']!r} is not a registered model component (is its package imported?)")
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in defaults.items():
        if cfg.get(key) is None and (key in params or takes_any):
            cfg[key] = value
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


def feature_valid_region(cams: dict, flips: Tensor | None, image_size: tuple[int, int]) -> Tensor | None:
    """(B, T, Ncam, 4) pixel box (u0, v0, u1, v1) of each camera's real image in the flipped-back
    features' pixels, from ``cams['valid_hw']``; None when absent or when every image fills the input.

    Padding is added at the bottom and right, so the real image is [0, w) x [0, h); a mirrored image
    padded on the right becomes [W - w, W) x [0, h) once flipped back."""
    valid_hw = cams.get("valid_hw")
    height, width = image_size
    if valid_hw is None:
        return None
    # Export mode reads no tensor values (ops/export.py): the region is kept even when it is the whole input.
    if not is_exportable() and bool((valid_hw[..., 0] >= height).all() and (valid_hw[..., 1] >= width).all()):
        return None
    rows, cols = valid_hw[..., 0].float(), valid_hw[..., 1].float()
    zeros = torch.zeros_like(rows)
    u0 = zeros if flips is None else torch.where(flips.to(rows.device), width - cols, zeros)
    u1 = cols if flips is None else torch.where(flips.to(rows.device), torch.full_like(cols, width), cols)
    return torch.stack([u0, zeros, u1, rows], -1)


def normalize_images(img: Tensor, mean: Sequence[float], std: Sequence[float],
                     valid_hw: Tensor | None = None) -> Tensor:
    """uint8 (..., 3, H, W) RGB -> float32 ``(x - mean) / std`` per channel, the arithmetic the loader's
    NormalizeMultiViewImages does on the CPU (float32 subtract, then divide). With ``valid_hw`` (..., 2) the
    padding (outside each image's rows x cols, at the bottom/right) is zero, as when the loader padded
    already-normalised images."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=img.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=img.device).view(3, 1, 1)
    out = img.float().sub_(mean_t).div_(std_t)
    if valid_hw is not None:
        height, width = img.shape[-2:]
        rows = torch.arange(height, device=img.device).view(height, 1)
        cols = torch.arange(width, device=img.device)
        hw = valid_hw.to(img.device)
        inside = (rows < hw[..., 0, None, None]) & (cols < hw[..., 1, None, None])
        out.masked_fill_(~inside.unsqueeze(-3), 0.0)
    return out


class BEVSpine(nn.Module):
    """Images of T frames -> one fused BEV plus the current frame's per-camera features.

    Components may be modules or config dicts. ``neck`` may leave out ``in_channels``: they are then
    taken from the backbone's declared ``out_channels``. ``img_norm`` (``dict(mean=, std=)``, RGB, 0..255
    scale; default ImageNet's, perception/structures/image_norm.py) normalises uint8 input; float input is
    taken as already normalised."""

    def __init__(self, backbone, neck, encoder, num_frames: int = 1, fusion_channels: int | None = None,
                 bev_levels: int = 4, bev_grid=None, img_norm: Mapping[str, Sequence[float]] | None = None) -> None:
        super().__init__()
        norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD) if img_norm is None else dict(img_norm)
        if set(norm) != {"mean", "std"} or any(len(norm[k]) != 3 for k in norm):
            raise ValueError(f"img_norm must be dict(mean=(r, g, b), std=(r, g, b)), got {img_norm!r}")
        # Python floats, not buffers: they stay float32 when the model is cast to half precision.
        self.img_mean, self.img_std = tuple(map(float, norm["mean"])), tuple(map(float, norm["std"]))
        if not 1 <= num_frames <= 8:
            raise ValueError(f"num_frames must be between 1 and 8, got {num_frames}")
        grid = make_grid(bev_grid)
        self.backbone = build_component(backbone)
        self.neck = build_component(neck, **_neck_defaults(neck, self.backbone))
        self.encoder = build_component(encoder, grid=grid)
        self.grid = self.encoder.grid
        self.num_frames, self.bev_levels = num_frames, bev_levels
        self.fusion = ResidualConvFusion(num_frames, self.embed_dims, fusion_channels) if num_frames > 1 else None
        self.video_cache: OrderedDict[str, list[Tensor]] = OrderedDict()
        self.video_mode = False

    @property
    def embed_dims(self) -> int:
        return self.encoder.embed_dims

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
                      tokens: list[list[str]] | None, flips: Tensor | None, valid_region: Tensor | None
                      ) -> list[Tensor]:
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
                region = None if valid_region is None else valid_region[:, t]
                bevs.append(self.encoder(feats, to_past, image_size, region))
        self.train(was_training)
        return bevs

    def forward(self, img: Tensor, cams: dict, ego: dict, meta: list[dict] | None = None) -> SpineOutput:
        if img.dim() != 6:
            raise ValueError(f"img must be (B, T, Ncam, 3, H, W), got shape {tuple(img.shape)}")
        if img.dtype == torch.uint8:
            img = normalize_images(img, self.img_mean, self.img_std, cams.get("valid_hw"))
        b, t = img.shape[:2]
        image_size = tuple(img.shape[-2:])
        flips = image_flips(cams)
        ego2img = feature_ego2img(cams["ego2img"], flips, img.shape[-1])
        valid_region = feature_valid_region(cams, flips, image_size)
        frame_tokens = [m["frame_tokens"] for m in meta] if self.video_mode and meta else None
        current = self._frame_features(img[:, -1], [seq[-1] for seq in frame_tokens] if frame_tokens else None,
                                       None if flips is None else flips[:, -1])
        region = None if valid_region is None else valid_region[:, -1]
        bev = self.encoder(self._per_camera(current, b), ego2img[:, -1], image_size, region)
        if self.fusion is not None:
            frames = min(t, self.num_frames)
            tokens = [seq[-frames:-1] for seq in frame_tokens] if frame_tokens else None
            history = self._history_bevs(img[:, -frames:], ego2img[:, -frames:], ego["prev2curr"][:, -frames:],
                                         image_size, tokens, None if flips is None else flips[:, -frames:],
                                         None if valid_region is None else valid_region[:, -frames:])
            valid = ego.get("history_valid", torch.ones(b, t, dtype=torch.bool, device=img.device))[:, -frames:]
            bevs = fill_missing_history(history + [bev], valid.to(bev.device))
            missing_slots = self.num_frames - frames  # fewer frames given than the model fuses
            bev = self.fusion([bevs[0]] * missing_slots + bevs)
        return SpineOutput(bev=bev, features=current, ego2img=ego2img[:, -1], image_size=image_size,
                           valid_region=region, grid=self.grid, image_flips=None if flips is None else flips[:, -1])


def _neck_defaults(neck, backbone) -> dict:
    """``in_channels`` of a neck config that leaves them out: the backbone's declared output channels."""
    if isinstance(neck, nn.Module) or neck is None or neck.get("in_channels") is not None:
        return {}
    channels = getattr(backbone, "out_channels", None)
    if channels is None:
        raise ValueError(f"neck {neck.get('type')} has no in_channels and backbone {type(backbone).__name__} "
                         "declares no out_channels")
    return dict(in_channels=list(channels))
