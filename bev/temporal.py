"""BEVFormer v2 temporal fusion: history BEVs (already in the current ego frame, see
``BEVFormerV2``) are concatenated along channels and fused by residual conv blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ResidualConvFusion", "fill_missing_history"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected when the width changes) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResidualConvFusion(nn.Module):
    """T BEVs (B, C, Nx, Ny) -> one (B, C, Nx, Ny): concat, 3 residual blocks, Linear + LayerNorm."""

    def __init__(self, num_frames: int, embed_dims: int, inter_channels: int | None = None) -> None:
        super().__init__()
        in_channels = num_frames * embed_dims
        inter = inter_channels or in_channels
        self.blocks = nn.Sequential(BasicBlock(in_channels, inter), BasicBlock(inter, inter), BasicBlock(inter, inter))
        self.proj = nn.Linear(inter, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, bevs: list[Tensor]) -> Tensor:
        fused = self.blocks(torch.cat(bevs, dim=1))
        return self.norm(self.proj(fused.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def fill_missing_history(bevs: list[Tensor], valid: Tensor) -> list[Tensor]:
    """Replace each sample's missing history BEV (``valid`` (B, T) False, e.g. before the scene
    start) by the nearest later available one; the current frame (last) is always valid."""
    filled = list(bevs)
    for t in range(len(bevs) - 2, -1, -1):
        keep = valid[:, t].view(-1, 1, 1, 1).to(filled[t].dtype)
        filled[t] = filled[t] * keep + filled[t + 1] * (1 - keep)
    return filled
