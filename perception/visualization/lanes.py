"""Pictures of OpenLane-V2 lane topology (docs/lanes.md, "Lane pictures"): directed centerlines and their
lane -> lane links in a BEV panel, traffic elements and projected centerlines on the front camera image,
GT | prediction comparisons and one GIF per segment. Pillow and numpy only.

A *frame* is the OpenLane-V2 annotation (or prediction) dict: ``lane_centerline`` (list of ``id``,
``points`` (n, 3) ego metres, x forward, y left, directed start -> end, optional ``confidence``),
``traffic_element`` (list of ``id``, ``attribute`` 0..12, ``points`` [[x1, y1], [x2, y2]] front-camera
pixels, optional ``category`` and ``confidence``), ``topology_lclc`` (L, L) (i -> j: the end of lane i
continues into the start of lane j) and ``topology_lcte`` (L, K). A whole frame json (with an ``annotation``
key) or a submission entry (with ``predictions``) is accepted as well.

* BEV: x forward points up, y left points left, over the lane range x in [-50, 50] m, y in [-25, 25] m.
  Each centerline is a polyline in the frame's colour (GT green, predictions magenta) with an arrow head at
  its end; its start vertex is a small circle, its end vertex a small square. A lane -> lane entry of at
  least ``link_threshold`` is a thin cubic curve (``LINK_COLOR``) from the end of i, leaving along i's last
  direction, to the start of j, arriving along j's first direction; when the two points coincide (the
  usual GT case) a small ring marks the junction. A lane -> traffic-element entry puts a dot in the
  element's attribute colour at the lane's middle.
* Camera: traffic elements are box outlines in their attribute colour (``TE_ATTRIBUTE_COLORS``) with a
  short label; centerlines are projected with the 4 x 4 ``ego2img`` after clipping every segment to the
  points in front of the camera (z_cam > ``NEAR_Z``) and then to the image; a thin line joins each element
  to the middle of the visible part of the lanes it controls.
* Predictions: lanes and elements whose ``confidence`` is below ``score_threshold`` are left out, with
  their rows and columns of the topology.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.classes import TRAFFIC_ELEMENT_ATTRIBUTES

from .sample import save_scene_animation
from .style import (
    BEV_BACKGROUND,
    EGO_COLOR,
    GRID_COLOR,
    GT_COLOR,
    LINK_COLOR,
    PRED_COLOR,
    TE_ATTRIBUTE_COLORS,
    TEXT_COLOR,
    font,
)

SHORT_LABELS = (  # the labels drawn next to the boxes
    "?", "red", "green", "yellow", "straight", "left", "right", "no left", "no right", "U", "no U",
    "slight L", "slight R",
)
LANE_X_RANGE, LANE_Y_RANGE = (-50.0, 50.0), (-25.0, 25.0)  # the OpenLane-V2 lane range, ego metres
NEAR_Z = 0.1  # camera-frame depth below which centerline points are clipped away
EGO_LENGTH, EGO_WIDTH = 4.8, 1.9  # the ego outline (as in the box BEV panel), metres
DIM_TEXT = (170, 176, 186)


def attribute_color(attribute: int) -> tuple[int, int, int]:
    """``TE_ATTRIBUTE_COLORS`` of an attribute index; unknown (grey) outside 0..12."""
    a = int(attribute)
    return TE_ATTRIBUTE_COLORS[a] if 0 <= a < len(TE_ATTRIBUTE_COLORS) else TE_ATTRIBUTE_COLORS[0]


def attribute_name(attribute: int) -> str:
    a = int(attribute)
    return TRAFFIC_ELEMENT_ATTRIBUTES[a] if 0 <= a < len(TRAFFIC_ELEMENT_ATTRIBUTES) else f"attribute {a}"


# -- frames -----------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    lanes: list[np.ndarray]  # (n, 3) each
    lane_conf: list[float | None]
    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    attributes: np.ndarray  # (K,)
    te_conf: list[float | None]
    lclc: np.ndarray  # (L, L)
    lcte: np.ndarray  # (L, K)


def _annotation(frame: Mapping) -> Mapping:
    if "lane_centerline" not in frame:
        for key in ("annotation", "predictions"):
            if key in frame:
                return frame[key]
    return frame


def _matrix(ann: Mapping, key: str, rows: int, cols: int) -> np.ndarray:
    value = ann.get(key)
    if value is None:
        return np.zeros((rows, cols))
    m = np.asarray(value, dtype=np.float64)
    if m.size == 0:
        return np.zeros((rows, cols))
    if m.size != rows * cols:
        raise ValueError(f"{key} has shape {m.shape}, expected ({rows}, {cols}) for the frame's lanes/elements")
    return m.reshape(rows, cols)


def _conf(item: Mapping) -> float | None:
    c = item.get("confidence")
    return None if c is None else float(c)


def _parse(frame: Mapping) -> _Frame:
    ann = _annotation(frame)
    lanes_in = list(ann.get("lane_centerline") or [])
    tes = list(ann.get("traffic_element") or [])
    lanes = [np.asarray(lane["points"], dtype=np.float64).reshape(-1, 3) for lane in lanes_in]
    boxes = np.array([np.ravel(np.asarray(t["points"], dtype=np.float64))[:4] for t in tes]).reshape(-1, 4)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    return _Frame(
        lanes=lanes,
        lane_conf=[_conf(lane) for lane in lanes_in],
        boxes=boxes,
        attributes=np.array([int(t.get("attribute", 0)) for t in tes], dtype=np.int64),
        te_conf=[_conf(t) for t in tes],
        lclc=_matrix(ann, "topology_lclc", len(lanes), len(lanes)),
        lcte=_matrix(ann, "topology_lcte", len(lanes), len(tes)),
    )


def select_confident(frame: Mapping, score_threshold: float | None) -> dict:
    """The frame without the lanes and traffic elements whose ``confidence`` is below ``score_threshold``
    (items without a confidence, as in GT, are kept), with the matching rows and columns of
    ``topology_lclc`` and ``topology_lcte``. ``score_threshold`` None keeps everything."""
    ann = _annotation(frame)
    parsed = _parse(ann)

    def keep(confs):
        return np.array([score_threshold is None or c is None or c >= score_threshold for c in confs], bool)

    kl, kt = keep(parsed.lane_conf), keep(parsed.te_conf)
    lanes = [lane for lane, k in zip(ann.get("lane_centerline") or [], kl) if k]
    tes = [t for t, k in zip(ann.get("traffic_element") or [], kt) if k]
    return dict(
        lane_centerline=lanes,
        traffic_element=tes,
        topology_lclc=parsed.lclc[np.ix_(kl, kl)],
        topology_lcte=parsed.lcte[np.ix_(kl, kt)],
    )


def frame_attributes(*frames: Mapping | None, score_threshold: float | None = None) -> list[int]:
    """Sorted attribute indices of the traffic elements of the frames (after ``select_confident``)."""
    found: set[int] = set()
    for f in frames:
        if f is not None:
            found |= {int(a) for a in _parse(select_confident(f, score_threshold)).attributes}
    return sorted(found)


# -- BEV --------------------------------------------------------------------------------------------------
class LaneCanvas:
    """Maps ego (x, y) metres to pixels of a rectangular BEV panel: x forward points up (row 0 at the
    largest x), y left points left (column 0 at the largest y); ``pixels_per_metre`` on both axes."""

    def __init__(
        self,
        x_range: tuple[float, float] = LANE_X_RANGE,
        y_range: tuple[float, float] = LANE_Y_RANGE,
        pixels_per_metre: float = 8.0,
    ) -> None:
        self.x_range, self.y_range, self.ppm = tuple(x_range), tuple(y_range), float(pixels_per_metre)
        self.width = int(round((self.y_range[1] - self.y_range[0]) * self.ppm))
        self.height = int(round((self.x_range[1] - self.x_range[0]) * self.ppm))

    def to_pixels(self, xy) -> np.ndarray:
        """(..., >=2) ego points -> (..., 2) pixel (column u, row v)."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(self.y_range[1] - xy[..., 1]) * self.ppm, (self.x_range[1] - xy[..., 0]) * self.ppm], -1)


