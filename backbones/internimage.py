"""InternImage T/S/B/L/XL/H/G (CVPR 2023): a DCNv3 backbone and its classifier.

Everything inside the stages is channels-last (N, H, W, C). Module names follow the official code,
so official state dicts load with ``strict=True`` (see :mod:`backbones.checkpoint`).

* :class:`InternImage` is the feature extractor (the mmdet/mmseg backbone): stem + four stages,
  ``forward`` returns NCHW maps at strides 4/8/16/32 for ``out_indices``.
* :class:`InternImageClassifier` adds the classification head (``conv_head`` + ``head`` for
  T..XL, the CLIP-projector attention pooling head for H/G); its state dict is exactly the
  official classification checkpoint's.

Architecture hyper-parameters come from ``variant`` ('t', 's', 'b', 'l', 'xl', 'h', 'g'); any of
them can be overridden by keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from ops import DCNv3

from .layers import (
    AttentionPoolingBlock,
    DownsampleLayer,
    DropPath,
    MLPLayer,
    StemLayer,
    build_act_layer,
    build_norm_layer,
)

__all__ = ["VARIANTS", "InternImage", "InternImageBlock", "InternImageClassifier", "InternImageLayer",
           "resolve_arch"]

# Architecture of each released variant (docs/backbones.md). Group channels C/G: 16 for T..XL, 32 for H/G.
VARIANTS: dict[str, dict[str, Any]] = {
    "t": dict(channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), layer_scale=None),
    "s": dict(channels=80, depths=(4, 4, 21, 4), groups=(5, 10, 20, 40), layer_scale=1e-5, post_norm=True),
    "b": dict(channels=112, depths=(4, 4, 21, 4), groups=(7, 14, 28, 56), layer_scale=1e-5, post_norm=True),
    "l": dict(channels=160, depths=(5, 5, 22, 5), groups=(10, 20, 40, 80), layer_scale=1e-5, post_norm=True,
              offset_scale=2.0),
    "xl": dict(channels=192, depths=(5, 5, 24, 5), groups=(12, 24, 48, 96), layer_scale=1e-5, post_norm=True,
               offset_scale=2.0),
    "h": dict(channels=320, depths=(6, 6, 32, 6), groups=(10, 20, 40, 80), layer_scale=None, res_post_norm=True,
              dw_kernel_size=5, level2_post_norm=True, level2_post_norm_block_ids=(5, 11, 17, 23, 29),
              center_feature_scale=True, use_clip_projector=True),
    "g": dict(channels=512, depths=(2, 2, 48, 4), groups=(16, 32, 64, 128), layer_scale=None, post_norm=True,
              dw_kernel_size=5, level2_post_norm=True,
              level2_post_norm_block_ids=(5, 11, 17, 23, 29, 35, 41, 47), center_feature_scale=True,
              use_clip_projector=True),
}

# Defaults of every architecture argument a variant does not set (the official constructor's).
_ARCH_DEFAULTS: dict[str, Any] = dict(
    channels=None, depths=None, groups=None, layer_scale=None, offset_scale=1.0, post_norm=False,
    res_post_norm=False, dw_kernel_size=None, level2_post_norm=False, level2_post_norm_block_ids=None,
    center_feature_scale=False, use_clip_projector=False, mlp_ratio=4.0, remove_center=False,
)


class _FromVariant:
    """Marks an argument left to the variant (``None`` is a meaningful value, e.g. no layer scale)."""

    def __repr__(self) -> str:
        return "<from variant>"


FROM_VARIANT: Any = _FromVariant()


def resolve_arch(variant: str | None, **given: Any) -> dict[str, Any]:
    """Architecture arguments: official defaults, then the variant's, then explicitly ``given`` ones."""
    arch = dict(_ARCH_DEFAULTS)
    if variant is not None:
        key = variant.lower().removeprefix("internimage_")
        if key not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        arch.update(VARIANTS[key])
    unknown = set(given) - set(arch)
    if unknown:
        raise TypeError(f"unknown architecture argument(s): {sorted(unknown)}")
    arch.update({k: v for k, v in given.items() if v is not FROM_VARIANT})
    for name in ("channels", "depths", "groups"):
        if arch[name] is None:
            raise ValueError(f"InternImage needs `{name}` (or a `variant` among {sorted(VARIANTS)})")
    arch["depths"], arch["groups"] = tuple(arch["depths"]), tuple(arch["groups"])
    if len(arch["depths"]) != 4 or len(arch["groups"]) != 4:
        raise ValueError(f"depths and groups need 4 entries, got {arch['depths']} and {arch['groups']}")
    if arch["level2_post_norm_block_ids"] is not None:
        arch["level2_post_norm_block_ids"] = tuple(arch["level2_post_norm_block_ids"])
    return arch


