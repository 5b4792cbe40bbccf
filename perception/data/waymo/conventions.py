"""Waymo Open Dataset conventions and their conversion to ours: the ONE place where Waymo's frames, axes,
box layout, camera and object-type enums meet the project's (docs/waymo.md, "Conventions").

* Vehicle frame: Waymo's vehicle frame is x forward, y left, z up, in metres, like our ego frame
  (docs/architecture.md, "Frames and units"), so the vehicle frame IS our ego frame and
  ``world_from_vehicle`` IS our ``ego2global``.
* Cameras: ``camera_calibration.extrinsic.transform`` maps the camera frame to the vehicle frame, with
  Waymo's camera axes x forward (the optical axis), y left, z up. Our ``cam2ego`` uses OpenCV axes
  (x right, y down, z forward), so ``cam2ego = extrinsic @ WAYMO_CAMERA_FROM_OPENCV``. Intrinsics
  (f_u, f_v, c_u, c_v) give the usual pinhole ``K``; the distortion (k1, k2, p1, p2, k3) is kept as
  OpenCV's order.
* Boxes: Waymo's ``box.size`` is (x, y, z) = (length, width, height) and ``heading`` is measured from +x
  towards +y in the vehicle frame; ours are ``(x, y, z, w, l, h, yaw, vx, vy)``, w across the heading,
  l along it. ``speed.{x, y}`` is the velocity in the vehicle frame (m/s), our (vx, vy).
* Cameras of the rig: five, FRONT, FRONT_LEFT, FRONT_RIGHT (1920x1280) and SIDE_LEFT, SIDE_RIGHT
  (1920x886), named by the ``CameraName`` enum (1..5).
* Object types: 1 VEHICLE, 2 PEDESTRIAN, 3 SIGN, 4 CYCLIST; the camera-only challenge scores vehicles,
  pedestrians and cyclists, our :data:`WAYMO_CLASSES` in label order.
"""

from __future__ import annotations

import numpy as np

# CameraName enum -> name, in the rig order of our infos (the enum order).
CAMERA_NAMES: dict[int, str] = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
CAMERA_IDS: dict[str, int] = {name: cid for cid, name in CAMERA_NAMES.items()}
RIG: tuple[str, ...] = tuple(CAMERA_NAMES.values())
NATIVE_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "FRONT": (1920, 1280),
    "FRONT_LEFT": (1920, 1280),
    "FRONT_RIGHT": (1920, 1280),
    "SIDE_LEFT": (1920, 886),
    "SIDE_RIGHT": (1920, 886),
}

# Label.Type enum.
TYPE_VEHICLE, TYPE_PEDESTRIAN, TYPE_SIGN, TYPE_CYCLIST = 1, 2, 3, 4
TYPE_NAMES: dict[int, str] = {0: "unknown", 1: "vehicle", 2: "pedestrian", 3: "sign", 4: "cyclist"}
# The classes of the camera-only challenge, in our label order; boxes of other types are "ignore".
WAYMO_CLASSES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist")
CLASS_TYPES: dict[str, int] = {"vehicle": TYPE_VEHICLE, "pedestrian": TYPE_PEDESTRIAN, "cyclist": TYPE_CYCLIST}

# Waymo camera axes (x forward, y left, z up) <- OpenCV camera axes (x right, y down, z forward).
WAYMO_CAMERA_FROM_OPENCV = np.array(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def transform_from_row_major(values) -> np.ndarray:
    """A Waymo ``*.transform`` (16 numbers, row-major) as a 4x4 float64 matrix."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != 16:
        raise ValueError(f"a Waymo transform has 16 values (row-major 4x4), got {arr.size}")
    return arr.reshape(4, 4)


def cam2ego_from_extrinsic(extrinsic: np.ndarray) -> np.ndarray:
    """Our ``cam2ego`` (OpenCV camera axes) from a Waymo camera->vehicle extrinsic (Waymo camera axes)."""
    return np.asarray(extrinsic, dtype=np.float64) @ WAYMO_CAMERA_FROM_OPENCV


def extrinsic_from_cam2ego(cam2ego: np.ndarray) -> np.ndarray:
    """The inverse of :func:`cam2ego_from_extrinsic` (used to write Waymo-format calibrations)."""
    return np.asarray(cam2ego, dtype=np.float64) @ np.linalg.inv(WAYMO_CAMERA_FROM_OPENCV)


def intrinsics_matrix(f_u: float, f_v: float, c_u: float, c_v: float) -> np.ndarray:
    """3x3 pinhole matrix of ``camera_calibration.intrinsic.{f_u, f_v, c_u, c_v}`` (pixels)."""
    return np.array([[f_u, 0.0, c_u], [0.0, f_v, c_v], [0.0, 0.0, 1.0]])


def boxes_from_waymo(center: np.ndarray, size_lwh: np.ndarray, heading: np.ndarray,
                     speed_xy: np.ndarray | None = None) -> np.ndarray:
    """(N, 9) boxes of ours from Waymo box columns (vehicle frame): centre (N, 3), size (N, 3) as
    (length, width, height), heading (N,), speed (N, 2) (zeros when None; NaN speeds become 0)."""
    center = np.asarray(center, dtype=np.float64).reshape(-1, 3)
    size = np.asarray(size_lwh, dtype=np.float64).reshape(-1, 3)
    heading = np.asarray(heading, dtype=np.float64).reshape(-1)
    speed = np.zeros((len(center), 2)) if speed_xy is None else np.asarray(speed_xy, np.float64).reshape(-1, 2)
    return np.concatenate([center, size[:, [1, 0, 2]], heading[:, None], np.nan_to_num(speed)], 1)


def boxes_to_waymo(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of :func:`boxes_from_waymo`: ``center`` (N, 3), ``size`` (N, 3) (length, width,
    height), ``heading`` (N,) wrapped to [-pi, pi), ``speed`` (N, 2) (zeros for 7-column boxes)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    boxes = boxes.reshape(0, 9) if boxes.size == 0 else np.atleast_2d(boxes)
    speed = boxes[:, 7:9] if boxes.shape[1] >= 9 else np.zeros((len(boxes), 2))
    heading = (boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi
    return dict(center=boxes[:, :3].copy(), size=boxes[:, [4, 3, 5]].copy(), heading=heading, speed=speed.copy())


def class_name_of_type(type_id: int) -> str:
    """Our class name of a Waymo ``Label.Type`` value, or ``"ignore"`` (signs, unknown)."""
    name = TYPE_NAMES.get(int(type_id), "unknown")
    return name if name in WAYMO_CLASSES else "ignore"
