"""Batched 3D boxes ``(x, y, z, w, l, h, yaw, vx, vy)`` (see the package docstring) on numpy or torch.

Boxes are plain (N, 9) arrays/tensors (7 columns are accepted where velocity is not needed), so they
collate, slice and move between devices without a wrapper class.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .transforms import Array, _lib, yaw_of_matrix

BOX_DIM = 9
# Unit corners in box coordinates, ordered like the nuScenes devkit's Box.corners():
# 4 front corners (x = +l/2) top-left, top-right, bottom-right, bottom-left, then the 4 rear ones.
_UNIT_CORNERS = (
    np.array(
        [
            [1, 1, 1],
            [1, -1, 1],
            [1, -1, -1],
            [1, 1, -1],
            [-1, 1, 1],
            [-1, -1, 1],
            [-1, -1, -1],
            [-1, 1, -1],
        ],
        dtype=np.float64,
    )
    * 0.5
)


def _as_like(values: np.ndarray, like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return values.astype(like.dtype if like.dtype.kind == "f" else np.float64)


def box_corners(boxes: Array) -> Array:
    """(N, 8, 3) corners of (N, >=7) boxes; l along the heading (box x), w across (box y)."""
    lib = _lib(boxes)
    unit = _as_like(_UNIT_CORNERS, boxes)
    # (w, l, h) -> scale box x by l, y by w, z by h.
    dims = lib.stack([boxes[:, 4], boxes[:, 3], boxes[:, 5]], -1)
    local = unit[None] * dims[:, None, :]
    c, s = lib.cos(boxes[:, 6]), lib.sin(boxes[:, 6])
    x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None]
    y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None]
    return lib.stack([x, y, local[..., 2]], -1) + boxes[:, None, :3]


def box_bev_corners(boxes: Array) -> Array:
    """(N, 4, 2) BEV footprint, counter-clockwise: front-left, rear-left, rear-right, front-right."""
    corners = box_corners(boxes)
    return corners[:, [0, 4, 5, 1], :2]


def transform_boxes(boxes: Array, matrix: Array) -> Array:
    """Carry (N, 7 or 9) boxes through a rigid 4x4 transform (heading and velocity rotate with it).

    Only the rotation's heading component changes yaw, as nuScenes boxes are upright.
    """
    lib = _lib(boxes)
    if float(matrix[2, 2]) < 0.9:
        raise ValueError(
            "transform_boxes needs an upright transform (rotation mostly about z); carry corner points "
            "with transform_points into camera frames"
        )
    matrix = (
        _as_like(np.asarray(matrix, dtype=np.float64), boxes)
        if not isinstance(matrix, type(boxes))
        else matrix
    )
    out = boxes.clone() if lib is torch else boxes.copy()
    out[:, :3] = boxes[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
    out[:, 6] = boxes[:, 6] + yaw_of_matrix(matrix[:3, :3])
    if boxes.shape[1] >= 9:
        vel = lib.concatenate if lib is np else torch.cat
        v3 = vel([boxes[:, 7:9], boxes[:, 7:8] * 0], 1)
        out[:, 7:9] = (v3 @ matrix[:3, :3].T)[:, :2]
    return out


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(P, B) bool: point p lies inside box b (boxes (B, >=7), numpy)."""
    rel = points[:, None, :3] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    local_x = rel[..., 0] * c + rel[..., 1] * s
    local_y = -rel[..., 0] * s + rel[..., 1] * c
    return (
        (np.abs(local_x) <= boxes[:, 4] / 2 + margin)
        & (np.abs(local_y) <= boxes[:, 3] / 2 + margin)
        & (np.abs(rel[..., 2]) <= boxes[:, 5] / 2 + margin)
    )


@numba.njit(cache=True)
def _polygon_area(poly: np.ndarray, n: int) -> float:
    area = 0.0
    for i in range(n):
        j = (i + 1) % n
        area += poly[i, 0] * poly[j, 1] - poly[j, 0] * poly[i, 1]
    return abs(area) * 0.5


