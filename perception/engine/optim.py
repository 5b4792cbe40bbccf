"""Optimizer-wrapper constructor with the official InternImage layer-wise LR decay.

    optim_wrapper = dict(
        optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay=0.9, dcn_lr_mul=0.1))                # classification (docs/backbones.md)
    paramwise_cfg=dict(mode='detection', layer_decay_rate=0.9, num_layers=30)  # mmdet flavour (docs/backbones.md)

The backbone is found at ``backbone_prefix`` (default ``backbone``) inside the model.
"""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from backbones.layer_decay import classification_param_groups, detection_param_groups

from .registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ["LayerDecayOptimWrapperConstructor"]

_KEYS = {"mode", "layer_decay", "dcn_lr_mul", "layer_decay_rate", "num_layers", "offset_lr_scale",
         "backbone_prefix", "skip_keywords"}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Param groups per the official rules; ``paramwise_cfg`` keys: ``mode`` ('classification' or
    'detection'), ``layer_decay`` / ``dcn_lr_mul`` (classification), ``layer_decay_rate`` /
    ``num_layers`` / ``offset_lr_scale`` (detection), ``backbone_prefix``."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - _KEYS
        if unknown:
            raise ValueError(f"LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys {sorted(unknown)}")
        self.layer_cfg = paramwise_cfg
        # the parent only needs to know that param-wise settings exist
        super().__init__(optim_wrapper_cfg, paramwise_cfg=None)
        self.paramwise_cfg = {"layer_decay": True}

    def add_params(self, params: list, module: nn.Module, prefix: str = "", is_dcn_module=None) -> None:
        cfg = self.layer_cfg
        mode = cfg.get("mode", "classification")
        backbone_prefix = cfg.get("backbone_prefix", "backbone")
        backbone = module.get_submodule(backbone_prefix) if backbone_prefix else module
        depths = getattr(backbone, "depths", None)
        if depths is None:
            raise ValueError(f"LayerDecayOptimWrapperConstructor: no InternImage at '{backbone_prefix}' "
                             "(set paramwise_cfg.backbone_prefix)")
        if mode == "classification":
            groups = classification_param_groups(
                module, self.base_lr, self.base_wd or 0.0, layer_decay=cfg.get("layer_decay"),
                dcn_lr_mul=cfg.get("dcn_lr_mul"), depths=depths,
                prefix=f"{backbone_prefix}." if backbone_prefix else "",
                skip_keywords=cfg.get("skip_keywords", ()))
        elif mode == "detection":
            groups = detection_param_groups(
                module, self.base_lr, self.base_wd or 0.0, layer_decay_rate=cfg.get("layer_decay_rate", 1.0),
                depths=depths, num_layers=cfg.get("num_layers"), prefix=backbone_prefix,
                offset_lr_scale=cfg.get("offset_lr_scale", 1.0))
        else:
            raise ValueError(f"paramwise_cfg.mode must be 'classification' or 'detection', got {mode!r}")
        for group in groups:
            group.pop("param_names")
        params.extend(groups)
