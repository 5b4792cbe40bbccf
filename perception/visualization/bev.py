"""Bird's-eye-view panel: boxes, headings and velocity arrows in the ego frame (x forward = up)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.boxes import box_bev_corners

from .style import BEV_BACKGROUND, EGO_COLOR, GRID_COLOR, LANE_COLOR, TEXT_COLOR, font


class BEVCanvas:
    """Maps ego (x, y) metres to panel pixels: x forward points up, y left points left."""

    def __init__(self, size: int, half_range: float) -> None:
        self.size, self.half_range = size, half_range
        self.ppm = size / (2 * half_range)  # pixels per metre

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([self.size / 2 - xy[..., 1] * self.ppm, self.size / 2 - xy[..., 0] * self.ppm], -1)


def _arrow(draw: ImageDraw.ImageDraw, start: np.ndarray, end: np.ndarray, color, width: int) -> None:
    draw.line([tuple(start), tuple(end)], fill=color, width=width)
    direction = end - start
    length = np.linalg.norm(direction)
    if length < 3:
        return
    d = direction / length
    normal = np.array([-d[1], d[0]])
    head = min(8.0, 0.4 * length)
    left, right = end - d * head + normal * head * 0.5, end - d * head - normal * head * 0.5
    draw.polygon([tuple(end), tuple(left), tuple(right)], fill=color)


def draw_bev_panel(
    size: int = 600,
    half_range: float = 50.0,
    layers: Sequence[tuple[np.ndarray, tuple[int, int, int], Sequence[str] | None]] = (),
    title: str | None = None,
    velocity_seconds: float = 1.0,
    lanes: Sequence[np.ndarray] | None = None,
) -> tuple[Image.Image, BEVCanvas]:
    """``layers``: (boxes (N, 9) ego frame, colour, names or None); ``lanes``: (P, 3) ego-frame polylines
    drawn underneath. Boxes are outlines with a heading line
    from the centre to the front edge; velocity arrows show ``velocity_seconds`` of motion."""
    canvas = BEVCanvas(size, half_range)
    image = Image.new("RGB", (size, size), BEV_BACKGROUND)
    draw = ImageDraw.Draw(image)
    small = font(11)
    for r in range(10, int(half_range * 1.5) + 1, 10):  # range rings every 10 m
        c = canvas.to_pixels(np.zeros(2))
        rad = r * canvas.ppm
        draw.ellipse([c[0] - rad, c[1] - rad, c[0] + rad, c[1] + rad], outline=GRID_COLOR)
        draw.text((c[0] + 3, c[1] - rad + 1), f"{r} m", fill=GRID_COLOR, font=small)
    for lane in lanes if lanes is not None else ():  # directed centerlines: a dot marks the start
        pts = canvas.to_pixels(np.asarray(lane)[:, :2])
        draw.line([tuple(p) for p in pts], fill=LANE_COLOR, width=1)
        draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=LANE_COLOR)
    ego = canvas.to_pixels(np.array([[2.4, 0.95], [2.4, -0.95], [-2.4, -0.95], [-2.4, 0.95]]))
    draw.polygon([tuple(p) for p in ego], outline=EGO_COLOR, width=2)
    draw.line(
        [tuple(canvas.to_pixels(np.zeros(2))), tuple(canvas.to_pixels(np.array([2.4, 0.0])))],
        fill=EGO_COLOR,
        width=2,
    )
    for boxes, color, _names in layers:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
        if not len(boxes):
            continue
        polys = canvas.to_pixels(box_bev_corners(boxes))
        for i, box in enumerate(boxes):
            draw.polygon([tuple(p) for p in polys[i]], outline=color, width=2)
            centre = canvas.to_pixels(box[:2])
            front = canvas.to_pixels(box[:2] + 0.5 * box[4] * np.array([np.cos(box[6]), np.sin(box[6])]))
            draw.line([tuple(centre), tuple(front)], fill=color, width=2)
            if np.hypot(box[7], box[8]) > 0.2:
                _arrow(
                    draw, centre, canvas.to_pixels(box[:2] + box[7:9] * velocity_seconds), (255, 210, 0), 1
                )
    if title:
        draw.text((8, 6), title, fill=TEXT_COLOR, font=font(14))
    return image, canvas