@numba.njit(cache=True)
def _convex_intersection_area(a: np.ndarray, b: np.ndarray) -> float:
    """Sutherland-Hodgman clipping of convex CCW polygon a by convex CCW polygon b."""
    out = np.empty((16, 2))
    out[:4] = a
    n = 4
    tmp = np.empty((16, 2))
    for e in range(4):
        p, q = b[e], b[(e + 1) % 4]
        m = 0
        for i in range(n):
            cur, nxt = out[i], out[(i + 1) % n]
            side_cur = (q[0] - p[0]) * (cur[1] - p[1]) - (q[1] - p[1]) * (cur[0] - p[0])
            side_nxt = (q[0] - p[0]) * (nxt[1] - p[1]) - (q[1] - p[1]) * (nxt[0] - p[0])
            if side_cur >= 0:
                tmp[m] = cur
                m += 1
            if side_cur * side_nxt < 0:
                t = side_cur / (side_cur - side_nxt)
                tmp[m] = cur + t * (nxt - cur)
                m += 1
        n = m
        if n == 0:
            return 0.0
        out[:n] = tmp[:n]
    return _polygon_area(out, n)


@numba.njit(cache=True)
def _bev_iou_matrix(pa: np.ndarray, pb: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    iou = np.zeros((pa.shape[0], pb.shape[0]))
    for i in range(pa.shape[0]):
        for j in range(pb.shape[0]):
            inter = _convex_intersection_area(pa[i], pb[j])
            union = area_a[i] + area_b[j] - inter
            iou[i, j] = inter / union if union > 0 else 0.0
    return iou


def boxes_bev_iou(boxes_a: Array, boxes_b: Array) -> Array:
    """(A, B) rotated IoU of the BEV footprints (numba; torch inputs are computed on the CPU)."""
    is_torch = isinstance(boxes_a, torch.Tensor)
    a = boxes_a.detach().cpu().double().numpy() if is_torch else np.asarray(boxes_a, dtype=np.float64)
    b = boxes_b.detach().cpu().double().numpy() if is_torch else np.asarray(boxes_b, dtype=np.float64)
    pa = np.ascontiguousarray(box_bev_corners(a))
    pb = np.ascontiguousarray(box_bev_corners(b))
    iou = _bev_iou_matrix(pa, pb, a[:, 3] * a[:, 4], b[:, 3] * b[:, 4])
    return torch.as_tensor(iou, dtype=boxes_a.dtype, device=boxes_a.device) if is_torch else iou


@numba.njit(cache=True)
def _bev_intersection_matrix(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    inter = np.zeros((pa.shape[0], pb.shape[0]))
    for i in range(pa.shape[0]):
        for j in range(pb.shape[0]):
            inter[i, j] = _convex_intersection_area(pa[i], pb[j])
    return inter


def boxes_iou_3d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) rotated 3D IoU of upright boxes (numpy, >= 7 columns): BEV footprint intersection times the
    overlap of the z extents, over the union of the volumes."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, np.shape(boxes_a)[-1])
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, np.shape(boxes_b)[-1])
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    footprint = _bev_intersection_matrix(np.ascontiguousarray(box_bev_corners(a)),
                                         np.ascontiguousarray(box_bev_corners(b)))
    top = np.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bottom = np.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    inter = footprint * np.clip(top - bottom, 0.0, None)
    volume_a, volume_b = a[:, 3] * a[:, 4] * a[:, 5], b[:, 3] * b[:, 4] * b[:, 5]
    union = volume_a[:, None] + volume_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def bev_aug_matrix(
    rotation: float = 0.0, scale: float = 1.0, flip_x: bool = False, flip_y: bool = False
) -> np.ndarray:
    """4x4 ego -> augmented ego: rotate about z, scale (x, y, z), then mirror x and/or y."""
    c, s = np.cos(rotation), np.sin(rotation)
    mat = np.eye(4)
    mat[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) * scale
    mirror = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
    return mirror @ mat


def affine_transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Carry (N, 7 or 9) boxes through a BEV similarity transform (rotation about z, uniform scale,
    mirrors), e.g. :func:`bev_aug_matrix`. Sizes scale, heading and velocity map like vectors."""
    boxes = np.asarray(boxes, dtype=np.float64)
    lin = matrix[:3, :3]
    scale = float(np.cbrt(abs(np.linalg.det(lin))))
    out = boxes.copy()
    out[:, :3] = boxes[:, :3] @ lin.T + matrix[:3, 3]
    out[:, 3:6] = boxes[:, 3:6] * scale
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], 1) @ lin[:2, :2].T
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    if boxes.shape[1] >= 9:
        out[:, 7:9] = boxes[:, 7:9] @ lin[:2, :2].T
    return out
