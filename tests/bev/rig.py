"""A hand-built 6-camera rig and a tiny BEVFormer v2 for the bev tests."""

from __future__ import annotations

import math

import torch

from backbones import InternImage
from bev.detection_head import BEVDetectionHead
from bev.encoder import BEVEncoder
from bev.model import BEVFormerV2
from bev.perspective_head import PerspectiveHead
from perception.models.necks import FPN
from perception.structures.bev_grid import BEVGrid

IMAGE_H, IMAGE_W, FOCAL = 64, 96, 50.0
CAMERA_YAWS_DEG = (0, -60, 60, 180, 120, -120)  # FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT
CAMERA_HEIGHT = 1.5


def small_grid() -> BEVGrid:
    return BEVGrid(x_range=(-20.0, 20.0), y_range=(-20.0, 20.0), z_range=(-3.0, 5.0), resolution=2.0)


def intrinsics() -> torch.Tensor:
    return torch.tensor([[FOCAL, 0, IMAGE_W / 2], [0, FOCAL, IMAGE_H / 2], [0, 0, 1.0]])


def cam2ego(yaw_deg: float, x: float = 1.0) -> torch.Tensor:
    """Camera at (x, 0, 1.5) looking along ego yaw ``yaw_deg``; camera axes x right, y down, z forward."""
    yaw = math.radians(yaw_deg)
    forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
    down = torch.tensor([0.0, 0.0, -1.0])
    pose = torch.eye(4)
    pose[:3, :3] = torch.stack([right, down, forward], dim=1)
    pose[:3, 3] = torch.tensor([x, 0.0, CAMERA_HEIGHT])
    return pose


def rig_ego2img(batch: int = 1, frames: int = 1, yaws=CAMERA_YAWS_DEG) -> torch.Tensor:
    k4 = torch.eye(4)
    k4[:3, :3] = intrinsics()
    mats = torch.stack([k4 @ torch.linalg.inv(cam2ego(y)) for y in yaws])
    return mats.expand(batch, frames, -1, -1, -1).clone()


def tiny_model(num_frames: int = 1, hybrid_queries: int = 0, group_detr: int = 1, seed: int = 0) -> BEVFormerV2:
    torch.manual_seed(seed)
    grid = small_grid()
    dims = 32
    return BEVFormerV2(
        backbone=InternImage("t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8)),
        neck=FPN([16, 32, 64, 128], dims, num_outs=4, start_level=1),
        encoder=BEVEncoder(grid, embed_dims=dims, num_layers=1, num_heads=4, num_levels=3, ffn_dims=64, dropout=0.0),
        head=BEVDetectionHead(grid, embed_dims=dims, num_queries=16, num_layers=2, num_heads=4, ffn_dims=64,
                              dropout=0.0, group_detr=group_detr),
        perspective_head=PerspectiveHead(in_channels=dims, strides=(8, 16, 32, 64), size_ranges=(-1, 16, 32, 64, 1e8)),
        num_frames=num_frames, hybrid_queries=hybrid_queries, bev_levels=3)