def _arrow_head(draw: ImageDraw.ImageDraw, tip: np.ndarray, direction: np.ndarray, color, head: float) -> None:
    """A filled triangle ``head`` pixels long with its tip at ``tip``, pointing along unit ``direction``."""
    tip, d = np.asarray(tip, float), np.asarray(direction, float)
    n = np.array([-d[1], d[0]])
    base = tip - d * head
    draw.polygon([tuple(tip), tuple(base + n * head * 0.5), tuple(base - n * head * 0.5)], fill=color)


def _polyline_length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0


def _last_step(points: np.ndarray, from_end: bool) -> np.ndarray | None:
    """The last (or first) non-degenerate segment direction of a pixel polyline, unit length."""
    pts = points[::-1] if from_end else points
    for k in range(1, len(pts)):
        d = pts[0] - pts[k] if from_end else pts[k] - pts[0]
        n = np.linalg.norm(d)
        if n > 1e-6:
            return d / n
    return None


def _bezier(p0, p1, p2, p3, n: int = 20) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _draw_ego(draw: ImageDraw.ImageDraw, canvas: LaneCanvas) -> None:
    hl, hw = EGO_LENGTH / 2, EGO_WIDTH / 2
    corners = canvas.to_pixels(np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]]))
    draw.polygon([tuple(p) for p in corners], outline=EGO_COLOR, width=2)
    draw.line([tuple(canvas.to_pixels([0.0, 0.0])), tuple(canvas.to_pixels([hl, 0.0]))], fill=EGO_COLOR, width=2)


