"""Image classifier for mmengine: wraps a backbone classifier (e.g. ``InternImageClassifier``)
with the training loss (label smoothing, mixup/cutmix soft targets) and the predict interface.

The network lives in ``self.backbone``, so checkpoints carry the official keys under a
``backbone.`` prefix, which :func:`backbones.load_pretrained` strips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from perception.data.classification.mixup import MixupCutmix
from perception.engine.registry import MODELS, register_lower_layers

__all__ = ["ImageClassifier", "soft_target_cross_entropy"]


def soft_target_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Classifier with a ``forward(inputs, data_samples, mode)`` mmengine interface.

    Args:
        backbone: config of a module mapping (N, 3, H, W) images to (N, num_classes) logits.
        num_classes: classes (needed for mixup targets; default: ``backbone.num_classes``).
        label_smoothing: smoothing of the cross-entropy targets.
        batch_augments: mixup/cutmix arguments (:class:`MixupCutmix`); None disables them.
        pretrained: checkpoint loaded into the backbone (``pretrained_head``: keep/drop/map).
    Data: ``inputs`` (N, 3, H, W) float tensor, ``data_samples`` (N,) integer labels.
    ``mode='loss'`` -> ``{'loss': ...}``; ``'predict'`` -> list of dicts with ``pred_score``,
    ``pred_label`` and ``gt_label``; ``'tensor'`` -> logits.
    """

    def __init__(self, backbone: dict, num_classes: int | None = None, label_smoothing: float = 0.0,
                 batch_augments: dict | None = None, pretrained: str | None = None,
                 pretrained_head: str = "keep", class_map: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        register_lower_layers()
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes if num_classes is not None else getattr(self.backbone, "num_classes", None)
        self.label_smoothing = label_smoothing
        self.batch_augments = None
        if batch_augments:
            if not self.num_classes:
                raise ValueError("ImageClassifier: batch_augments need num_classes")
            self.batch_augments = MixupCutmix(num_classes=self.num_classes,
                                              **{"label_smoothing": label_smoothing, **batch_augments})
        if pretrained:
            from backbones import load_pretrained

            load_pretrained(self.backbone, pretrained, head=pretrained_head, class_map=class_map)

    def loss(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        if self.batch_augments is not None:
            inputs, targets = self.batch_augments(inputs, labels)
            return {"loss": soft_target_cross_entropy(self.backbone(inputs), targets)}
        logits = self.backbone(inputs)
        return {"loss": F.cross_entropy(logits.float(), labels.long(), label_smoothing=self.label_smoothing)}

    def predict(self, inputs: Tensor, labels: Tensor | None = None) -> list[dict[str, Any]]:
        scores = self.backbone(inputs).float().softmax(dim=-1)
        labels_list = labels.tolist() if labels is not None else [-1] * len(scores)
        return [{"pred_score": s, "pred_label": int(s.argmax()), "gt_label": int(g)}
                for s, g in zip(scores, labels_list)]

    def forward(self, inputs: Tensor, data_samples: Tensor | None = None, mode: str = "tensor") -> Any:
        if isinstance(data_samples, list | tuple):
            data_samples = torch.as_tensor(data_samples, device=inputs.device)
        if mode == "loss":
            if data_samples is None:
                raise ValueError("ImageClassifier: mode='loss' needs data_samples (labels)")
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.backbone(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
