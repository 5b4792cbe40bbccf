"""UperNet decode head (pyramid pooling on the last level + FPN fusion of every level) and the FCN
auxiliary head, as the official InternImage ADE20K recipe uses them (docs/pretraining_2d.md).

Both heads map a list of NCHW backbone levels to class logits at the resolution of their finest input;
the segmentor upsamples the logits to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.engine.registry import MODELS

__all__ = ["ConvBNReLU", "FCNHead", "PyramidPoolingModule", "UPerHead"]


def resize_bilinear(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with ``align_corners=False``, the convention of the whole segmentation model."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: the norm has one) -> BatchNorm -> ReLU. Configs with ``sync_bn`` turn the norms
    into SyncBatchNorm on GPUs (docs/distributed.md)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _ClassifierMixin(nn.Module):
    """The classification layer every head ends with: Dropout2d then a 1x1 conv to the classes."""

    def _build_classifier(self, channels: int, num_classes: int, dropout: float) -> None:
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def classify(self, features: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(features))


class PyramidPoolingModule(nn.Module):
    """PSPNet pooling: the map average-pooled to each ``pool_scales`` grid, projected by a 1x1
    ConvBNReLU and upsampled back; returns the upsampled maps (the caller concatenates them)."""

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvBNReLU(in_channels, channels, 1)) for scale in pool_scales)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [resize_bilinear(stage(x), x.shape[-2:]) for stage in self.stages]


@MODELS.register_module()
class UPerHead(_ClassifierMixin):
    """UperNet: PPM on the last level, top-down FPN over all levels, 3x3 fusion of the upsampled
    pyramid, then the classifier (logits at the first level's resolution, stride 4 for InternImage).

    Args:
        in_channels: channels of each input level, finest first (InternImage: C, 2C, 4C, 8C).
        channels: width of every intermediate map (512 in the official recipe).
        num_classes: output classes.
        pool_scales: the PPM grids.
        dropout: Dropout2d before the classifier.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        if len(self.in_channels) < 2:
            raise ValueError(f"UPerHead needs at least two input levels, got in_channels={self.in_channels}")
        self.psp_modules = PyramidPoolingModule(self.in_channels[-1], channels, pool_scales)
        self.bottleneck = ConvBNReLU(self.in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(self.in_channels) * channels, channels, 3)
        self._build_classifier(channels, num_classes, dropout)

    def _check(self, inputs: Sequence[Tensor]) -> None:
        got = tuple(x.shape[1] for x in inputs)
        if got != self.in_channels:
            raise ValueError(f"UPerHead: input levels have channels {got}, the head was built for {self.in_channels}")

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        self._check(inputs)
        last = inputs[-1]
        top = self.bottleneck(torch.cat([last, *self.psp_modules(last)], dim=1))
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs[:-1])] + [top]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse maps added into finer ones
            laterals[i - 1] = laterals[i - 1] + resize_bilinear(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([resize_bilinear(x, size) for x in outs], dim=1))
        return self.classify(fused)


@MODELS.register_module()
class FCNHead(_ClassifierMixin):
    """The auxiliary head: ``num_convs`` 3x3 ConvBNReLU on one backbone level, then the classifier.

    Args:
        in_channels: channels of the level it reads.
        in_index: which level of the backbone's outputs (2: stride 16 for InternImage).
        channels, num_classes, dropout: as :class:`UPerHead`.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, in_index: int = 2, num_convs: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels, self.in_index = int(in_channels), int(in_index)
        layers = [ConvBNReLU(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs)]
        self.convs = nn.Sequential(*layers) if layers else nn.Identity()
        self._build_classifier(channels if layers else in_channels, num_classes, dropout)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        if not -len(inputs) <= self.in_index < len(inputs):
            raise ValueError(f"FCNHead: in_index {self.in_index} but the backbone gives {len(inputs)} levels")
        x = inputs[self.in_index]
        if x.shape[1] != self.in_channels:
            raise ValueError(f"FCNHead: level {self.in_index} has {x.shape[1]} channels, expected {self.in_channels}")
        return self.classify(self.convs(x))
