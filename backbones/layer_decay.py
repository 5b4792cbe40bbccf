"""Layer-wise learning-rate decay for InternImage, in the two official flavours.

* Classification (docs/backbones.md): blocks are numbered from the last block of stage 4 backwards
  (0, 1, 2, ...); block ``levels.s.blocks.b.`` gets ``decay**index``; the stem gets the ratio of
  the first block; ``levels.i.downsample``/``levels.i.norm`` (i < 3) the ratio of the first block
  of stage i+1; anything else (heads, ``levels.3.norm``, post norms) ratio 1. Weight decay 0 for
  1-D parameters and biases; ``dcn_lr_mul`` multiplies the LR of DCN offset/centre-scale params,
  only when layer decay is on (as upstream).
* Detection/segmentation (docs/backbones.md, BEiT-style): layer id 0 for the stem, 1 + b + sum of the
  previous depths for ``levels.s.blocks.b``, a stage's downsample/norm get the id of the first
  block of the next stage (stage 3's norm: the first block of stage 3), everything else the last
  id; scale ``rate**(num_layers + 2 - id - 1)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

__all__ = ["DCN_LR_MUL_KEYWORDS", "classification_lr_ratios", "classification_param_groups",
           "detection_layer_id", "detection_param_groups"]

DCN_LR_MUL_KEYWORDS = ("offset", "attention_weights", "center_feature_scale_proj", "alpha_beta")


def classification_lr_ratios(depths: Sequence[int], decay_ratio: float) -> dict[str, float]:
    """Name fragment -> LR ratio, the official ``lr_decay_keywords`` map."""
    ratios: dict[str, float] = {}
    index = 0
    for stage in reversed(range(len(depths))):
        for block in reversed(range(depths[stage])):
            ratios[f"levels.{stage}.blocks.{block}."] = decay_ratio ** index
            index += 1
    ratios["patch_embed"] = ratios["levels.0.blocks.0."]
    for stage in range(len(depths) - 1):
        ratios[f"levels.{stage}.downsample"] = ratios[f"levels.{stage + 1}.blocks.0."]
        ratios[f"levels.{stage}.norm"] = ratios[f"levels.{stage + 1}.blocks.0."]
    return ratios


def _ratio_for(name: str, ratios: dict[str, float]) -> float:
    ratio = 1.0
    for keyword, value in ratios.items():
        if keyword in name:
            ratio = value
    return ratio


def _group(groups: dict, name: str, param: nn.Parameter, lr: float, weight_decay: float) -> None:
    key = (lr, weight_decay)
    if key not in groups:
        groups[key] = dict(params=[], param_names=[], lr=lr, weight_decay=weight_decay)
    groups[key]["params"].append(param)
    groups[key]["param_names"].append(name)


def classification_param_groups(model: nn.Module, base_lr: float, weight_decay: float,
                                layer_decay: float | None = None, dcn_lr_mul: float | None = None,
                                depths: Sequence[int] | None = None, prefix: str = "",
                                skip_keywords: Iterable[str] = ()) -> list[dict]:
    """Optimizer param groups with the official classification rules (one group per (lr, wd)).

    ``prefix`` is the path of the InternImage inside ``model`` (e.g. ``'backbone.'``); parameters
    outside it are treated as head parameters (ratio 1).
    """
    skip_keywords = tuple(skip_keywords)
    ratios: dict[str, float] = {}
    if layer_decay is not None:
        ratios = classification_lr_ratios(depths if depths is not None else _find_depths(model), layer_decay)
    groups: dict = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(k in name for k in skip_keywords)
        ratio = 1.0
        if layer_decay is not None and name.startswith(prefix):
            ratio = _ratio_for(name[len(prefix):], ratios)
            if dcn_lr_mul is not None and any(k in name for k in DCN_LR_MUL_KEYWORDS):
                ratio *= dcn_lr_mul
        _group(groups, name, param, base_lr * ratio, 0.0 if no_decay else weight_decay)
    return list(groups.values())


def detection_layer_id(name: str, depths: Sequence[int], num_layers: int, prefix: str = "backbone") -> int:
    """The BEiT-style layer id of parameter ``name`` (``num_layers`` = number of blocks)."""
    max_id = num_layers + 1
    if not name.startswith(prefix + "."):
        return max_id
    parts = name[len(prefix) + 1:].split(".")
    if parts[0] in ("patch_embed", "level_embeds"):
        return 0
    if parts[0] != "levels":
        return max_id
    stage = int(parts[1])
    if parts[2] in ("downsample", "norm"):
        return 1 + sum(depths[:min(stage + 1, len(depths) - 1)])
    # blocks (and, as upstream parses it, post_norms: their index is read like a block index)
    return 1 + int(parts[3]) + sum(depths[:stage])


def detection_param_groups(model: nn.Module, base_lr: float, weight_decay: float, layer_decay_rate: float,
                           depths: Sequence[int], num_layers: int | None = None,
                           prefix: str = "backbone", offset_lr_scale: float = 1.0) -> list[dict]:
    """Param groups of the official detection ``CustomLayerDecayOptimizerConstructor``."""
    num_layers = sum(depths) if num_layers is None else num_layers
    groups: dict = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = (param.ndim == 1 or name.endswith(".bias") or "norm" in name or "relative_position" in name
                    or "sampling_offsets" in name)
        layer_id = detection_layer_id(name, depths, num_layers, prefix)
        scale = layer_decay_rate ** (num_layers + 2 - layer_id - 1)
        if "sampling_offsets" in name or "reference_points" in name:
            scale *= offset_lr_scale
        _group(groups, name, param, base_lr * scale, 0.0 if no_decay else weight_decay)
    return list(groups.values())


def _find_depths(model: nn.Module) -> Sequence[int]:
    for module in model.modules():
        depths = getattr(module, "depths", None)
        if depths is not None and hasattr(module, "levels"):
            return depths
    raise ValueError("layer decay needs `depths`: no InternImage found inside the model")
