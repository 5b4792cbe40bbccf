"""Conversions between our ego-frame boxes and nuScenes global boxes -- the only place that does it.

nuScenes global box: translation (3), size (w, l, h), rotation quaternion (w, x, y, z) of an upright
box (its yaw about +z), velocity (vx, vy) in the global frame.
"""

from __future__ import annotations

import numpy as np

from .transforms import matrix_to_quaternion, quaternion_to_matrix, rotation_z, yaw_to_quaternion


def ego_boxes_to_global(boxes: np.ndarray, ego2global: np.ndarray) -> list[dict]:
    """(N, 9) ego boxes -> list of dicts {translation, size, rotation, velocity} in the global frame."""
    boxes = np.asarray(boxes, dtype=np.float64)
    rot = ego2global[:3, :3]
    out = []
    for box in boxes:
        centre = rot @ box[:3] + ego2global[:3, 3]
        heading = rot @ rotation_z(box[6])
        yaw = float(np.arctan2(heading[1, 0], heading[0, 0]))
        vel = rot @ np.array([box[7], box[8], 0.0]) if boxes.shape[1] >= 9 else np.zeros(3)
        out.append(
            dict(
                translation=centre.tolist(),
                size=box[3:6].tolist(),
                rotation=yaw_to_quaternion(yaw),
                velocity=vel[:2].tolist(),
            )
        )
    return out


def global_boxes_to_ego(
    translations: np.ndarray,
    sizes: np.ndarray,
    rotations: np.ndarray,
    velocities: np.ndarray | None,
    ego2global: np.ndarray,
) -> np.ndarray:
    """nuScenes global boxes (arrays (N,3), (N,3) wlh, (N,4) wxyz, (N,2 or 3)) -> (N, 9) ego boxes.

    NaN velocities (the devkit's answer for single-annotation instances) become 0.
    """
    n = len(translations)
    out = np.zeros((n, 9))
    if n == 0:
        return out
    global2ego = np.linalg.inv(ego2global)
    rot = global2ego[:3, :3]
    out[:, :3] = np.asarray(translations, dtype=np.float64) @ rot.T + global2ego[:3, 3]
    out[:, 3:6] = np.asarray(sizes, dtype=np.float64)
    for i, q in enumerate(np.asarray(rotations, dtype=np.float64)):
        heading = rot @ quaternion_to_matrix(q)
        out[i, 6] = np.arctan2(heading[1, 0], heading[0, 0])
    if velocities is not None:
        vel = np.nan_to_num(np.asarray(velocities, dtype=np.float64)[:, :2])
        vel3 = np.concatenate([vel, np.zeros((n, 1))], 1)
        out[:, 7:9] = (vel3 @ rot.T)[:, :2]
    return out


__all__ = ["ego_boxes_to_global", "global_boxes_to_ego", "matrix_to_quaternion"]
