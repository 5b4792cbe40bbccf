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
