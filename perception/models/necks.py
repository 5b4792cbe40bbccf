"""Necks shared by the 2D and BEV models: the feature pyramid and the channel mapper of DETR-style heads."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FPN", "ChannelMapper"]


class FPN(nn.Module):
    """Feature pyramid network (lateral 1x1, top-down nearest upsampling, 3x3 output convs).

    Extra levels beyond the inputs come from stride-2 3x3 convs on the previous output, so a
    backbone with strides 4..32 and ``num_outs=5, start_level=1`` yields strides 8..128.
    """

    def __init__(self, in_channels: list[int], out_channels: int, num_outs: int, start_level: int = 0) -> None:
        super().__init__()
        used = list(in_channels[start_level:])
        if num_outs < len(used):
            raise ValueError(f"num_outs ({num_outs}) must be >= the number of used inputs ({len(used)})")
        self.start_level, self.num_outs, self.out_channels = start_level, num_outs, out_channels
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in used)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in used)
        self.extra_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
                                         for _ in range(num_outs - len(used)))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        inputs = features[self.start_level:]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        for conv in self.extra_convs:
            outs.append(conv(outs[-1]))
        return outs


class ChannelMapper(nn.Module):
    """Each input level mapped to ``out_channels`` by a 1x1 conv + GroupNorm, plus ``extra_levels`` maps made
    by stride-2 3x3 convs + GroupNorm, the first on the last *input* level, the next on the previous extra
    one (DINO-4scale: backbone strides 8, 16, 32 plus one extra level at stride 64; no activation)."""

    def __init__(self, in_channels: list[int], out_channels: int, extra_levels: int = 1, num_groups: int = 32) -> None:
        super().__init__()
        if out_channels % num_groups:
            raise ValueError(f"ChannelMapper: out_channels ({out_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.out_channels = out_channels
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1), nn.GroupNorm(num_groups, out_channels)) for c in in_channels)
        extra_in = [in_channels[-1]] + [out_channels] * (extra_levels - 1)
        self.extra_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 3, stride=2, padding=1), nn.GroupNorm(num_groups, out_channels))
            for c in extra_in[:extra_levels])

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        outs = [conv(x) for conv, x in zip(self.convs, features, strict=True)]
        source = features[-1]
        for conv in self.extra_convs:
            source = conv(source)
            outs.append(source)
        return outs
