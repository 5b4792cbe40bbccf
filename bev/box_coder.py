"""The 10-value regression code of 3D boxes: centre, log size, sin/cos yaw, velocity.

Boxes follow the project convention (x, y, z, w, l, h, yaw, vx, vy) in the key frame's ego frame
(centre, nuScenes size order, yaw from +x towards +y, m/s). The code is
(x, y, z, log w, log l, log h, sin yaw, cos yaw, vx, vy).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CODE_SIZE", "decode_boxes", "encode_boxes"]

CODE_SIZE = 10
_MIN_SIZE = 1e-3


def encode_boxes(boxes: Tensor) -> Tensor:
    """(N, 9) boxes -> (N, 10) codes."""
    if boxes.shape[-1] != 9:
        raise ValueError(f"boxes must end in 9 values (x, y, z, w, l, h, yaw, vx, vy), got {tuple(boxes.shape)}")
    centre, size, yaw, velocity = boxes[..., 0:3], boxes[..., 3:6], boxes[..., 6:7], boxes[..., 7:9]
    return torch.cat([centre, size.clamp(min=_MIN_SIZE).log(), yaw.sin(), yaw.cos(), velocity], dim=-1)


def decode_boxes(codes: Tensor) -> Tensor:
    """(N, 10) codes -> (N, 9) boxes; yaw = atan2(sin, cos) in (-pi, pi]."""
    if codes.shape[-1] != CODE_SIZE:
        raise ValueError(f"codes must end in {CODE_SIZE} values, got {tuple(codes.shape)}")
    yaw = torch.atan2(codes[..., 6:7], codes[..., 7:8])
    return torch.cat([codes[..., 0:3], codes[..., 3:6].exp(), yaw, codes[..., 8:10]], dim=-1)
