"""Feature pyramid neck shared by the 2D and BEV models."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FPN"]


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
