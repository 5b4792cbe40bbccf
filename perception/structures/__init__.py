"""Geometry and data structures shared by every task: the one coordinate convention of the stack.

Frames (all right-handed, metres, seconds):

* **global** -- the nuScenes map frame of a log. Only the evaluation and the data converters see it.
* **ego** -- the ego pose of the sample's LIDAR_TOP ``sample_data`` (the *key frame*): x forward,
  y left, z up, origin on the ground under the rear axle. Every BEV task (detection, Occ3D
  occupancy, OpenLane-V2 lanes) works in this frame. ``ego2global`` (4x4) maps ego points to global.
* **lidar** -- the LIDAR_TOP sensor frame. Only read when converting info files of other codebases;
  never used inside models.
* **camera** -- OpenCV: x right, y down, z forward. ``cam2ego`` (4x4) maps camera points to ego.
* **image** -- pixels (u right, v down) of the image the network sees. ``ego2img = K4 @ inv(cam2ego)``
  with every image augmentation (resize, crop, flip) already folded into it.

3D boxes are rows ``(x, y, z, w, l, h, yaw, vx, vy)``: (x, y, z) the box centre; (w, l, h) in the
nuScenes ``wlh`` order, *l along the heading, w across it*; ``yaw`` the heading angle measured from +x
towards +y (the native nuScenes yaw, no mmdet3d ``-yaw - pi/2``); (vx, vy) velocity in m/s in the same
frame. Conversions to and from nuScenes global boxes live in :mod:`perception.structures.nuscenes_boxes`
and nowhere else. Camera order: FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT.
"""

from .bev_grid import BEVGrid
from .boxes import (
    BOX_DIM,
    affine_transform_boxes,
    bev_aug_matrix,
    box_bev_corners,
    box_corners,
    boxes_bev_iou,
    points_in_boxes,
    transform_boxes,
)
from .cameras import (
    CAMERA_NAMES,
    compose_ego2img,
    image_aug_matrix,
    intrinsics_to_4x4,
    project_points,
)
from .classes import (
    DETECTION_CLASS_TO_OCC,
    DETECTION_CLASSES,
    NUSCENES_CATEGORY_TO_DETECTION,
    OCC3D_CLASSES,
    OCC_FREE,
)
from .nuscenes_boxes import ego_boxes_to_global, global_boxes_to_ego
from .transforms import (
    make_transform,
    quaternion_to_matrix,
    rotation_z,
    transform_points,
    yaw_to_quaternion,
)

__all__ = [
    "BEVGrid",
    "affine_transform_boxes",
    "bev_aug_matrix",
    "BOX_DIM",
    "box_bev_corners",
    "box_corners",
    "boxes_bev_iou",
    "points_in_boxes",
    "transform_boxes",
    "CAMERA_NAMES",
    "compose_ego2img",
    "image_aug_matrix",
    "intrinsics_to_4x4",
    "project_points",
    "DETECTION_CLASSES",
    "DETECTION_CLASS_TO_OCC",
    "NUSCENES_CATEGORY_TO_DETECTION",
    "OCC3D_CLASSES",
    "OCC_FREE",
    "ego_boxes_to_global",
    "global_boxes_to_ego",
    "make_transform",
    "quaternion_to_matrix",
    "rotation_z",
    "transform_points",
    "yaw_to_quaternion",
]
