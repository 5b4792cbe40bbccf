"""The synthetic world: a procedurally generated nuScenes-format dataset (v1.0-mini tables, 6 camera
JPEGs and a LIDAR_TOP point cloud per key frame) with Occ3D and OpenLane-V2 labels for the same frames, and
COCO / ADE20K-format 2D sets of its camera images (sets2d.py)."""

from .generator import (
    CAMERA_RIG,
    VERSION,
    WorldConfig,
    camera_intrinsics,
    camera_to_ego,
    generate_world,
    scene_names,
)
from .sets2d import Synthetic2DConfig, generate_2d_sets

__all__ = [
    "CAMERA_RIG",
    "Synthetic2DConfig",
    "VERSION",
    "WorldConfig",
    "camera_intrinsics",
    "camera_to_ego",
    "generate_2d_sets",
    "generate_world",
    "scene_names",
]