class InternImageLayer(nn.Module):
    """One block: a DCNv3 sub-block and an MLP sub-block, each with a residual connection.

    Norm placement (docs/backbones.md): pre-norm by default; ``post_norm`` normalises the branch
    output instead (and takes precedence over ``res_post_norm``); ``res_post_norm`` adds a norm
    after the pre-normed branch; with ``layer_scale`` the branch is multiplied by ``gamma1/2`` and
    ``res_post_norm`` is ignored (its modules still exist, as upstream).
    """

    def __init__(self, channels: int, groups: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, act_layer: str = "GELU", norm_layer: str = "LN",
                 post_norm: bool = False, layer_scale: float | None = None, offset_scale: float = 1.0,
                 with_cp: bool = False, dw_kernel_size: int | None = None, res_post_norm: bool = False,
                 center_feature_scale: bool = False, remove_center: bool = False,
                 dcn_backend: str | None = None) -> None:
        super().__init__()
        self.channels, self.groups, self.mlp_ratio = channels, groups, mlp_ratio
        self.with_cp, self.post_norm, self.res_post_norm = with_cp, post_norm, res_post_norm
        self.norm1 = build_norm_layer(channels, "LN")
        self.dcn = DCNv3(channels=channels, kernel_size=3, dw_kernel_size=dw_kernel_size, stride=1, pad=1,
                         dilation=1, group=groups, offset_scale=offset_scale, act_layer=act_layer,
                         norm_layer=norm_layer, center_feature_scale=center_feature_scale,
                         remove_center=remove_center, backend=dcn_backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = build_norm_layer(channels, "LN")
        self.mlp = MLPLayer(in_features=channels, hidden_features=int(channels * mlp_ratio), act_layer=act_layer,
                            drop=drop)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(channels))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(channels))
        if res_post_norm:
            self.res_post_norm1 = build_norm_layer(channels, "LN")
            self.res_post_norm2 = build_norm_layer(channels, "LN")

    def _dcn_branch(self, x: Tensor) -> Tensor:
        if self.post_norm:
            return self.norm1(self.dcn(x))
        out = self.dcn(self.norm1(x))
        if self.res_post_norm and not self.layer_scale:
            out = self.res_post_norm1(out)
        return out

    def _mlp_branch(self, x: Tensor) -> Tensor:
        if self.post_norm:
            return self.norm2(self.mlp(x))
        out = self.mlp(self.norm2(x))
        if self.res_post_norm and not self.layer_scale:
            out = self.res_post_norm2(out)
        return out

    def _forward(self, x: Tensor) -> Tensor:
        branch = self._dcn_branch(x)
        x = x + self.drop_path(self.gamma1 * branch if self.layer_scale else branch)
        branch = self._mlp_branch(x)
        return x + self.drop_path(self.gamma2 * branch if self.layer_scale else branch)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class InternImageBlock(nn.Module):
    """One stage ("level"): ``depth`` layers, optional post norms after chosen blocks (stage 2 of
    H/G), the stage norm iff ``not post_norm or center_feature_scale``, and an optional downsample."""

    def __init__(self, channels: int, depth: int, groups: int, downsample: bool = True, mlp_ratio: float = 4.0,
                 drop: float = 0.0, drop_path: float | Sequence[float] = 0.0, act_layer: str = "GELU",
                 norm_layer: str = "LN", post_norm: bool = False, offset_scale: float = 1.0,
                 layer_scale: float | None = None, with_cp: bool = False, dw_kernel_size: int | None = None,
                 post_norm_block_ids: Sequence[int] | None = None, res_post_norm: bool = False,
                 center_feature_scale: bool = False, remove_center: bool = False,
                 dcn_backend: str | None = None) -> None:
        super().__init__()
        self.channels, self.depth = channels, depth
        self.post_norm, self.center_feature_scale = post_norm, center_feature_scale
        rates = list(drop_path) if isinstance(drop_path, Sequence) else [drop_path] * depth
        self.blocks = nn.ModuleList([
            InternImageLayer(channels=channels, groups=groups, mlp_ratio=mlp_ratio, drop=drop,
                             drop_path=rates[i], act_layer=act_layer, norm_layer=norm_layer,
                             post_norm=post_norm, layer_scale=layer_scale, offset_scale=offset_scale,
                             with_cp=with_cp, dw_kernel_size=dw_kernel_size, res_post_norm=res_post_norm,
                             center_feature_scale=center_feature_scale, remove_center=remove_center,
                             dcn_backend=dcn_backend)
            for i in range(depth)])
        if self.has_stage_norm:
            self.norm = build_norm_layer(channels, "LN")
        self.post_norm_block_ids = list(post_norm_block_ids) if post_norm_block_ids is not None else None
        if self.post_norm_block_ids is not None:
            bad = [i for i in self.post_norm_block_ids if not 0 <= i < depth]
            if bad:
                raise ValueError(f"level2_post_norm_block_ids {bad} are outside the stage's {depth} blocks")
            self.post_norms = nn.ModuleList([build_norm_layer(channels, "LN") for _ in self.post_norm_block_ids])
        self.downsample = DownsampleLayer(channels=channels, norm_layer=norm_layer) if downsample else None

    @property
    def has_stage_norm(self) -> bool:
        return not self.post_norm or self.center_feature_scale

    def forward(self, x: Tensor, return_wo_downsample: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.post_norm_block_ids is not None and i in self.post_norm_block_ids:
                x = self.post_norms[self.post_norm_block_ids.index(i)](x)
        if self.has_stage_norm:
            x = self.norm(x)
        features = x
        if self.downsample is not None:
            x = self.downsample(x)
        return (x, features) if return_wo_downsample else x


def _init_weights(module: nn.Module) -> None:
    """Official init: Linear trunc-normal(0.02)/zero bias, LayerNorm (1, 0); convs keep defaults."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class InternImage(nn.Module):
    """InternImage feature extractor (the detection/segmentation backbone).

    Args:
        variant: 't', 's', 'b', 'l', 'xl', 'h' or 'g' (or None and give the architecture explicitly).
        channels, depths, groups, layer_scale, offset_scale, post_norm, res_post_norm, dw_kernel_size,
        level2_post_norm, level2_post_norm_block_ids, center_feature_scale, mlp_ratio, remove_center:
            architecture overrides (default: the variant's values).
        drop_rate: dropout after the stem and inside the MLPs.
        drop_path_rate: stochastic depth; per-block rates from one linspace(0, rate, sum(depths))
            (``drop_path_type='linear'``) or all equal (``'uniform'``).
        out_indices: the stages whose (pre-downsample, post-stage-norm) maps ``forward`` returns.
        frozen_stages: freeze ``levels[:frozen_stages]`` (the stem is never frozen, as upstream).
        with_cp: gradient checkpointing per block.
        pretrained: a checkpoint to load (any form :func:`backbones.checkpoint.load_pretrained` reads).
        dcn_backend: the ``ops`` backend for DCNv3 (None = automatic).
        init_cfg, core_op: accepted as in the official mmdet/mmseg configs
            (``init_cfg=dict(type='Pretrained', checkpoint=...)``, ``core_op='DCNv3'``).
    """

    def __init__(self, variant: str | None = None, *, channels: Any = FROM_VARIANT, depths: Any = FROM_VARIANT,
                 groups: Any = FROM_VARIANT, layer_scale: Any = FROM_VARIANT, offset_scale: Any = FROM_VARIANT,
                 post_norm: Any = FROM_VARIANT, res_post_norm: Any = FROM_VARIANT,
                 dw_kernel_size: Any = FROM_VARIANT, level2_post_norm: Any = FROM_VARIANT,
                 level2_post_norm_block_ids: Any = FROM_VARIANT, center_feature_scale: Any = FROM_VARIANT,
                 mlp_ratio: Any = FROM_VARIANT, remove_center: Any = FROM_VARIANT,
                 in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 drop_path_type: str = "linear", act_layer: str = "GELU", norm_layer: str = "LN",
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False,
                 pretrained: str | None = None, dcn_backend: str | None = None,
                 init_cfg: dict | None = None, core_op: str = "DCNv3", **arch_extra: Any) -> None:
        super().__init__()
        if core_op != "DCNv3":
            raise ValueError(f"core_op must be 'DCNv3' (the only operator implemented), got {core_op!r}")
        arch = resolve_arch(variant, channels=channels, depths=depths, groups=groups, layer_scale=layer_scale,
                            offset_scale=offset_scale, post_norm=post_norm, res_post_norm=res_post_norm,
                            dw_kernel_size=dw_kernel_size, level2_post_norm=level2_post_norm,
                            level2_post_norm_block_ids=level2_post_norm_block_ids,
                            center_feature_scale=center_feature_scale, mlp_ratio=mlp_ratio,
                            remove_center=remove_center, **arch_extra)
        if drop_path_type not in ("linear", "uniform"):
            raise ValueError(f"drop_path_type must be 'linear' or 'uniform', got {drop_path_type!r}")
        self.variant = variant
        self.arch = arch
        self.channels, self.depths, self.groups = arch["channels"], arch["depths"], arch["groups"]
        self.num_levels = len(self.depths)
        self.num_features = int(self.channels * 2 ** (self.num_levels - 1))
        self.post_norm, self.center_feature_scale = arch["post_norm"], arch["center_feature_scale"]
        self.mlp_ratio, self.act_layer, self.norm_layer = arch["mlp_ratio"], act_layer, norm_layer
        self.out_indices = tuple(out_indices)
        bad = [i for i in self.out_indices if not 0 <= i < self.num_levels]
        if bad:
            raise ValueError(f"out_indices {bad} must be stage indices in [0, {self.num_levels})")
        self.frozen_stages = frozen_stages
        self._with_cp = with_cp

        self.patch_embed = StemLayer(in_chans=in_chans, out_chans=self.channels, act_layer=act_layer,
                                     norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(p=drop_rate)
        total = sum(self.depths)
        if drop_path_type == "linear":
            rates = [float(r) for r in torch.linspace(0, drop_path_rate, total, device="cpu")]
        else:
            rates = [float(drop_path_rate)] * total
        self.levels = nn.ModuleList()
        for i in range(self.num_levels):
            start = sum(self.depths[:i])
            post_ids = arch["level2_post_norm_block_ids"] if arch["level2_post_norm"] and i == 2 else None
            self.levels.append(InternImageBlock(
                channels=int(self.channels * 2 ** i), depth=self.depths[i], groups=self.groups[i],
                downsample=i < self.num_levels - 1, mlp_ratio=self.mlp_ratio, drop=drop_rate,
                drop_path=rates[start:start + self.depths[i]], act_layer=act_layer, norm_layer=norm_layer,
                post_norm=arch["post_norm"], offset_scale=arch["offset_scale"], layer_scale=arch["layer_scale"],
                with_cp=with_cp, dw_kernel_size=arch["dw_kernel_size"], post_norm_block_ids=post_ids,
                res_post_norm=arch["res_post_norm"], center_feature_scale=arch["center_feature_scale"],
                remove_center=arch["remove_center"], dcn_backend=dcn_backend))
        self._build_head()
        self.reset_parameters()
        self.pretrained = pretrained or _pretrained_from_init_cfg(init_cfg)
        if self.pretrained:
            from .checkpoint import load_pretrained

            load_pretrained(self, self.pretrained, strict=False, head="drop")
        self._freeze_stages()

    # -- construction helpers ------------------------------------------------------------------
    def _build_head(self) -> None:
        """The feature extractor has no head."""

    def reset_parameters(self) -> None:
        """Official initialisation order: generic Linear/LayerNorm init, then each DCNv3's own."""
        self.apply(_init_weights)
        for module in self.modules():
            if isinstance(module, DCNv3):
                module.reset_parameters()

    def init_weights(self) -> None:
        """mmengine hook: weights are initialised (and ``pretrained`` loaded) at construction."""

    @property
    def out_channels(self) -> list[int]:
        """Channels of the returned maps (one per ``out_indices`` entry)."""
        return [int(self.channels * 2 ** i) for i in self.out_indices]

    @property
    def out_strides(self) -> list[int]:
        return [4 * 2 ** i for i in self.out_indices]

    @property
    def with_cp(self) -> bool:
        return self._with_cp

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        self._with_cp = bool(value)
        for module in self.modules():
            if isinstance(module, InternImageLayer):
                module.with_cp = bool(value)

    # -- freezing ------------------------------------------------------------------------------
    def _freeze_stages(self) -> None:
        for level in self.levels[:max(self.frozen_stages, 0)]:
            level.eval()
            for param in level.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> InternImage:
        super().train(mode)
        self._freeze_stages()
        return self

    # -- layer-wise learning-rate decay ----------------------------------------------------------
    def lr_decay_keywords(self, decay_ratio: float = 0.87) -> dict[str, float]:
        """The official classification layer-decay map (docs/backbones.md): name fragment -> LR ratio."""
        from .layer_decay import classification_lr_ratios

        return classification_lr_ratios(self.depths, decay_ratio)

    # -- forward -------------------------------------------------------------------------------
    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Stem and all stages; the pre-downsample NHWC map of every stage."""
        x = self.pos_drop(self.patch_embed(x))
        features = []
        for level in self.levels:
            x, feature = level(x, return_wo_downsample=True)
            features.append(feature)
        return features

    def forward(self, x: Tensor) -> list[Tensor]:
        """NCHW maps of the ``out_indices`` stages (strides 4, 8, 16, 32)."""
        x = self.pos_drop(self.patch_embed(x))
        outputs = []
        last = max(self.out_indices)
        for i, level in enumerate(self.levels[:last + 1]):
            x, feature = level(x, return_wo_downsample=True)
            if i in self.out_indices:
                outputs.append(feature.permute(0, 3, 1, 2).contiguous())
        return outputs


def _pretrained_from_init_cfg(init_cfg: dict | None) -> str | None:
    if not init_cfg:
        return None
    if init_cfg.get("type") != "Pretrained" or "checkpoint" not in init_cfg:
        raise ValueError(f"init_cfg must be dict(type='Pretrained', checkpoint=PATH), got {init_cfg!r}")
    return init_cfg["checkpoint"]


class InternImageClassifier(InternImage):
    """InternImage with the official classification head (``num_classes`` logits).

    T..XL: ``conv_head`` (1x1 conv F -> cls_scale·F, BN, act) on the last map, global average pool,
    ``head``. H/G (``use_clip_projector``): the stage-4 map (1x1 conv to 4096 + PixelShuffle 2) plus
    the stage-3 map (1x1 conv to 1024) as tokens, CLIP-projector attention pooling to 768,
    ``fc_norm``, ``head``. ``num_classes=0`` keeps the pooled features (head = Identity).
    """

    def __init__(self, variant: str | None = None, *, num_classes: int = 1000, cls_scale: float = 1.5,
                 use_clip_projector: Any = FROM_VARIANT, **kwargs: Any) -> None:
        self.num_classes, self.cls_scale = num_classes, cls_scale
        super().__init__(variant, use_clip_projector=use_clip_projector, **kwargs)

    def _build_head(self) -> None:
        self.use_clip_projector = bool(self.arch["use_clip_projector"])
        if self.use_clip_projector:
            pretrain_embed_dim, stride, heads, clip_embed_dim = 1024, 2, 16, 768
            self.dcnv3_head_x4 = nn.Sequential(
                nn.Conv2d(self.num_features, pretrain_embed_dim * stride ** 2, kernel_size=1),
                nn.PixelShuffle(stride))
            self.dcnv3_head_x3 = nn.Conv2d(self.num_features // 2, pretrain_embed_dim, kernel_size=1)
            self.clip_projector = AttentionPoolingBlock(dim=pretrain_embed_dim, num_heads=heads, qkv_bias=True,
                                                        out_dim=clip_embed_dim)
            self.fc_norm = build_norm_layer(clip_embed_dim, "LN")
            self.head_features = clip_embed_dim
        else:
            hidden = int(self.num_features * self.cls_scale)
            self.conv_head = nn.Sequential(
                nn.Conv2d(self.num_features, hidden, kernel_size=1, bias=False),
                build_norm_layer(hidden, "BN", "channels_first", "channels_first"),
                build_act_layer(self.act_layer))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.head_features = hidden
        self.head = nn.Linear(self.head_features, self.num_classes) if self.num_classes > 0 else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``head`` by a freshly initialised one with ``num_classes`` outputs (0 = Identity)."""
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = nn.Linear(self.head_features, num_classes, device=device) if num_classes > 0 else nn.Identity()
        self.head.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before ``head`` (N, head_features)."""
        if self.use_clip_projector:
            features = self.forward_stages(x)
            x4 = self.dcnv3_head_x4(features[3].permute(0, 3, 1, 2))
            x3 = self.dcnv3_head_x3(features[2].permute(0, 3, 1, 2))
            tokens = (x4 + x3).flatten(-2).transpose(1, 2).contiguous()
            return self.fc_norm(self.clip_projector(tokens))
        x = self.pos_drop(self.patch_embed(x))
        for level in self.levels:
            x = level(x)
        x = self.conv_head(x.permute(0, 3, 1, 2))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """Logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))
