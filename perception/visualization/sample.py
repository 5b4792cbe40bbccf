"""One picture per sample (every camera of the rig + BEV) and animations per scene."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from perception.structures.cameras import CAMERA_NAMES
from perception.structures.classes import DETECTION_CLASSES

from .bev import draw_bev_panel
from .cameras import draw_boxes_on_image
from .style import BEV_BACKGROUND, GT_COLOR, PRED_COLOR, TEXT_COLOR, font

# Camera grid as a driver would see it: front row left-to-right, back row mirrored.
LAYOUT = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"))


@dataclass
class SamplePicture:
    """The composed picture and where each camera panel sits in it (x0, y0, scale)."""

    image: Image.Image
    camera_panels: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    bev_panel: tuple[int, int] = (0, 0)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path)
        return path


def _layout(camera_names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    if sorted(camera_names) == sorted(CAMERA_NAMES):
        return LAYOUT
    half = -(-len(camera_names) // 2)
    return tuple(tuple(camera_names[i:i + half]) for i in range(0, len(camera_names), half))


def _names(labels, class_names) -> list[str]:
    return [class_names[int(i)] for i in np.asarray(labels).reshape(-1)]


def render_sample(
    images: Sequence[np.ndarray | Image.Image],
    ego2img: np.ndarray,
    gt_boxes: np.ndarray | None = None,
    gt_labels: np.ndarray | None = None,
    pred_boxes: np.ndarray | None = None,
    pred_labels: np.ndarray | None = None,
    pred_scores: np.ndarray | None = None,
    score_threshold: float = 0.3,
    class_names: Sequence[str] = DETECTION_CLASSES,
    panel_width: int = 480,
    bev_range: float = 50.0,
    title: str = "",
    lanes: Sequence[np.ndarray] | None = None,
    camera_names: Sequence[str] = CAMERA_NAMES,
) -> SamplePicture:
    """One panel per camera (``camera_names`` order in ``images``/``ego2img``, the rig's order) with
    projected GT (green) and predicted (magenta, with scores) boxes, and a BEV panel with both,
    headings, velocity arrows and (optionally) lane centerlines. The nuScenes rig is laid out as a
    driver sees it; another rig fills two rows in its own order. Cameras of other sizes keep their
    aspect ratio (each panel is ``panel_width`` wide)."""
    camera_names = list(camera_names)
    if len(images) != len(camera_names) or len(ego2img) != len(camera_names):
        raise ValueError(
            f"render_sample needs one image and one ego2img per camera of {camera_names}, got {len(images)} "
            f"images and {len(ego2img)} matrices"
        )
    pil = [
        im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8))
        for im in images
    ]
    layout = _layout(camera_names)
    columns = max(len(row) for row in layout)
    panel_h = max(int(round(im.height * panel_width / im.width)) for im in pil)
    if pred_boxes is not None and pred_scores is not None:
        keep = np.asarray(pred_scores) >= score_threshold
        pred_boxes, pred_labels, pred_scores = (
            np.asarray(pred_boxes)[keep],
            np.asarray(pred_labels)[keep],
            np.asarray(pred_scores)[keep],
        )
    header = 28
    bev_size = len(layout) * panel_h
    canvas = Image.new("RGB", (columns * panel_width + bev_size, header + bev_size), BEV_BACKGROUND)
    picture = SamplePicture(canvas)
    for row, names in enumerate(layout):
        for col, name in enumerate(names):
            cam = camera_names.index(name)
            scale = panel_width / pil[cam].width
            size = (panel_width, int(round(pil[cam].height * scale)))
            panel = pil[cam].convert("RGB").resize(size, Image.BILINEAR)
            if gt_boxes is not None and len(gt_boxes):
                draw_boxes_on_image(
                    panel, gt_boxes, ego2img[cam], GT_COLOR, _names(gt_labels, class_names), scale=scale
                )
            if pred_boxes is not None and len(pred_boxes):
                draw_boxes_on_image(
                    panel,
                    pred_boxes,
                    ego2img[cam],
                    PRED_COLOR,
                    _names(pred_labels, class_names),
                    pred_scores,
                    scale=scale,
                )
            ImageDraw.Draw(panel).text(
                (6, 4), name, fill=TEXT_COLOR, font=font(13), stroke_width=2, stroke_fill=(0, 0, 0)
            )
            x0, y0 = col * panel_width, header + row * panel_h
            canvas.paste(panel, (x0, y0))
            picture.camera_panels[name] = (x0, y0, scale)
    layers = []
    if gt_boxes is not None:
        layers.append((gt_boxes, GT_COLOR, None))
    if pred_boxes is not None:
        layers.append((pred_boxes, PRED_COLOR, None))
    bev, _ = draw_bev_panel(bev_size, bev_range, layers, title="BEV (x forward = up)", lanes=lanes)
    canvas.paste(bev, (columns * panel_width, header))
    picture.bev_panel = (columns * panel_width, header)
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill=TEXT_COLOR, font=font(15))
    legend_x = columns * panel_width + bev_size - 230
    draw.rectangle([legend_x, 9, legend_x + 14, 21], fill=GT_COLOR)
    draw.text((legend_x + 20, 6), "ground truth", fill=TEXT_COLOR, font=font(13))
    draw.rectangle([legend_x + 120, 9, legend_x + 134, 21], fill=PRED_COLOR)
    draw.text((legend_x + 140, 6), "prediction", fill=TEXT_COLOR, font=font(13))
    return picture


def _padded(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    full = Image.new("RGB", size, BEV_BACKGROUND)
    full.paste(picture.convert("RGB"), (0, 0))
    return full


def save_scene_animation(
    frames: Sequence[Image.Image], path: str | Path, fps: float = 2.0, max_width: int = 1280
) -> Path:
    """Animated GIF (Pillow) of per-sample pictures, downscaled to ``max_width``; 2 fps matches the
    key-frame rate. Pictures of different sizes (e.g. a frame drawn without its camera image) are
    padded bottom/right to the largest on the panel background, so none is distorted."""
    if not frames:
        raise ValueError("save_scene_animation needs at least one frame")
    size = (max(f.width for f in frames), max(f.height for f in frames))
    frames = [f if f.size == size else _padded(f, size) for f in frames]
    if frames[0].width > max_width:
        size = (max_width, round(frames[0].height * max_width / frames[0].width))
        frames = [f.resize(size, Image.LANCZOS) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = [f.convert("P", palette=Image.ADAPTIVE, colors=255) for f in frames]
    first.save(path, save_all=True, append_images=rest, duration=int(1000 / fps), loop=0, optimize=False)
    return path


def render_open3d(
    points: np.ndarray, boxes: np.ndarray, path: str | Path, size: tuple[int, int] = (960, 720)
) -> Path:
    """Offscreen open3d render of a point cloud (ego frame) with box wireframes; needs ``open3d``."""
    try:
        import open3d as o3d
        from open3d.visualization import rendering
    except ImportError as err:
        raise ImportError(
            "render_open3d needs open3d (pip install open3d-cpu, plus libusb-1.0-0, libvulkan1 and "
            "mesa-vulkan-drivers for offscreen rendering)"
        ) from err
    from perception.structures.boxes import box_corners

    renderer = rendering.OffscreenRenderer(*size)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points)[:, :3]))
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    renderer.scene.add_geometry("points", cloud, material)
    from .cameras import EDGES

    for i, corners in enumerate(box_corners(np.asarray(boxes, dtype=np.float64).reshape(-1, 9))):
        lines = o3d.geometry.LineSet(o3d.utility.Vector3dVector(corners), o3d.utility.Vector2iVector(EDGES))
        lines.paint_uniform_color(np.array(GT_COLOR) / 255)
        renderer.scene.add_geometry(f"box{i}", lines, material)
    renderer.setup_camera(60.0, [10, 0, 0], [-25, 0, 25], [0, 0, 1])
    path = Path(path)
    o3d.io.write_image(str(path), renderer.render_to_image())
    return path
