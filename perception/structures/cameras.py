"""Camera rigs: intrinsics, cam2ego, ego2img, projection and image-augmentation matrices.

A rig is named by its info files (``metadata['cameras']``, ``metadata['image_sizes']``); nothing
downstream assumes a camera count or one image size. :data:`CAMERA_NAMES` is the nuScenes rig only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .transforms import Array

# The nuScenes rig, in the project's camera order.
CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)


def rig_camera_order(channels: Iterable[str]) -> list[str]:
    """The camera order of a rig from its camera channels: the nuScenes order when the six nuScenes
    channels are present (any further channels follow in their given order), else the given order."""
    channels = list(dict.fromkeys(channels))
    if set(CAMERA_NAMES) <= set(channels):
        return list(CAMERA_NAMES) + [c for c in channels if c not in CAMERA_NAMES]
    return channels


def intrinsics_to_4x4(intrinsics: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = intrinsics
    return out


def compose_ego2img(
    intrinsics: np.ndarray, cam2ego: np.ndarray, img_aug: np.ndarray | None = None
) -> np.ndarray:
    """ego2img = A · K4 · inv(cam2ego), A the 4x4 image-augmentation matrix (identity if None)."""
    mat = intrinsics_to_4x4(intrinsics) @ np.linalg.inv(cam2ego)
    return mat if img_aug is None else img_aug @ mat


def image_aug_matrix(
    scale: float | tuple[float, float] = 1.0,
    crop: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
    out_width: float | None = None,
) -> np.ndarray:
    """4x4 acting on projected points ``(u*d, v*d, d, 1)``: resize by ``scale`` (or (sx, sy)), crop at
    (x0, y0), then (optionally) flip horizontally inside an image ``out_width`` wide.

    Pixel offsets scale with the depth d, so they sit in column 2. Continuous pixel coordinates are used
    (pixel i spans [i, i+1)): resizing maps u to s*u, the flip maps u to ``out_width - u``.
    """
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    mat = np.diag([sx, sy, 1.0, 1.0])
    mat[0, 2] -= crop[0]
    mat[1, 2] -= crop[1]
    if flip:
        if out_width is None:
            raise ValueError("image_aug_matrix(flip=True) needs out_width")
        f = np.eye(4)
        f[0, 0], f[0, 2] = -1.0, out_width
        mat = f @ mat
    return mat


def project_points(ego2img: Array, points: Array, eps: float = 1e-5) -> tuple[Array, Array]:
    """Project (..., N, 3) ego points with (..., 4, 4) ego2img -> pixels (..., N, 2), depth (..., N)."""
    if isinstance(points, torch.Tensor):
        homo = torch.cat([points, torch.ones_like(points[..., :1])], -1)
        cam = homo @ ego2img.transpose(-1, -2)
        depth = cam[..., 2]
        return cam[..., :2] / depth.clamp(min=eps)[..., None], depth
    # Contiguous operands keep numpy on its BLAS path (a transposed view falls back to a slow loop).
    rot = np.ascontiguousarray(np.swapaxes(ego2img[..., :3, :3], -1, -2))
    cam = np.ascontiguousarray(points) @ rot + ego2img[..., None, :3, 3]
    depth = cam[..., 2]
    return cam[..., :2] / np.maximum(depth, eps)[..., None], depth
