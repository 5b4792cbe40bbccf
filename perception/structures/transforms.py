"""Rigid transforms, quaternions (w, x, y, z as in nuScenes) and yaw helpers, for numpy and torch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _lib(x: Array):
    return torch if isinstance(x, torch.Tensor) else np


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """(w, x, y, z) unit quaternion -> 3x3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> (w, x, y, z) with w >= 0."""
    r = np.asarray(r, dtype=np.float64)
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def yaw_to_quaternion(yaw: float) -> list[float]:
    """Rotation by ``yaw`` about +z as a (w, x, y, z) quaternion."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def make_transform(rotation: Sequence[float] | np.ndarray, translation: Sequence[float]) -> np.ndarray:
    """4x4 from a (w, x, y, z) quaternion or a 3x3 matrix and a translation."""
    rot = np.asarray(rotation, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(rot) if rot.shape == (4,) else rot
    out[:3, 3] = np.asarray(translation, dtype=np.float64)
    return out


def transform_points(matrix: Array, points: Array) -> Array:
    """Apply a (..., 4, 4) rigid transform to (..., N, 3) points."""
    return points @ matrix[..., :3, :3].swapaxes(-1, -2) + matrix[..., None, :3, 3]


def yaw_of_matrix(r: Array) -> Array:
    """Heading of the rotated +x axis, projected onto the xy plane."""
    lib = _lib(r)
    return lib.arctan2(r[..., 1, 0], r[..., 0, 0]) if lib is np else torch.atan2(r[..., 1, 0], r[..., 0, 0])


def wrap_angle(a: Array) -> Array:
    """Wrap to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi
