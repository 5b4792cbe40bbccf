"""Projected 3D box wireframes on a camera image (Pillow)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.boxes import box_corners
from perception.structures.cameras import project_points

from .style import font

# Corner order of perception.structures.box_corners: 0-3 front face, 4-7 rear face.
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
NEAR = 0.2


def _clip_to_near(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Clip a camera-frame-like segment (x, y, depth) to depth >= NEAR."""
    if p[2] < NEAR and q[2] < NEAR:
        return None
    if p[2] < NEAR:
        p = p + (q - p) * (NEAR - p[2]) / (q[2] - p[2])
    elif q[2] < NEAR:
        q = q + (p - q) * (NEAR - q[2]) / (p[2] - q[2])
    return p, q


def draw_boxes_on_image(
    image: Image.Image,
    boxes: np.ndarray,
    ego2img: np.ndarray,
    color: tuple[int, int, int],
    names: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    width: int = 2,
    scale: float = 1.0,
) -> Image.Image:
    """Draw (N, >=7) ego-frame boxes projected by ``ego2img`` (then scaled by ``scale`` to the drawn
    image size). The front face gets a cross so the heading is visible; labels sit above the box."""
    draw = ImageDraw.Draw(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, boxes.shape[-1] if len(boxes) else 9)
    if not len(boxes):
        return image
    corners = box_corners(boxes)
    homo = (
        np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], -1) @ np.asarray(ego2img).T
    )  # (N, 8, 4)
    text_font = font(max(10, int(11 * scale**0.5)))
    for i in range(len(boxes)):
        pts = homo[i, :, :3]
        if (pts[:, 2] < NEAR).all():
            continue
        segments = []
        for a, b in EDGES + [(0, 2), (1, 3)]:
            clipped = _clip_to_near(pts[a], pts[b])
            if clipped is not None:
                p, q = clipped
                segments.append((p[:2] / p[2] * scale, q[:2] / q[2] * scale))
        for k, (p, q) in enumerate(segments):
            draw.line([tuple(p), tuple(q)], fill=color, width=width if k < 12 else max(1, width - 1))
        if names is not None and (pts[:, 2] > NEAR).all():
            uv, _ = project_points(np.asarray(ego2img), corners[i])
            top = uv * scale
            if np.ptp(top[:, 1]) < 14:  # too small to carry a readable label without clutter
                continue
            label = names[i] if scores is None else f"{names[i]} {scores[i]:.2f}"
            x, y = float(top[:, 0].min()), float(top[:, 1].min()) - text_font.size - 3
            draw.rectangle(draw.textbbox((x, y), label, font=text_font), fill=(0, 0, 0))
            draw.text((x, y), label, fill=color, font=text_font)
    return image