def _draw_grid(draw: ImageDraw.ImageDraw, canvas: LaneCanvas) -> None:
    small = font(10)
    for x in np.arange(np.ceil(canvas.x_range[0] / 10) * 10, canvas.x_range[1] + 1e-6, 10.0):
        _, v = canvas.to_pixels([x, 0.0])
        draw.line([(0, v), (canvas.width, v)], fill=GRID_COLOR)
        if 0 < v < canvas.height - 12:
            draw.text((3, v + 1), f"{x:g}", fill=GRID_COLOR, font=small)
    for y in np.arange(np.ceil(canvas.y_range[0] / 10) * 10, canvas.y_range[1] + 1e-6, 10.0):
        u, _ = canvas.to_pixels([0.0, y])
        draw.line([(u, 0), (u, canvas.height)], fill=GRID_COLOR)


def draw_lane_bev(
    frame: Mapping,
    color: tuple[int, int, int] = GT_COLOR,
    score_threshold: float | None = None,
    link_threshold: float = 0.5,
    title: str | None = None,
    pixels_per_metre: float = 8.0,
    x_range: tuple[float, float] = LANE_X_RANGE,
    y_range: tuple[float, float] = LANE_Y_RANGE,
) -> tuple[Image.Image, LaneCanvas]:
    """BEV panel of one frame (400 x 800 pixels by default): directed centerlines in ``color`` (arrow head
    at the end, a circle on the start vertex, a square on the end vertex), lane -> lane links of at least
    ``link_threshold``, lane -> element dots, the ego car outline and a 10 m grid. With ``score_threshold``,
    lanes of lower ``confidence`` are left out."""
    f = _parse(select_confident(frame, score_threshold))
    canvas = LaneCanvas(x_range, y_range, pixels_per_metre)
    image = Image.new("RGB", (canvas.width, canvas.height), BEV_BACKGROUND)
    draw = ImageDraw.Draw(image)
    _draw_grid(draw, canvas)
    _draw_ego(draw, canvas)
    pix = [canvas.to_pixels(lane[:, :2]) for lane in f.lanes]
    # Links underneath the lanes.
    for i, j in zip(*np.nonzero(f.lclc >= link_threshold)):
        if i == j or len(pix[i]) == 0 or len(pix[j]) == 0:
            continue
        p0, p3 = pix[i][-1], pix[j][0]
        dist = float(np.linalg.norm(p3 - p0))
        if dist < 3.0:  # end of i on the start of j: a ring around the junction
            draw.ellipse([p0[0] - 6, p0[1] - 6, p0[0] + 6, p0[1] + 6], outline=LINK_COLOR, width=1)
            continue
        d0 = _last_step(pix[i], from_end=True)
        d3 = _last_step(pix[j], from_end=False)
        p1 = p0 + (d0 if d0 is not None else (p3 - p0) / dist) * dist / 3
        p2 = p3 - (d3 if d3 is not None else (p3 - p0) / dist) * dist / 3
        draw.line([tuple(p) for p in _bezier(p0, p1, p2, p3)], fill=LINK_COLOR, width=1)
    for pts in pix:
        if len(pts) >= 2:
            draw.line([tuple(p) for p in pts], fill=color, width=2, joint="curve")
            d = _last_step(pts, from_end=True)
            if d is not None:  # the head ends on the end square, so both show
                _arrow_head(draw, pts[-1] - 4 * d, d, color, min(10.0, 0.5 * _polyline_length(pts)))
        if len(pts):
            s, e = pts[0], pts[-1]
            draw.ellipse([s[0] - 3, s[1] - 3, s[0] + 3, s[1] + 3], outline=color, width=1)
            draw.rectangle([e[0] - 3, e[1] - 3, e[0] + 3, e[1] + 3], outline=color, width=1)
    # Lane -> traffic element: dots in the element's colour at the lane's middle, side by side.
    for i, lane_pts in enumerate(pix):
        linked = np.nonzero(f.lcte[i] >= link_threshold)[0] if f.lcte.shape[1] else []
        if not len(linked) or not len(lane_pts):
            continue
        mid = lane_pts[len(lane_pts) // 2]
        for k, te in enumerate(linked):
            cx, cy = mid[0] + 7 + 7 * k, mid[1]
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=attribute_color(f.attributes[te]))
    if title:
        draw.text((6, 4), title, fill=TEXT_COLOR, font=font(13), stroke_width=2, stroke_fill=(0, 0, 0))
    return image, canvas


