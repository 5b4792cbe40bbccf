"""The synthetic world: a procedurally generated nuScenes-format dataset (v1.0-mini tables, 6 camera
JPEGs and a LIDAR_TOP point cloud per key frame) with Occ3D and OpenLane-V2 labels for the same frames."""

from .generator import (
    CAMERA_RIG,
    VERSION,
    WorldConfig,
    camera_intrinsics,
    camera_to_ego,
    generate_world,
    scene_names,
)

__all__ = [
    "CAMERA_RIG",
    "VERSION",
    "WorldConfig",
    "camera_intrinsics",
    "camera_to_ego",
    "generate_world",
    "scene_names",
]
