"""timm-like entry points: ``create_model`` (classifier) and ``create_backbone`` (feature extractor)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import load_pretrained
from .internimage import VARIANTS, InternImage, InternImageClassifier

__all__ = ["count_parameters", "create_backbone", "create_model", "list_models"]

_PREFIX = "internimage_"


def list_models() -> list[str]:
    """The model names ``create_model``/``create_backbone`` accept."""
    return [_PREFIX + v for v in VARIANTS]


def _variant(name: str) -> str:
    key = name.lower()
    if not key.startswith(_PREFIX) or key[len(_PREFIX):] not in VARIANTS:
        raise ValueError(f"unknown model name {name!r}; expected one of {list_models()}")
    return key[len(_PREFIX):]


def create_model(name: str, pretrained: str | Path | None = None, num_classes: int = 1000,
                 pretrained_head: str = "keep", class_map: str | Path | None = None, use_ema: bool = False,
                 strict: bool = True, trusted: bool = False, **overrides: Any) -> InternImageClassifier:
    """An InternImage classifier whose ``state_dict`` keys are exactly the official ones.

    Args:
        name: ``internimage_t`` ... ``internimage_g``.
        pretrained: a checkpoint file (see :func:`backbones.checkpoint.load_pretrained`); a file that
            cannot be used raises :class:`backbones.checkpoint.CheckpointError` naming it.
        num_classes: classes of the head (0: no head, pooled features out).
        pretrained_head: ``'keep'``, ``'drop'`` (fine-tune a new head) or ``'map'`` (22k -> 1k with
            ``class_map``).
        trusted: the file is trusted: unpickle it in full if it holds types outside the allow-list
            (docs/backbones.md, "Loading checkpoints").
        overrides: any :class:`~backbones.internimage.InternImageClassifier` argument
            (``drop_path_rate``, ``with_cp``, ``layer_scale``, ``dcn_backend``, ...).
    """
    model = InternImageClassifier(_variant(name), num_classes=num_classes, **overrides)
    if pretrained is not None:
        load_pretrained(model, pretrained, strict=strict, head=pretrained_head, class_map=class_map,
                        use_ema=use_ema, trusted=trusted)
    return model


def create_backbone(name: str, pretrained: str | Path | None = None,
                    out_indices: Sequence[int] = (0, 1, 2, 3), use_ema: bool = False, strict: bool = True,
                    trusted: bool = False, **overrides: Any) -> InternImage:
    """An InternImage feature extractor: ``forward(x)`` returns NCHW maps at strides 4/8/16/32 for
    ``out_indices``; ``.out_channels`` and ``.out_strides`` describe them. Any head in the
    checkpoint is ignored; ``frozen_stages``, ``with_cp`` etc. go in ``overrides``; ``trusted`` as in
    :func:`create_model`."""
    model = InternImage(_variant(name), out_indices=out_indices, **overrides)
    if pretrained is not None:
        load_pretrained(model, pretrained, strict=strict, head="drop", use_ema=use_ema, trusted=trusted)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
