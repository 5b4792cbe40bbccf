"""Independent truth helpers for the perception tests (devkit projections + shapely)."""

from __future__ import annotations

import numpy as np
from nuscenes.utils.geometry_utils import BoxVisibility, view_points


def unoccluded_boxes(nusc, sd_token: str, min_depth: float = 2.0):
    """Fully visible annotated boxes whose centre pixel no nearer annotated box covers, judged with the
    devkit's projection and shapely hulls of projected corners (independent of the renderer)."""
    from shapely.geometry import MultiPoint, Point

    path, boxes, intrinsic = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ANY)
    in_front = [b for b in boxes if (b.corners()[2] > 0.5).all()]
    full = {b.token for b in nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ALL)[1]}
    found = []
    for box in sorted(in_front, key=lambda b: b.center[2]):
        if box.token not in full or box.center[2] < min_depth:
            continue
        u, v = view_points(box.center[:, None], intrinsic, normalize=True)[:2, 0]
        near = box.corners()[2].min()
        hulls = [
            MultiPoint(view_points(o.corners(), intrinsic, normalize=True)[:2].T).convex_hull
            for o in in_front
            if o.token != box.token and o.corners()[2].min() < near
        ]
        covered = any(h.contains(Point(u, v)) for h in hulls)
        if not covered:
            found.append((box, (u, v)))
    return path, found


def chroma(rgb) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb / max(rgb.sum(), 1e-6)


def colour_matches(pixel, reference, tol: float = 0.08) -> bool:
    return bool(np.abs(chroma(pixel) - chroma(reference)).max() < tol)


def bilinear_resample(img: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Float64 bilinear resampling of an (H, W, C) image into ``out_size`` (w, h) through a 4x4 image
    matrix (resize, crop, mirror; ``image_aug_matrix``): output pixel centre u' = j + 0.5 comes from input
    u = (u' - m02) / m00, pixel centres at half-integers, edges clamped (no antialiasing)."""
    def axis(scale: float, shift: float, count: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(count) + 0.5 - shift) / scale - 0.5, 0, length - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, length - 1)
        return lo, hi, src - lo

    (x0, x1, fx), (y0, y1, fy) = (axis(matrix[k, k], matrix[k, 2], out_size[k], img.shape[1 - k]) for k in (0, 1))
    img = img.astype(np.float64)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
