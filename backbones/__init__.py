"""InternImage backbones (T/S/B/L/XL/H/G) on the DCNv3 op, checkpoint loading, timm-like factory.

    from backbones import create_model, create_backbone
    model = create_model("internimage_t", pretrained="internimage_t_1k_224.pth")
    backbone = create_backbone("internimage_b", out_indices=(1, 2, 3), frozen_stages=1)

``REGISTRABLE`` lists the classes that ``perception.engine.register_lower_layers`` registers
into the project's mmengine MODELS registry (this package may not import ``perception``).
"""

from .checkpoint import CheckpointError, LoadReport, convert_state_dict, load_pretrained, save_checkpoint
from .factory import count_parameters, create_backbone, create_model, list_models
from .internimage import VARIANTS, InternImage, InternImageClassifier
from .layer_decay import (
    classification_lr_ratios,
    classification_param_groups,
    detection_layer_id,
    detection_param_groups,
)

REGISTRABLE = {"InternImage": InternImage, "InternImageClassifier": InternImageClassifier}

__all__ = [
    "REGISTRABLE",
    "VARIANTS",
    "CheckpointError",
    "InternImage",
    "InternImageClassifier",
    "LoadReport",
    "classification_lr_ratios",
    "classification_param_groups",
    "convert_state_dict",
    "count_parameters",
    "create_backbone",
    "create_model",
    "detection_layer_id",
    "detection_param_groups",
    "list_models",
    "load_pretrained",
    "save_checkpoint",
]