# -- camera -----------------------------------------------------------------------------------------------
def _clip_near(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Clip a camera-frame segment to depth > NEAR_Z; the flag says whether q was moved."""
    if p[2] <= NEAR_Z and q[2] <= NEAR_Z:
        return None
    if p[2] <= NEAR_Z:
        p = p + (q - p) * (NEAR_Z + 1e-9 - p[2]) / (q[2] - p[2])
    elif q[2] <= NEAR_Z:
        return p, q + (p - q) * (NEAR_Z + 1e-9 - q[2]) / (p[2] - q[2]), True
    return p, q, False


def _clip_rect(p: np.ndarray, q: np.ndarray, width: float, height: float):
    """Liang-Barsky: the part of segment p -> q inside [0, width] x [0, height] (None when outside), and
    whether q was moved."""
    d = q - p
    t0, t1 = 0.0, 1.0
    for num, den in ((p[0], -d[0]), (width - p[0], d[0]), (p[1], -d[1]), (height - p[1], d[1])):
        if abs(den) < 1e-12:
            if num < 0:
                return None
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return p + t0 * d, p + t1 * d, t1 < 1.0


def project_lane(
    points: np.ndarray, ego2img: np.ndarray, image_size: tuple[int, int], scale: float = 1.0
) -> tuple[list[np.ndarray], bool]:
    """Pixel polylines (runs of (m, 2) points) of an ego-frame centerline projected with ``ego2img`` and
    multiplied by ``scale``: segments are clipped to camera depth > ``NEAR_Z`` and then to the image of
    ``image_size`` (width, height) pixels (after scaling). The flag says whether the lane's end vertex is in
    the picture (the arrow head is drawn only then)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cam = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ np.asarray(ego2img, dtype=np.float64).T
    cam = cam[:, :3]
    runs: list[list[np.ndarray]] = []
    open_run = False
    end_visible = False
    for k in range(len(cam) - 1):
        near = _clip_near(cam[k], cam[k + 1])
        if near is None:
            open_run = False
            continue
        p, q, q_moved = near
        inside = _clip_rect(p[:2] / p[2] * scale, q[:2] / q[2] * scale, *image_size)
        if inside is None:
            open_run = False
            continue
        a, b, b_moved = inside
        if open_run and np.allclose(runs[-1][-1], a):
            runs[-1].append(b)
        else:
            runs.append([a, b])
        open_run = not (q_moved or b_moved)
        end_visible = k == len(cam) - 2 and open_run
    return [np.array(r) for r in runs], end_visible


def _to_rgb(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # a copy, also for RGB input
    return Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")


def draw_lanes_on_image(
    image,
    frame: Mapping,
    ego2img: np.ndarray | None = None,
    color: tuple[int, int, int] = GT_COLOR,
    score_threshold: float | None = None,
    link_threshold: float = 0.5,
    width: int | None = None,
) -> Image.Image:
    """A copy of the front camera ``image`` (PIL or (H, W, 3) uint8), resized to ``width`` pixels when given,
    with the frame's traffic elements (outline in the attribute colour + short label, the confidence for
    predictions) and, with ``ego2img`` (4 x 4, ego -> pixels of the original image), its centerlines in
    ``color``, clipped to the camera's front and to the image, an arrow head where the end is visible. Lane
    -> element entries of at least ``link_threshold`` join the element's box to the lane."""
    picture = _to_rgb(image)
    scale = 1.0
    if width is not None and width != picture.width:
        scale = width / picture.width
        picture = picture.resize((int(width), int(round(picture.height * scale))), Image.BILINEAR)
    f = _parse(select_confident(frame, score_threshold))
    draw = ImageDraw.Draw(picture)
    size = (picture.width, picture.height)
    middles: list[np.ndarray | None] = []
    for lane in f.lanes:
        if ego2img is None:
            middles.append(None)
            continue
        runs, end_visible = project_lane(lane, ego2img, size, scale)
        for run in runs:
            draw.line([tuple(p) for p in run], fill=color, width=2, joint="curve")
        if end_visible and runs:
            d = _last_step(runs[-1], from_end=True)
            if d is not None:
                _arrow_head(draw, runs[-1][-1], d, color, min(10.0, 0.5 * _polyline_length(runs[-1])))
        visible = np.concatenate(runs) if runs else np.zeros((0, 2))
        middles.append(visible[len(visible) // 2] if len(visible) else None)
    boxes = f.boxes * scale
    label_font = font(11)
    for k, box in enumerate(boxes):
        c = attribute_color(f.attributes[k])
        for i in np.nonzero(f.lcte[:, k] >= link_threshold)[0] if len(f.lanes) else []:
            if middles[i] is not None:
                draw.line([((box[0] + box[2]) / 2, box[3]), tuple(middles[i])], fill=c, width=1)
        draw.rectangle([float(v) for v in box], outline=c, width=2)
        a = int(f.attributes[k])
        label = SHORT_LABELS[a] if 0 <= a < len(SHORT_LABELS) else str(a)
        if f.te_conf[k] is not None:
            label = f"{label} {f.te_conf[k]:.2f}"
        x, y = float(box[0]), float(box[1]) - label_font.size - 3
        if y < 0:
            y = float(box[3]) + 2
        draw.rectangle(draw.textbbox((x, y), label, font=label_font), fill=(0, 0, 0))
        draw.text((x, y), label, fill=c, font=label_font)
    return picture


# -- composition ------------------------------------------------------------------------------------------
def _legend(draw: ImageDraw.ImageDraw, x: int, y: int, with_pred: bool, attributes: Sequence[int]) -> None:
    text, head = font(12), font(13)
    draw.text((x, y), "lanes", fill=TEXT_COLOR, font=head)
    y += 20
    entries = [(GT_COLOR, "ground truth")] + ([(PRED_COLOR, "prediction")] if with_pred else [])
    for c, name in entries:
        draw.line([(x, y + 8), (x + 16, y + 8)], fill=c, width=2)
        _arrow_head(draw, np.array([x + 22.0, y + 8.0]), np.array([1.0, 0.0]), c, 8.0)
        draw.text((x + 30, y + 1), name, fill=TEXT_COLOR, font=text)
        y += 19
    draw.ellipse([x + 3, y + 5, x + 9, y + 11], outline=TEXT_COLOR)
    draw.text((x + 30, y + 1), "start vertex", fill=TEXT_COLOR, font=text)
    y += 19
    draw.rectangle([x + 3, y + 5, x + 9, y + 11], outline=TEXT_COLOR)
    draw.text((x + 30, y + 1), "end vertex", fill=TEXT_COLOR, font=text)
    y += 19
    draw.line([(x, y + 12), (x + 8, y + 8), (x + 22, y + 4)], fill=LINK_COLOR, width=1)
    draw.text((x + 30, y + 1), "lane -> lane link", fill=TEXT_COLOR, font=text)
    y += 19
    draw.rectangle([x + 4, y + 3, x + 17, y + 13], outline=EGO_COLOR, width=2)
    draw.text((x + 30, y + 1), "ego car", fill=TEXT_COLOR, font=text)
    y += 30
    if attributes:
        draw.text((x, y), "traffic elements", fill=TEXT_COLOR, font=head)
        y += 20
        for a in attributes:
            draw.rectangle([x, y + 2, x + 15, y + 15], fill=attribute_color(a))
            draw.text((x + 30, y + 1), attribute_name(a), fill=TEXT_COLOR, font=text)
            y += 19


LEGEND_WIDTH = 190


def _camera_layout(image, count: int, camera_width: int, bev_height: int, label_h: int) -> tuple[bool, int]:
    """(stacked, width) of the camera views: one over the other, at most ``camera_width`` wide and together
    no taller than the BEV panel; when that leaves them narrower than 0.6 ``camera_width`` (portrait images,
    as the front camera of subset A), side by side, each as tall as the BEV panel (and at most
    ``camera_width`` wide)."""
    if image is None:
        return True, camera_width
    w, h = image.size if isinstance(image, Image.Image) else np.asarray(image).shape[1::-1]
    fit = (bev_height - label_h * (count - 1)) / count
    width = int(min(camera_width, fit * w / h))
    if width >= 0.6 * camera_width:
        return True, width
    return False, int(min(camera_width, bev_height * w / h))



def render_lane_comparison(
    gt_frame: Mapping,
    pred_frame: Mapping | None = None,
    front_image=None,
    ego2img: np.ndarray | None = None,
    score_threshold: float = 0.3,
    link_threshold: float = 0.5,
    title: str = "",
    path: str | Path | None = None,
    pixels_per_metre: float = 8.0,
    camera_width: int = 640,
    legend_attributes: Sequence[int] | None = None,
) -> Image.Image:
    """GT (green) and prediction (magenta, lanes and elements of ``confidence`` >= ``score_threshold``) side
    by side (GT only when ``pred_frame`` is None): each a BEV panel (:func:`draw_lane_bev`) and, when
    ``front_image`` is given, the camera view (:func:`draw_lanes_on_image`, ``camera_width`` wide; the
    centerlines only with ``ego2img``), under a title, with a legend of the lane marks and of the
    traffic-element attribute colours present (or ``legend_attributes``). Saved as PNG when ``path`` is
    given."""
    sides = [("ground truth", gt_frame, GT_COLOR, None)]
    if pred_frame is not None:
        sides.append((f"prediction (confidence >= {score_threshold:g})", pred_frame, PRED_COLOR, score_threshold))
    left, top, gap, label_h = 12, 62, 28, 20
    canvas_bev = LaneCanvas(pixels_per_metre=pixels_per_metre)
    stacked, cam_width = _camera_layout(front_image, len(sides), camera_width, canvas_bev.height, label_h)
    bevs, cams = [], []
    for name, frame, color, thr in sides:
        bev, _ = draw_lane_bev(frame, color, thr, link_threshold, pixels_per_metre=pixels_per_metre)
        kept = _parse(select_confident(frame, thr))
        links = int(((kept.lclc >= link_threshold) & ~np.eye(len(kept.lanes), dtype=bool)).sum())
        bevs.append((f"{name}: {len(kept.lanes)} lanes, {len(kept.boxes)} elements, {links} links", bev))
        if front_image is not None:
            cam = draw_lanes_on_image(front_image, frame, ego2img, color, thr, link_threshold, width=cam_width)
            cams.append((name.split(" (")[0], cam))
    # [GT BEV] [prediction BEV] [GT camera over (or beside, for portrait images) prediction camera] [legend]
    bev_w, bev_h = bevs[0][1].size
    if stacked:
        cam_w = max((cam.width for _, cam in cams), default=0)
        cam_h = sum(cam.height + label_h for _, cam in cams) - label_h if cams else 0
    else:
        cam_w = sum(cam.width + gap for _, cam in cams) - gap
        cam_h = max(cam.height for _, cam in cams)
    width = left + len(bevs) * (bev_w + gap) + (cam_w + gap if cams else 0) + LEGEND_WIDTH
    canvas = Image.new("RGB", (width, top + max(bev_h, cam_h) + 12), BEV_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 8), title or "lane topology", fill=TEXT_COLOR, font=font(16))
    draw.text((left, 30), "BEV: x forward = up, y left = left, 10 m grid", fill=DIM_TEXT, font=font(11))
    x0 = left
    for label, bev in bevs:
        draw.text((x0, top - 18), label, fill=TEXT_COLOR, font=font(13))
        canvas.paste(bev, (x0, top))
        draw.rectangle([x0 - 1, top - 1, x0 + bev.width, top + bev.height], outline=(120, 124, 132))
        x0 += bev_w + gap
    cx, cy = x0, top
    for label, cam in cams:
        draw.text((cx, cy - 18), f"front camera, {label}", fill=TEXT_COLOR, font=font(13))
        canvas.paste(cam, (cx, cy))
        if stacked:
            cy += cam.height + label_h
        else:
            cx += cam.width + gap
    if cams:
        x0 += cam_w + gap
    attributes = (
        list(legend_attributes)
        if legend_attributes is not None
        else frame_attributes(gt_frame) + [a for a in frame_attributes(pred_frame, score_threshold=score_threshold)
                                           if a not in frame_attributes(gt_frame)]
    )
    _legend(draw, x0, top, pred_frame is not None, sorted(set(attributes)))
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas


def lane_scene_gif(
    frames: Sequence[tuple],
    path: str | Path,
    fps: float = 2.0,
    titles: Sequence[str] | None = None,
    score_threshold: float = 0.3,
    link_threshold: float = 0.5,
    **kwargs,
) -> Path:
    """One GIF frame per input frame: ``frames`` are (gt_frame, pred_frame or None[, front_image[,
    ego2img]]) tuples drawn by :func:`render_lane_comparison` with one legend (the attributes of all
    frames), so the frames do not jump; 2 fps matches the OpenLane-V2 frame rate. ``kwargs`` go to
    :func:`render_lane_comparison`."""
    items = [tuple(f) + (None,) * (4 - len(f)) for f in frames]
    if not items:
        raise ValueError("lane_scene_gif needs at least one frame")
    legend = sorted({a for gt, pred, _, _ in items for a in frame_attributes(gt) + frame_attributes(
        pred, score_threshold=score_threshold)})
    images = [
        render_lane_comparison(
            gt, pred, image, e2i, score_threshold=score_threshold, link_threshold=link_threshold,
            title=titles[i] if titles else "", legend_attributes=legend, **kwargs,
        )
        for i, (gt, pred, image, e2i) in enumerate(items)
    ]
    return save_scene_animation(images, path, fps=fps, max_width=1600)
